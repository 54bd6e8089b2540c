"""Institutions' images: one folder per institution with a subfolder per class, holding PNG or
DICOM files. Each image is read in grey levels, resized to one size and scaled to [0, 1]; an
institution's images become the rows of its ClientData, one pixel per feature (a "cnn" model
reshapes them back).

No imaging dataset ships offline, so the tests run on generated images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fedledger.errors import ConfigError, DataError
from fedledger.learning.data import ClientData, split_indices

SUFFIXES = (".png", ".dcm")
MAX_FILE_BYTES = 64 * 2**20      # checked before a file is parsed
MAX_PIXELS = 50_000_000          # an image larger than this is refused before it is decoded


def load_image_folders(paths: Mapping[str, Path], classes: Sequence[str], size: tuple[int, int],
                       test_fraction: float, seed: int, test_paths: Mapping[str, Path] | None = None
                       ) -> list[ClientData]:
    """One client per (name, folder), in the mapping's order. A folder holds a subfolder named
    after each class it has images of (another subfolder is an error); labels are the classes'
    indices in `classes`. Each folder is split at random (stratified), unless `test_paths`
    names each institution's folder of test images."""
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"an image study needs two or more distinct classes, got {list(classes)}")
    if len(size) != 2 or not all(1 <= s <= 1024 for s in size):
        raise ConfigError(f"image_size must be [height, width], each 1 to 1024, got {list(size)}")
    clients = []
    for name, folder in paths.items():
        x, y = _read_folder(Path(folder), classes, size)
        if test_paths is None:
            train, test = split_indices(y, test_fraction, seed, where=str(folder), n=len(y))
        else:
            x_test, y_test = _read_folder(Path(test_paths[name]), classes, size)
            train, test = np.arange(len(y)), np.arange(len(y), len(y) + len(y_test))
            x, y = np.concatenate([x, x_test]), np.concatenate([y, y_test])
        pixels = x.shape[1]
        clients.append(ClientData(name, x[train], y[train], x[test], y[test], np.zeros(pixels), np.ones(pixels),
                                  feature_names=tuple(f"pixel_{i}" for i in range(pixels)), classes=tuple(classes)))
    return clients


def _read_folder(folder: Path, classes: Sequence[str], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of images")
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise DataError(f"{folder}: subfolder {unknown[0]!r} is not one of the classes ({', '.join(classes)})")
    images, labels = [], []
    for index, label in enumerate(classes):
        for path in sorted((folder / label).iterdir()) if (folder / label).is_dir() else []:
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(f"{path}: not a PNG or DICOM file (.png, .dcm)")
            images.append(read_image(path, size).ravel())
            labels.append(index)
    if not images:
        raise DataError(f"{folder}: no images in its class subfolders ({', '.join(classes)})")
    return np.stack(images).astype(np.float32), np.array(labels, dtype=np.float32)


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The image at `path` in grey levels scaled to [0, 1], resized to `size` (height, width)."""
    from PIL import Image

    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB")
    try:
        if path.suffix.lower() == ".dcm":
            grey = _dicom_pixels(path)
        else:
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS     # a larger PNG raises instead of being decoded
            with Image.open(path) as image:
                grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except DataError:
        raise
    except Exception as exc:      # a damaged file: say which, and why, in one line
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    resized = Image.fromarray(grey.astype(np.float32), mode="F").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _dicom_pixels(path: Path) -> np.ndarray:
    """A DICOM image's first frame in its stored units (rescale slope and intercept applied),
    scaled to [0, 1] between its smallest and largest value."""
    import pydicom

    dataset = pydicom.dcmread(path, defer_size="1 MB")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * columns > MAX_PIXELS or rows * columns == 0:
        raise DataError(f"{path}: a DICOM image of {rows} x {columns} pixels")
    pixels = dataset.pixel_array.astype(np.float32)
    if pixels.ndim == 3 and int(dataset.get("SamplesPerPixel", 1)) == 1:
        pixels = pixels[0]                        # several frames: the first
    elif pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)             # colour: its mean grey level
    pixels = pixels * float(dataset.get("RescaleSlope", 1.0)) + float(dataset.get("RescaleIntercept", 0.0))
    low, high = float(pixels.min()), float(pixels.max())
    return (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)

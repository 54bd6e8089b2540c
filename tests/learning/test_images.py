"""Image folders (PNG and DICOM) per institution and a small CNN. No imaging set ships offline,
so these run on generated images: noise alone ("clear") or noise with a bright disc of random
place and size ("lesion")."""

import numpy as np
import pytest
from PIL import Image

from fedledger.audit import verify_run
from fedledger.config import config_from_dict
from fedledger.errors import ConfigError, DataError
from fedledger.learning.images import load_image_folders, read_image
from fedledger.simulation import run_study

CLASSES = ("clear", "lesion")


def shape_image(rng, kind, size=40):
    img = rng.normal(0.3, 0.08, (size, size))
    if kind == "lesion":
        r, cy, cx = rng.integers(3, 7), rng.integers(8, size - 8), rng.integers(8, size - 8)
        yy, xx = np.mgrid[:size, :size]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 0.5
    return np.clip(img, 0, 1)


def write_dicom(path, pixels, slope=2.0, intercept=-100.0):
    """A minimal DICOM file (Secondary Capture, 16-bit grey) holding `pixels` in [0, 1]."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    stored = np.round(pixels * 4000).astype(np.uint16)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return stored


def make_site(folder, rng, n, dicom_every=0):
    for k in range(n):
        kind = CLASSES[k % 2]
        (folder / kind).mkdir(parents=True, exist_ok=True)
        img = shape_image(rng, kind)
        if dicom_every and k % dicom_every == 0:
            write_dicom(folder / kind / f"{k}.dcm", img)
        else:
            Image.fromarray((img * 255).astype(np.uint8)).save(folder / kind / f"{k}.png")


def test_png_and_dicom_images_become_rows_of_grey_levels(tmp_path):
    rng = np.random.default_rng(0)
    img = shape_image(rng, "lesion")
    stored = write_dicom(tmp_path / "a.dcm", img)
    Image.fromarray((img * 255).astype(np.uint8)).save(tmp_path / "a.png")
    dicom, png = read_image(tmp_path / "a.dcm", (40, 40)), read_image(tmp_path / "a.png", (40, 40))
    expected = stored * 2.0 - 100.0
    np.testing.assert_allclose(dicom, (expected - expected.min()) / (expected.max() - expected.min()), atol=1e-5)
    np.testing.assert_allclose(png, (img * 255).astype(np.uint8) / 255, atol=1e-6)
    assert read_image(tmp_path / "a.png", (16, 20)).shape == (16, 20)

    make_site(tmp_path / "north", rng, 20, dicom_every=3)
    (north,) = load_image_folders({"north": tmp_path / "north"}, CLASSES, (24, 24), 0.25, seed=1)
    assert north.x_train.shape == (15, 576) and len(north.y_test) == 5
    assert north.x_train.min() >= 0 and north.x_train.max() <= 1 and north.classes == CLASSES
    assert sorted(np.concatenate([north.y_train, north.y_test])) == [0.0] * 10 + [1.0] * 10


def test_bad_folders_and_files_are_named(tmp_path):
    rng = np.random.default_rng(1)
    make_site(tmp_path / "site", rng, 6)
    (tmp_path / "site" / "triangle").mkdir()
    with pytest.raises(DataError, match="subfolder 'triangle' is not one of the classes"):
        load_image_folders({"a": tmp_path / "site"}, CLASSES, (8, 8), 0.3, 0)
    (tmp_path / "site" / "triangle").rmdir()
    (tmp_path / "site" / "lesion" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt: not a PNG or DICOM file"):
        load_image_folders({"a": tmp_path / "site"}, CLASSES, (8, 8), 0.3, 0)
    (tmp_path / "site" / "lesion" / "notes.txt").unlink()
    (tmp_path / "site" / "lesion" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_image_folders({"a": tmp_path / "site"}, CLASSES, (8, 8), 0.3, 0)
    with pytest.raises(DataError, match="no such folder of images"):
        load_image_folders({"a": tmp_path / "nowhere"}, CLASSES, (8, 8), 0.3, 0)
    with pytest.raises(ConfigError, match="two or more distinct classes"):
        load_image_folders({"a": tmp_path / "site"}, ("lesion",), (8, 8), 0.3, 0)


def test_a_federated_cnn_learns_the_generated_shapes_and_the_audit_passes(tmp_path):
    rng = np.random.default_rng(2)
    for name, n in (("north", 120), ("south", 80)):
        make_site(tmp_path / name, rng, n, dicom_every=5)
    cfg = config_from_dict({
        "study": {"name": "shapes", "rounds": 6, "seed": 3},
        "data": {"dataset": "images", "clients": {"north": "north", "south": "south"}, "classes": list(CLASSES),
                 "image_size": [24, 24]},
        "model": {"name": "cnn", "hidden": [8, 16]},
        "training": {"optimizer": "adam", "lr": 0.02, "local_steps": 25, "batch_size": 16},
    }, base_dir=tmp_path)
    result = run_study(cfg, run_dir=tmp_path / "run", progress=False)
    assert result.final["pooled"]["accuracy"] > 0.85, result.final["pooled"]
    report = verify_run(result.run_dir)
    assert report.ok, report.summary()


@pytest.mark.parametrize("data, model, message", [
    ({"dataset": "images", "clients": {"a": "a", "b": "b"}, "classes": ["x", "y"]}, {}, "needs [model].name = \"cnn\""),
    ({"dataset": "breast_cancer"}, {"name": "cnn"}, "cnn\" reads images"),
    ({"dataset": "images", "clients": {"a": "a", "b": "b"}}, {"name": "cnn"}, "needs [data].classes"),
    ({"dataset": "images", "clients": {"a": "a", "b": "b"}, "classes": ["x", "y"], "image_size": [0, 8]},
     {"name": "cnn"}, "[data].image_size must be [height, width]"),
    ({"dataset": "images", "clients": {"a": "a", "b": "b"}, "classes": ["x", "y"], "label": "z"},
     {"name": "cnn"}, "labelled by their class folder"),
])
def test_bad_image_configs_are_named(data, model, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"data": data, "model": model})
    assert message in str(err.value)


def test_an_image_model_exports_and_predict_says_it_reads_images(tmp_path):
    import onnxruntime

    from fedledger.bundle import export_bundle, load_bundle, predict_csv

    rng = np.random.default_rng(5)
    for name in ("north", "south"):
        make_site(tmp_path / name, rng, 16)
    cfg = config_from_dict({
        "study": {"name": "tiny", "rounds": 1}, "chain": {"enabled": True},
        "data": {"dataset": "images", "clients": {"north": "north", "south": "south"}, "classes": list(CLASSES),
                 "image_size": [16, 16]},
        "model": {"name": "cnn", "hidden": [4]}, "training": {"local_steps": 2},
    }, base_dir=tmp_path)
    exported = export_bundle(run_study(cfg, run_dir=tmp_path / "run", progress=False).run_dir, tmp_path / "bundle")
    bundle = load_bundle(exported.path)
    x = rng.random((3, 256), dtype=np.float32)
    (onnx_out,) = onnxruntime.InferenceSession(str(exported.path / "model.onnx")).run(None, {"x": x})
    import torch
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, bundle.model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="reads images"):
        predict_csv(bundle, tmp_path / "any.csv")

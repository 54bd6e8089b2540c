"""The study's model (a linear layer or an MLP whose output the task's link reads), and its
parameters as one flat float32 vector.

The federated core (aggregation, privacy, verification) only ever sees flat vectors, so the
vector layout must be fixed: parameters in `named_parameters()` order, each flattened row-major.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fedledger.errors import ConfigError
from fedledger.learning.tasks import BINARY, Task

MODELS = ("logreg", "mlp", "cnn")


class Predictor(nn.Module):
    """A network and the task's link: forward returns what the task predicts (for a binary
    task P(y = 1) of shape (n,))."""

    def __init__(self, net: nn.Module, task: Task) -> None:
        super().__init__()
        self.net = net
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.link(self.net(x))


class ConvNet(nn.Module):
    """Convolutions over rows that hold an image (shape (channels, height, width)) or a signal
    ((channels, length)) flattened: each width of `channels` is a 3-wide convolution, a ReLU and
    a max pool halving the size, then one linear layer to `outputs`."""

    def __init__(self, shape: Sequence[int], channels: Sequence[int], outputs: int) -> None:
        super().__init__()
        self.shape = tuple(shape)
        conv, pool = (nn.Conv2d, nn.MaxPool2d) if len(shape) == 3 else (nn.Conv1d, nn.MaxPool1d)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip([shape[0], *channels], channels):
            layers += [conv(fan_in, fan_out, 3, padding=1), nn.ReLU(), pool(2)]
        self.features = nn.Sequential(*layers)
        spatial = [s >> len(channels) for s in shape[1:]]
        if min(spatial) < 1:
            raise ConfigError(f"an input of shape {list(shape)} is too small for {len(channels)} pooling layers")
        self.head = nn.Linear(channels[-1] * int(np.prod(spatial)), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(-1, *self.shape)).flatten(1))   # -1: any number of rows, in ONNX too


def build_model(name: str, num_features: int, *, hidden: Sequence[int] = (32,), seed: int,
                task: Task = BINARY, shape: Sequence[int] = ()) -> Predictor:
    """A freshly initialized model; the same (name, sizes, task, seed) always gives the same parameters.

    "logreg" is one linear layer (num_features to the task's outputs), "mlp" is Linear/ReLU
    layers of the `hidden` widths then a linear layer to the task's outputs (one unit, or one
    per class). "cnn" reads each row as an input of `shape` (channels, height, width, or
    channels, length) and puts one convolution per `hidden` width before it (ConvNet). Layers
    get torch's default initialization drawn right after
    torch.manual_seed(seed), as in FLamby, so a binary "logreg" for seed s starts where FLamby's
    Fed-Heart-Disease model for seed s does. The global torch RNG is left as it was.
    """
    if name not in MODELS:
        raise ConfigError(f"model name must be one of {', '.join(MODELS)}, got {name!r}")
    if num_features < 1:
        raise ConfigError(f"num_features must be at least 1, got {num_features}")
    if name in ("mlp", "cnn") and (not hidden or any(w < 1 for w in hidden)):
        raise ConfigError(f"hidden must list one or more positive layer widths, got {list(hidden)}")
    if name == "cnn" and (len(shape) not in (2, 3) or int(np.prod(shape)) != num_features):
        raise ConfigError(f"a cnn needs its input's shape, (channels, height, width) or (channels, length), "
                          f"of {num_features} values in all; got {list(shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "logreg":
            return Predictor(nn.Linear(num_features, task.outputs), task)
        if name == "cnn":
            return Predictor(ConvNet(shape, hidden, task.outputs), task)
        widths = [num_features, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths, widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        return Predictor(nn.Sequential(*layers, nn.Linear(widths[-1], task.outputs)), task)


def get_flat_params(model: nn.Module) -> np.ndarray:
    """All parameters as one new float32 vector, in named_parameters() order."""
    with torch.no_grad():
        return torch.cat([p.reshape(-1) for p in model.parameters()]).to(torch.float32).numpy().copy()


def set_flat_params(model: nn.Module, flat: np.ndarray) -> None:
    """Load a vector made by get_flat_params (for the same architecture) into the model in place."""
    flat = np.asarray(flat)
    expected = sum(p.numel() for p in model.parameters())
    if flat.ndim != 1 or flat.size != expected:
        raise ValueError(f"parameter vector has shape {flat.shape}, the model needs ({expected},)")
    source = torch.from_numpy(flat.astype(np.float32, copy=False))
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(source[offset:offset + p.numel()].view_as(p))
            offset += p.numel()

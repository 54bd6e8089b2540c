"""Models and their flat parameter vectors."""

import numpy as np
import pytest
import torch
from torch import nn

from fedledger.errors import ConfigError
from fedledger.learning import build_model, get_flat_params, set_flat_params


def test_logreg_starts_from_torch_default_init_under_the_seed():
    torch.manual_seed(42)
    reference = nn.Linear(13, 1)
    expected = torch.cat([reference.weight.reshape(-1), reference.bias]).detach().numpy()
    np.testing.assert_array_equal(get_flat_params(build_model("logreg", 13, seed=42)), expected)


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    a = get_flat_params(build_model("mlp", 5, hidden=(8, 4), seed=1))
    after = torch.rand(3)
    torch.testing.assert_close(before, after)
    np.testing.assert_array_equal(a, get_flat_params(build_model("mlp", 5, hidden=(8, 4), seed=1)))
    assert not np.array_equal(a, get_flat_params(build_model("mlp", 5, hidden=(8, 4), seed=2)))


@pytest.mark.parametrize("name,size", [("logreg", 13 + 1), ("mlp", 13 * 32 + 32 + 32 + 1)])
def test_output_is_probability_per_row(name, size):
    model = build_model(name, 13, seed=0)
    assert get_flat_params(model).shape == (size,)
    out = model(torch.randn(7, 13))
    assert out.shape == (7,)
    assert ((out > 0) & (out < 1)).all()


def test_flat_params_roundtrip_and_layout():
    model = build_model("mlp", 3, hidden=(4,), seed=0)
    flat = get_flat_params(model)
    assert flat.dtype == np.float32 and flat.ndim == 1
    # named_parameters order, each tensor flattened row-major.
    expected = np.concatenate([p.detach().numpy().ravel() for _, p in model.named_parameters()])
    np.testing.assert_array_equal(flat, expected)
    new = np.arange(flat.size, dtype=np.float32) / 100
    set_flat_params(model, new)
    np.testing.assert_array_equal(get_flat_params(model), new)
    new[0] = 99.0                              # the model holds its own copy
    assert get_flat_params(model)[0] != 99.0
    set_flat_params(model, new.astype(np.float64))
    assert get_flat_params(model)[0] == 99.0


def test_set_flat_params_rejects_wrong_shape():
    model = build_model("logreg", 4, seed=0)
    with pytest.raises(ValueError, match=r"shape \(4,\), the model needs \(5,\)"):
        set_flat_params(model, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="the model needs"):
        set_flat_params(model, np.zeros((1, 5), np.float32))


@pytest.mark.parametrize("args,kwargs,message", [
    (("resnet", 4), {}, "model name"),
    (("cnn", 4), {}, "a cnn needs its input's shape"),
    (("cnn", 16), {"shape": (1, 2, 8), "hidden": (4, 4)}, "too small for 2 pooling layers"),
    (("logreg", 0), {}, "num_features"),
    (("mlp", 4), {"hidden": (8, 0)}, "hidden"),
    (("mlp", 4), {"hidden": ()}, "hidden"),
])
def test_bad_model_arguments(args, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_model(*args, seed=0, **kwargs)

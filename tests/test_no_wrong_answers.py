"""Inputs that used to give a wrong answer without an error: gradients, complex numbers, empty
operands, weights edited in place, loaded seeds, and the trained-model cache."""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

import mpimpy
from mpimpy import DPETensor, SlicedData
from mpimpy.nn import MemConv2d, MemLinear
from mpimpy.nn.training import cache_dir, pretrained


@pytest.mark.parametrize("shapes", [((5, 12), (12, 3)), ((12,), (12, 3)), ((2, 4, 12), (12,))])
def test_dot_gives_the_straight_through_gradient(shapes):
    """The gradient of the ideal product a @ b (what the nn layers use), not one through the
    quantization's block scales."""
    torch.manual_seed(0)
    a = torch.randn(shapes[0], dtype=torch.float64, requires_grad=True)
    b = torch.randn(shapes[1], dtype=torch.float64, requires_grad=True)
    y = mpimpy.dot(a, b, var=0.05, seed=3)
    assert torch.equal(y.detach(), mpimpy.dot(a.detach(), b.detach(), var=0.05, seed=3))
    weights = torch.randn(y.shape, dtype=torch.float64)
    (y * weights).sum().backward()
    a_ideal, b_ideal = a.detach().requires_grad_(), b.detach().requires_grad_()
    (torch.matmul(a_ideal, b_ideal) * weights).sum().backward()
    torch.testing.assert_close(a.grad, a_ideal.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(b.grad, b_ideal.grad, rtol=0, atol=1e-12)


def test_the_engine_detaches_inputs_instead_of_a_wrong_gradient():
    engine = DPETensor(seed=0)
    a = torch.randn(4, 8, requires_grad=True)
    b = torch.randn(8, 3, requires_grad=True)
    x = SlicedData([1, 3]).slice_data_imp(engine, a, transpose=True)
    mat = SlicedData([1, 3]).slice_data_imp(engine, b)
    y = engine(x, mat)
    assert not y.requires_grad and y.grad_fn is None


@pytest.mark.parametrize("pair", [
    (np.ones((3, 4), complex), np.ones((4, 2))),
    (np.ones((3, 4)), np.ones((4, 2)) + 0j),
    (torch.ones(3, 4, dtype=torch.complex64), torch.ones(4, 2)),
    (torch.ones(3, 4), np.ones((4, 2), np.complex128)),
])
def test_complex_inputs_are_refused(pair):
    name = "a" if np.iscomplexobj(pair[0]) or torch.is_tensor(pair[0]) and pair[0].is_complex() \
        else "b"
    with pytest.raises(TypeError, match=f"{name} is complex: mpimpy.dot multiplies real numbers"):
        mpimpy.dot(*pair)


EMPTY = [((0, 8), (8, 4)), ((3, 0), (0, 4)), ((3, 8), (8, 0)), ((0,), (0,)), ((0,), (0, 3)),
         ((3, 0), (0,)), ((2, 0, 8), (8, 4)), ((0, 0), (0, 0))]


@pytest.mark.parametrize(("shape_a", "shape_b"), EMPTY)
def test_empty_operands_give_what_torch_and_numpy_give(shape_a, shape_b):
    a, b = torch.randn(shape_a), torch.randn(shape_b)
    expected = torch.matmul(a, b)
    y = mpimpy.dot(a, b)
    assert y.shape == expected.shape and y.dtype == expected.dtype and torch.equal(y, expected)
    result = mpimpy.dot(a.double().numpy(), b.double().numpy())
    np.testing.assert_array_equal(result, np.dot(a.double().numpy(), b.double().numpy()))
    engine = DPETensor()
    x = SlicedData([1, 3]).slice_data_imp(engine, a, transpose=True)
    mat = SlicedData([1, 3]).slice_data_imp(engine, b)
    assert torch.equal(engine(x, mat), expected)


def test_memristive_layers_take_empty_batches_like_torch_layers():
    engine = DPETensor(seed=0)
    for training in (False, True):
        linear = MemLinear(8, 4, engine=engine).train(training)
        x = torch.randn(0, 8, requires_grad=True)
        y = linear(x)
        assert y.shape == nn.Linear(8, 4)(x).shape == (0, 4)
        y.sum().backward()
        assert x.grad.shape == (0, 8) and torch.equal(linear.weight.grad, torch.zeros(4, 8))
        conv = MemConv2d(2, 4, 3, padding=1, engine=engine).train(training)
        images = torch.randn(0, 2, 5, 5)
        assert conv(images).shape == nn.Conv2d(2, 4, 3, padding=1)(images).shape == (0, 4, 5, 5)
    digital = nn.Linear(0, 3)
    layer = MemLinear.from_linear(digital, engine).eval()
    x = torch.randn(2, 0)
    assert torch.equal(layer(x), digital(x))  # the bias alone
    assert layer.eval()(torch.randn(2, 5, 0)).shape == (2, 5, 3)
    assert MemLinear(5, 0, engine=engine).eval()(torch.randn(2, 5)).shape == (2, 0)


def test_dot_takes_the_engine_device():
    a, b = torch.randn(3, 8), torch.randn(8, 4)
    assert torch.equal(mpimpy.dot(a, b, device="cpu", seed=1), mpimpy.dot(a, b, seed=1))
    assert isinstance(mpimpy.dot(a.numpy(), b.numpy(), device="cpu"), np.ndarray)
    with pytest.raises(TypeError, match=r"either engine or engine settings.*\['device'\]"):
        mpimpy.dot(a, b, engine=DPETensor(), device="cpu")


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_layers_reprogram_after_the_weights_are_edited_through_data(kind):
    engine = DPETensor(var=0.1, vnoise=0.0, seed=0)
    if kind == "linear":
        layer = MemLinear(16, 8, engine=engine, prog_seed=5).eval()
        x = torch.randn(6, 16)
    else:
        layer = MemConv2d(3, 4, 3, engine=engine, prog_seed=5).eval()
        x = torch.randn(2, 3, 6, 6)
    before = layer(x)
    version = layer.weight._version
    layer.weight.data.mul_(-1)  # does not bump the parameter's version counter
    assert layer.weight._version == version
    after = layer(x)
    fresh = type(layer)(*([16, 8] if kind == "linear" else [3, 4, 3]), engine=engine,
                        prog_seed=5).eval()
    fresh.load_state_dict(layer.state_dict())  # the edited weights, programmed anew
    assert torch.equal(after, fresh(x))
    assert not torch.equal(after, before)


@pytest.mark.parametrize("seed", [torch.tensor(-5), torch.tensor(3.7), torch.tensor(True),
                                  torch.tensor([1, 2])])
def test_prog_seed_from_a_state_dict_is_validated(seed):
    layer = MemLinear(4, 2, engine=DPETensor(), prog_seed=1)
    state = layer.state_dict()
    state["prog_seed"] = seed
    with pytest.raises(ValueError, match="prog_seed in the state dict must be a non-negative "
                                         "integer scalar"):
        layer.load_state_dict(state)
    assert int(layer.prog_seed) == 1
    state["prog_seed"] = torch.tensor(7)
    layer.load_state_dict(state)
    assert int(layer.prog_seed) == 7


def test_the_model_cache_is_private_to_the_user(tmp_path, monkeypatch):
    from mpimpy.datasets import load_digits

    monkeypatch.delenv("MPIMPY_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = cache_dir()
    assert folder == tmp_path / "xdg" / "mpimpy"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not str(folder).startswith(os.path.join(tempfile.gettempdir(), "mpimpy-cache"))
    _, info = pretrained("mlp", load_digits(), epochs=1)
    assert not info["cached"] and len(list(folder.glob("mlp-digits-seed0-*.pt"))) == 1
    assert pretrained("mlp", load_digits(), epochs=1)[1]["cached"]

    folder.chmod(0o777)  # someone else could plant weights there
    with pytest.raises(PermissionError, match="must belong to you and be writable by you alone"):
        cache_dir()

"""mpimpy.dot is a drop-in for np.dot / torch.matmul: same kind, shape and dtype."""

import numpy as np
import pytest
import torch

from mpimpy import RE, DPETensor, SlicedData, dot

IDEAL = dict(var=0.0, vnoise=0.0, rdac=None, radc=None, g_level=16)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((30,), (30,)),
        ((30,), (30, 7)),
        ((5, 30), (30,)),
        ((5, 30), (30, 7)),
        ((2, 5, 30), (30, 7)),
        ((3, 2, 5, 30), (30,)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_in_numpy_out(a_shape, b_shape, dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    expected = np.dot(a, b)
    y = dot(a, b, xblk=[1, 1, 2, 4], mblk=[1, 1, 2, 4], **IDEAL)
    assert isinstance(y, (np.ndarray, np.floating))
    assert np.shape(y) == np.shape(expected)
    assert np.asarray(y).dtype == expected.dtype
    assert RE(np.atleast_1d(expected), np.atleast_1d(y)) < 0.05  # 8-bit quantization


def test_noise_free_dot_is_the_quantized_product():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 6, 70)), rng.standard_normal((70, 9))
    y = dot(a, b, xblk=[1, 2, 4], mblk=[1, 2, 4], **IDEAL)
    engine = DPETensor(**IDEAL)
    x = SlicedData([1, 2, 4], quant_gran="per-vector").slice_data_imp(
        engine, torch.from_numpy(a), transpose=True)  # dot scales each row by its own maximum
    mat = SlicedData([1, 2, 4]).slice_data_imp(engine, torch.from_numpy(b))
    np.testing.assert_allclose(
        y, (x.quantized_data @ mat.quantized_data).numpy(), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_torch_in_torch_out(dtype):
    a, b = torch.randn(4, 3, 50).to(dtype), torch.randn(50, 6).to(dtype)
    y = dot(a, b, **IDEAL)
    expected = torch.matmul(a, b)
    assert isinstance(y, torch.Tensor) and y.dtype == dtype and y.shape == expected.shape
    assert RE(expected.float(), y.float()) < 0.05


def test_integer_inputs_give_float64():
    a, b = np.arange(12).reshape(3, 4), np.arange(8).reshape(4, 2)
    y = dot(a, b, **IDEAL, xblk=[1, 4], mblk=[1, 4], quant_gran="per-matrix")
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, np.dot(a, b), rtol=0.1)


def test_a_users_numpy_program_changes_one_call():
    """Least squares by gradient descent, with np.dot replaced by the simulated dot."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((200, 20))
    w_true = rng.standard_normal(20)
    target = A @ w_true
    engine = DPETensor(var=0.02, vnoise=0.0, radc=2**10, seed=0)
    w = np.zeros(20)
    for _ in range(200):
        grad = dot(A.T, dot(A, w, engine=engine) - target, engine=engine) / len(A)
        w -= 0.5 * grad
    assert np.linalg.norm(w - w_true) / np.linalg.norm(w_true) < 0.05


def test_dot_defaults_are_a_realistic_chip_that_users_can_trust():
    """mpimpy.dot's defaults (5 % variation, differential pairs, sign-magnitude inputs,
    calibrated 8-bit ADCs) give a few percent of error on standard normal data; the original's
    conventions, which DPETensor keeps, give several times more."""
    from mpimpy.api import DOT_DEFAULTS

    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((256, 512)), rng.standard_normal((512, 128))
    exact = a @ b
    errors = [RE(exact, dot(a, b, seed=s)) for s in range(3)]
    assert all(0.02 < e < 0.06 for e in errors)
    assert len(set(errors)) == 3  # the variation is drawn anew for every seed
    assert RE(exact, dot(a, b, seed=0, var=0.0)) < 0.025  # INT8 quantization and the ADC
    original = DPETensor(seed=0)  # offset mapping, two's complement inputs, full-range ADC
    assert RE(exact, dot(a, b, engine=original)) > 3 * max(errors)
    assert DOT_DEFAULTS["mapping"] == "diffpair" and DPETensor().config.mapping == "offset"


def test_bad_slicing_is_reported_under_dots_own_names():
    a, b = np.ones((2, 8)), np.ones((8, 3))
    with pytest.raises(ValueError, match=r"xblk\[0\] is the sign slice and must be 1"):
        dot(a, b, xblk=[2, 2, 4])
    with pytest.raises(ValueError, match=r"mblk\[0\] is the sign slice"):
        dot(a, b, mblk=[4, 4])


def test_dot_programs_anew_each_call_and_crossbar_matmul_programs_once():
    """What README's "Use it" says: every dot call draws the variation again (seed=None), a
    CrossbarMatmul keeps the arrays it was programmed with."""
    from mpimpy import CrossbarMatmul

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 64)), rng.standard_normal((64, 8))
    assert not np.array_equal(dot(a, b, var=0.1, vnoise=0.0), dot(a, b, var=0.1, vnoise=0.0))
    np.testing.assert_array_equal(dot(a, b, var=0.1, seed=3), dot(a, b, var=0.1, seed=3))
    chip = CrossbarMatmul(b, var=0.1, vnoise=0.0, seed=3)
    np.testing.assert_array_equal(chip(a), chip(a))  # the same arrays, no read noise
    assert chip.calls == 2

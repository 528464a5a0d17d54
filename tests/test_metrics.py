"""Error metrics in the original mPimPy's argument order: ``(ytest, ypred)``, normalized by the
first argument (the original's ``utils.py``), with zeros handled without NaN."""

import math

import numpy as np
import pytest
import torch

from mpimpy import ABSE, RE, SNR, all_metrics, max_abs_error


def test_metrics_normalize_by_the_first_argument():
    rng = np.random.default_rng(0)
    ytest = rng.normal(size=(20, 30))
    ypred = ytest + 0.1 * rng.normal(size=ytest.shape)
    # the original's formulas, written out
    assert RE(ytest, ypred) == pytest.approx(
        np.sqrt(np.sum((ytest - ypred) ** 2)) / np.sqrt(np.sum(ytest**2)), rel=1e-12)
    assert ABSE(ytest, ypred) == pytest.approx(
        np.sum(np.abs((ytest - ypred) / ytest)) / (ytest.shape[0] * ytest.shape[1]), rel=1e-12)
    assert SNR(ytest, ypred) == pytest.approx(
        10 * np.log10(np.sum(ytest**2) / np.sum((ytest - ypred) ** 2)), rel=1e-12)
    # the order matters: the reference comes first
    scaled = 2 * ytest
    assert RE(ytest, scaled) == pytest.approx(1.0)
    assert RE(scaled, ytest) == pytest.approx(0.5)
    assert max_abs_error(ytest, ypred) == pytest.approx(np.abs(ytest - ypred).max())
    metrics = all_metrics(ytest, ypred)
    assert metrics == {"RE": RE(ytest, ypred), "SNR_dB": SNR(ytest, ypred),
                       "ABSE": ABSE(ytest, ypred), "max_abs_error": max_abs_error(ytest, ypred)}


def test_metrics_take_tensors_on_any_dtype():
    ytest = torch.linspace(1, 2, 12, dtype=torch.float32).view(3, 4)
    assert RE(ytest, ytest * 1.5) == pytest.approx(0.5)
    assert SNR(ytest, ytest) == math.inf


def test_zeros_never_give_nan():
    ytest = np.array([[0.0, 1.0], [2.0, 4.0]])
    # a zero reference matched exactly adds 0 to the mean over all four elements
    assert ABSE(ytest, np.array([[0.0, 1.5], [2.0, 4.0]])) == pytest.approx(0.5 / 4)
    # a zero reference that is missed: an infinite relative error
    assert ABSE(ytest, np.array([[0.1, 1.0], [2.0, 4.0]])) == math.inf
    zeros = np.zeros((2, 2))
    assert RE(zeros, zeros) == 0.0 and RE(zeros, ytest) == math.inf
    assert SNR(zeros, ytest) == -math.inf
    assert ABSE(np.zeros(0), np.zeros(0)) == 0.0


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="ypred contains NaN"):
        RE(np.ones(3), np.array([1.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        SNR(np.ones(3), np.ones(4))


def test_re_along_an_axis_and_through_a_diverged_simulation():
    ytest = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    ypred = ytest + [[0.0, 0.5], [0.0, 0.1], [0.0, 0.0]]
    np.testing.assert_allclose(RE(ytest, ypred, axis=1), [0.1, 0.1, 0.0])
    assert RE(ytest, ypred, axis=(0, 1)) == pytest.approx(RE(ytest, ypred))
    diverged = np.array([[3.0, np.inf], [1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(ValueError, match="ypred contains NaN or Inf"):
        RE(ytest, diverged, axis=1)
    errors = RE(ytest, diverged, axis=1, nonfinite="propagate")
    assert errors[0] == math.inf and math.isnan(errors[1]) and errors[2] == math.inf
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        RE(ytest, ypred, nonfinite="omit")


def test_one_module_one_order():
    from mpimpy import apps, metrics

    assert apps.metrics is metrics
    assert (apps.psnr, apps.kendall_tau, apps.top_k_overlap) == (
        metrics.psnr, metrics.kendall_tau, metrics.top_k_overlap)
    rng = np.random.default_rng(1)
    reference = rng.uniform(size=30)
    measured = reference + 0.05 * rng.normal(size=30)
    # the application metrics are symmetric: no order can give a wrong answer
    assert metrics.psnr(reference, measured) == metrics.psnr(measured, reference)
    assert metrics.kendall_tau(reference, measured) == metrics.kendall_tau(measured, reference)
    assert metrics.top_k_overlap(reference, measured, 5) == metrics.top_k_overlap(
        measured, reference, 5)
    # relative_error, the measured first, is RE with the reference first, and says so
    with pytest.warns(DeprecationWarning, match=r"RE\(reference, measured"):
        assert metrics.relative_error(measured, reference) == RE(reference, measured)

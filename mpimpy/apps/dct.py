"""Discrete cosine transform as a matrix product (Li et al., Nature Electronics 1, 52 (2018)).

The orthonormal DCT-II of a length-``n`` signal is ``C @ x`` with :func:`dct_matrix` ``C``; a
row of signals ``X`` (one per row) transforms as ``X @ C.T``, so a crossbar holding ``C.T``
transforms a batch of signals in one read. The 2-D DCT of a ``b x b`` image block ``B`` is
``C B C.T``: one pass over its rows (``B @ C.T``) and, transposed, one over its columns, both
through the same programmed matrix. JPEG-style compression keeps the low-frequency
coefficients of each block (:func:`low_pass_mask`) and inverts with ``C.T Y C``.

Operators (what the matmul passed to each function must compute):

=====================================  ==========================================
function                               ``matmul(x)`` computes
=====================================  ==========================================
:func:`dct`, :func:`block_dct2`        ``x @ dct_matrix(n).T`` (:func:`dct_operator`)
:func:`idct`, :func:`block_idct2`      ``x @ dct_matrix(n)`` (:func:`idct_operator`)
=====================================  ==========================================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .matmul import resolve


@functools.lru_cache(maxsize=16)
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    c.setflags(write=False)
    return c


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix ``C`` (n x n): ``C @ x == scipy.fft.dct(x, norm="ortho")``
    and ``C.T @ C == I``."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return _dct_matrix(int(n)).copy()


def dct_operator(n: int) -> np.ndarray:
    """``C.T``: the matrix to program for the forward transform (``x @ C.T``)."""
    return dct_matrix(n).T.copy()


def idct_operator(n: int) -> np.ndarray:
    """``C``: the matrix to program for the inverse transform (``y @ C``)."""
    return dct_matrix(n)


def dct(x, matmul=None):
    """DCT-II (orthonormal) along the last axis of ``x`` (``(..., n)``): ``x @ C.T``.

    ``matmul`` computes ``x @ dct_operator(n)``; default the exact product.
    """
    x = np.asarray(x, dtype=np.float64)
    mm = resolve(matmul, dct_operator(x.shape[-1]))
    return np.asarray(mm(x), dtype=np.float64)


def idct(y, matmul=None):
    """Inverse of :func:`dct` along the last axis: ``y @ C``; ``matmul`` computes
    ``y @ idct_operator(n)``."""
    y = np.asarray(y, dtype=np.float64)
    mm = resolve(matmul, idct_operator(y.shape[-1]))
    return np.asarray(mm(y), dtype=np.float64)


def to_blocks(image, block: int = 8) -> np.ndarray:
    """``(H, W)`` -> ``(H/b * W/b, b, b)`` blocks in row-major block order."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    h, w = image.shape
    if h % block or w % block:
        raise ValueError(f"image sides {image.shape} must be multiples of the block size {block}")
    return image.reshape(h // block, block, w // block, block).swapaxes(1, 2).reshape(
        -1, block, block)


def from_blocks(blocks, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_blocks` for an image of ``shape``."""
    blocks = np.asarray(blocks, dtype=np.float64)
    b = blocks.shape[-1]
    h, w = shape
    return blocks.reshape(h // b, w // b, b, b).swapaxes(1, 2).reshape(h, w)


def _separable(blocks: np.ndarray, mm) -> np.ndarray:
    """``M.T @ B @ M`` for every block, where ``mm(X) = X @ M``: rows first, then columns
    (the same programmed matrix, fed the transposed intermediate)."""
    n, b, _ = blocks.shape
    rows = np.asarray(mm(blocks.reshape(-1, b)), dtype=np.float64).reshape(n, b, b)  # B @ M
    cols = np.asarray(mm(rows.swapaxes(1, 2).reshape(-1, b)), dtype=np.float64)  # (B M).T @ M
    return cols.reshape(n, b, b).swapaxes(1, 2)  # M.T @ B @ M


def block_dct2(image, matmul=None, block: int = 8) -> np.ndarray:
    """2-D DCT of each ``block x block`` block of ``image`` (H, W), ``C B C.T``, laid out as
    the image (JPEG's layout). ``matmul`` computes ``x @ dct_operator(block)``."""
    mm = resolve(matmul, dct_operator(block))
    image = np.asarray(image, dtype=np.float64)
    return from_blocks(_separable(to_blocks(image, block), mm), image.shape)


def block_idct2(coefficients, matmul=None, block: int = 8) -> np.ndarray:
    """Inverse of :func:`block_dct2`, ``C.T Y C`` per block; ``matmul`` computes
    ``x @ idct_operator(block)``."""
    mm = resolve(matmul, idct_operator(block))
    coefficients = np.asarray(coefficients, dtype=np.float64)
    return from_blocks(_separable(to_blocks(coefficients, block), mm), coefficients.shape)


def zigzag_order(block: int = 8) -> list[tuple[int, int]]:
    """JPEG's zig-zag scan of a ``block x block`` block: (row, col) from the DC coefficient
    to the highest frequency."""
    cells = [(i, j) for i in range(block) for j in range(block)]
    return sorted(cells, key=lambda c: (c[0] + c[1], c[1] if (c[0] + c[1]) % 2 == 0 else c[0]))


def low_pass_mask(block: int = 8, keep: int = 10) -> np.ndarray:
    """Boolean ``block x block`` mask of the first ``keep`` coefficients in zig-zag order."""
    if not 1 <= keep <= block * block:
        raise ValueError(f"keep must be in [1, {block * block}], got {keep!r}")
    mask = np.zeros((block, block), dtype=bool)
    for i, j in zigzag_order(block)[:keep]:
        mask[i, j] = True
    return mask


def compress(coefficients, keep: int, block: int = 8) -> np.ndarray:
    """Zero all but the ``keep`` lowest-frequency coefficients of every block."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    h, w = coefficients.shape
    mask = np.tile(low_pass_mask(block, keep), (h // block, w // block))
    return np.where(mask, coefficients, 0.0)


@dataclass
class Compression:
    """The steps of :func:`compress_image`."""

    coefficients: np.ndarray  # block DCT of the level-shifted image
    kept: np.ndarray  # coefficients after dropping the high frequencies
    reconstructed: np.ndarray  # inverse transform of ``kept``, shifted back and clipped
    keep: int
    block: int

    @property
    def ratio(self) -> float:
        """Compression ratio: coefficients per block over coefficients kept."""
        return self.block**2 / self.keep


def compress_image(image, keep: int = 10, dct_matmul=None, idct_matmul=None, block: int = 8,
                   shift: float = 0.5, clip: tuple[float, float] | None = (0.0, 1.0)
                   ) -> Compression:
    """JPEG-like compression: block DCT, keep ``keep`` coefficients per block, inverse DCT.

    Args:
        image: (H, W), sides multiples of ``block``; pixel values in [0, 1] by default.
        keep: coefficients kept per block (zig-zag order).
        dct_matmul: computes ``x @ dct_operator(block)`` (the encoder); default exact.
        idct_matmul: computes ``x @ idct_operator(block)`` (the decoder); default exact.
        shift: subtracted before the transform and added back after (JPEG's level shift), so
            that pixels are centred on 0 and the sign bit of the number format is used.
        clip: pixel range the reconstruction is clipped to (``None``: no clipping).
    """
    image = np.asarray(image, dtype=np.float64)
    coefficients = block_dct2(image - shift, dct_matmul, block)
    kept = compress(coefficients, keep, block)
    reconstructed = block_idct2(kept, idct_matmul, block) + shift
    if clip is not None:
        reconstructed = np.clip(reconstructed, *clip)
    return Compression(coefficients, kept, reconstructed, keep, block)


def sample_image(name: str = "china.jpg", size: int = 256) -> np.ndarray:
    """A grayscale photograph shipped with scikit-learn (``"china.jpg"`` or
    ``"flower.jpg"``, 427 x 640 RGB): the centred square crop, resized to ``size x size``
    (area averaging), luma ``0.299 R + 0.587 G + 0.114 B``, float64 in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image(name)
    h, w, _ = rgb.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(rgb[top:top + side, left:left + side])
    square = square.resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(square, dtype=np.float64) / 255.0
    return pixels @ np.array([0.299, 0.587, 0.114])


def example_signal(n: int = 64, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """A length-``n`` signal: three cosines of DCT frequencies 3, 9 and 20 (amplitudes 1, 0.5,
    0.25) plus white noise of sd ``noise``; a sparse DCT spectrum on a noise floor."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    signal = sum(a * np.cos(np.pi * (2 * t + 1) * f / (2 * n))
                 for a, f in ((1.0, 3), (0.5, 9 % n), (0.25, 20 % n)))
    return signal + noise * rng.standard_normal(n)


__all__ = [
    "Compression",
    "block_dct2",
    "block_idct2",
    "compress",
    "compress_image",
    "dct",
    "dct_matrix",
    "dct_operator",
    "from_blocks",
    "idct",
    "idct_operator",
    "low_pass_mask",
    "sample_image",
    "example_signal",
    "to_blocks",
    "zigzag_order",
]

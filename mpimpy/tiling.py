"""Stage 2: pad the operands and split the contraction axis into array-sized tiles.

A product ``x @ W`` with ``W`` of shape (K, N) is spread over arrays of ``rows x cols`` cells:
K is split into ``Tk = ceil(K / rows)`` chunks (one per array row-block) and N into
``Tn = ceil(N / cols)`` chunks. Padding is zero: padded inputs drive 0 V and padded weights are
programmed at level 0 (LGS), so they add no current.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import TileShape


def n_tiles(length: int, size: int) -> int:
    return -(-length // size)


def check_block_alignment(k_block: int, k: int, rows: int, name: str) -> None:
    """An array adds all its rows in one read, so a quantization block along K must cover whole
    arrays: a multiple of ``rows`` elements, or all of K."""
    if k_block < k and k_block % rows != 0:
        raise ValueError(
            f"{name}: its quant_gran blocks span {k_block} elements along the contraction axis, "
            f"but an array sums {rows} rows in one read; use blocks that span a multiple of "
            f"{rows} or the whole axis (e.g. 'per-matrix', the default per-tile blocks, or "
            f"'per-row' for inputs / 'per-col' for weights), or declare the operand's role "
            f"(is_weight=True for weights, transpose=True for inputs) to have its blocks rounded "
            f"up to whole arrays, as the original mPimPy does"
        )


def tile_inputs(values: torch.Tensor, tile: TileShape, pad_value=0,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """(n_slices, M, K) -> (Tk, rows, M, n_slices): per array row-block and word line, every
    input vector's slices side by side. Each row-block is then the transpose of the
    ``(M * n_slices, rows)`` matrix one read multiplies, in the layout a matrix product takes
    without copying. The last row-block is padded with ``pad_value``; the result is in
    ``dtype`` (default: the values')."""
    n, m, k = values.shape
    tk = n_tiles(k, tile.rows)
    # one pass: the values are copied (and cast) straight into place, then the padding filled
    tiled = torch.empty((tk * tile.rows, m, n), dtype=dtype or values.dtype,
                        device=values.device)
    tiled[:k].copy_(values.permute(2, 1, 0))
    tiled[k:].fill_(pad_value)
    return tiled.view(tk, tile.rows, m, n)


def tile_weights(values: torch.Tensor, tile: TileShape) -> torch.Tensor:
    """(n_slices, K, N) -> (n_slices, Tk, Tn, rows, cols): the cells of every array."""
    n, k, cols_total = values.shape
    tk, tn = n_tiles(k, tile.rows), n_tiles(cols_total, tile.cols)
    padded = F.pad(values, (0, tn * tile.cols - cols_total, 0, tk * tile.rows - k))
    return padded.view(n, tk, tile.rows, tn, tile.cols).permute(0, 1, 3, 2, 4).contiguous()


def arrays_to_columns(arrays: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(n_arrays, Tk, Tn, rows, cols) -> (Tk, rows, n_arrays * len(columns)): the arrays of one
    row-block side by side (array-major), the layout in which one matrix product reads them all.
    Only the ``columns`` read are kept (indices into the ``Tn * cols`` columns of a row-block,
    see :attr:`mpimpy.devices.ProgrammedArrays.columns`): padding columns are never used."""
    n_arrays, tk, tn, rows, cols = arrays.shape
    side_by_side = arrays.permute(1, 3, 0, 2, 4).reshape(tk, rows, n_arrays, tn * cols)
    if bool((columns == torch.arange(len(columns), device=columns.device)).all()):
        # the first columns, in order (no unit columns): a slice, no gather
        return side_by_side[..., :len(columns)].reshape(tk, rows, n_arrays * len(columns))
    picked = side_by_side.index_select(-1, columns.to(side_by_side.device))
    return picked.reshape(tk, rows, n_arrays * len(columns))


def weight_sums(q_w: torch.Tensor, rows: int) -> torch.Tensor:
    """Each column's sum of integer weights ``(K, N)`` over each row-block of ``rows`` rows,
    float64 ``(Tk, N)``."""
    k, n = q_w.shape
    tk = -(-k // rows)
    padded = F.pad(q_w.to(torch.float64), (0, 0, 0, tk * rows - k))
    return padded.view(tk, rows, n).sum(1)

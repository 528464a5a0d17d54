"""How a product is executed: its chunk plan, its read kernel and the buffers it works in.

A product's currents rarely fit in memory at once: :func:`plan_chunks` cuts them into chunks
of input vectors, row-blocks and (for a calibrated ADC) column blocks, groups the chunks one
calibrated range spans, and picks the read kernel (exact int8 or float). Chunk buffers come
from a :class:`Workspace`, drawn from a per-thread pool (:func:`retained_buffer`) that the next
product reuses; :func:`release_buffers` empties it.

Shapes (``M`` vectors, ``Tk`` row-blocks, ``n_x`` input slices read, ``n_a`` arrays, ``C``
columns read per array): a chunk is ``(ms, ts, cs)``, index ranges of ``M``, ``Tk`` and ``C``;
its currents are ``(Tk', M', n_x, n_a, C')``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from .crossbar import int8_matmul_fits

#: Currents per chunk of an exact (integer) read (8 MB in float32), when chunk_elements allows:
#: measured fastest for int8 reads on the development machine (2 MB of L2 per core, 32 MB of
#: L3), where larger chunks leave the ADC and shift-add passes waiting on memory.
EXACT_READ_CHUNK_ELEMENTS = 2**21

#: With a calibrated ADC (a range per array) and an inexact read, a row-block of more currents
#: than this (every vector's, slice pair's and column's; 16 MB in float32, half the development
#: machine's L3) is read one column block at a time, slice pair by slice pair: its currents
#: would not stay in cache, one column block's do, and each array's range is then a reduction
#: along memory. Smaller row-blocks are read whole, every slice pair in one product: there the
#: narrow products of one pair and one block measured twice as slow (the converted CNN's
#: layers). A fixed number, not the chunk size, so that the chunks a product is read in never
#: change its numbers: each layout sums a current in its own order, and a calibrated ADC's code
#: flips where a current lies within round-off of a level's edge.
PAIR_MAJOR_CURRENTS = 2**22

#: Between products, each thread keeps a product's working buffers (the DAC codes and their
#: noise, and the chunk buffers of :class:`Workspace`) if they take at most this many bytes
#: each, and hands them to its next product: on the CPU, a fresh tensor is mapped from the OS
#: and zeroed page by page on first use (glibc's malloc serves blocks over 32 MB by mmap, and
#: gives freed memory back), about 0.3 ms per MB on the development machine, which was a third
#: of the time of a narrow DNN layer's product. With the default ``chunk_elements`` a thread
#: holds at most 2 x 128 MB of codes, 5 chunk buffers of 16 MB and a calibration buffer of up
#: to 128 MB; larger buffers are fresh for every product.
RETAINED_BUFFER_BYTES = 2**27

_retained = threading.local()


def retained_buffer(name: str, size: int, dtype: torch.dtype, device: torch.device
                    ) -> torch.Tensor:
    """A flat tensor of at least ``size`` elements for one product's use, kept for the
    thread's next product if it is at most :data:`RETAINED_BUFFER_BYTES` (CPU only: CUDA's
    caching allocator already reuses freed memory). Its contents are undefined."""
    if device.type != "cpu":
        return torch.empty(size, dtype=dtype, device=device)
    pool = _retained.__dict__.setdefault("buffers", {})
    buffer = pool.get(name)
    if buffer is not None and buffer.dtype == dtype and buffer.numel() >= size:
        return buffer
    pool.pop(name, None)  # freed before its successor is allocated
    buffer = torch.empty(size, dtype=dtype, device=device)
    if size * buffer.element_size() <= RETAINED_BUFFER_BYTES:
        pool[name] = buffer
    return buffer


def release_buffers() -> int:
    """Free the working buffers the calling thread keeps between products (see
    :data:`RETAINED_BUFFER_BYTES`): up to a few hundred MB after a large product, which a
    notebook otherwise holds until its thread ends. The next product allocates afresh (its
    first chunks then pay for fresh pages); its numbers are the same. Other threads keep theirs.

    Returns:
        the bytes the pool held (freed now, unless a tensor still refers to them).
    """
    pool = _retained.__dict__.pop("buffers", {})
    return sum(buffer.numel() * buffer.element_size() for buffer in pool.values())


class Workspace:
    """Buffers reused from chunk to chunk of one product, by name: one allocation each, of the
    largest shape asked for, instead of a fresh tensor per chunk (the allocator would keep the
    freed chunks and memory would grow with the number of chunks); drawn from the thread's
    :func:`retained_buffer`, so that the next product reuses them too. (The workspace keeps
    its own references as well: a buffer over the retention limit is then still allocated
    once per product, not once per chunk.)"""

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None
            ) -> torch.Tensor:
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self.buffers[name] = retained_buffer("chunk " + name, size,
                                                          dtype or self.dtype, self.device)
        return buffer[:size].view(shape)


def chunk_ranges(tk: int, m: int, per_row: int, elements: int) -> list[tuple[slice, slice]]:
    """(rows of x, row-blocks) index ranges of chunks of at most ``elements`` currents, each
    input vector on one row-block holding ``per_row`` (at least one such per chunk)."""
    mc = min(m, max(1, elements // per_row))
    tc = min(tk, max(1, elements // (per_row * mc)))
    return [(slice(m0, min(m0 + mc, m)), slice(t0, min(t0 + tc, tk)))
            for m0 in range(0, m, mc) for t0 in range(0, tk, tc)]


@dataclass
class ChunkPlan:
    """How one product's currents are read, chunk by chunk.

    Attributes:
        chunks: ``(ms, ts, cs)`` ranges of vectors, row-blocks and read columns per array.
        groups: the chunks in the groups a calibrated range spans (one range per array: one
            group per row-block and column range; otherwise one group of every chunk).
        pair_major: chunks are read slice pair by slice pair, one column block at a time
            (see :data:`PAIR_MAJOR_CURRENTS`); their currents are ``(Tk', n_x, n_a, M', C')``.
        int8_read: chunks are read exactly on the integer matrix units (int8 codes and
            matrix, int32 sums).
        kernel: the read kernel's name, ``"int8"`` or the float dtype's (``"float32"``).
    """

    chunks: list[tuple[slice, slice, slice]]
    groups: list[list[tuple[slice, slice, slice]]]
    pair_major: bool
    int8_read: bool
    kernel: str


def plan_chunks(codes: torch.Tensor, n_a: int, n_cols: int, block_columns: int,
                per_array_ranges: bool, exact: bool, unit_columns: int, chunk_elements: int,
                read_kernel: str) -> ChunkPlan:
    """Plan the reads of a product whose DAC codes are ``codes`` ``(Tk, rows, M, n_x)``, on
    ``n_a`` arrays of ``n_cols`` read columns each (column blocks of ``block_columns``).

    Args:
        per_array_ranges: the ADC calibrates one range per array (``adc_range="calibrated"``):
            a range sees every vector's currents of its columns before it converts any.
        exact: the read is exact on integer codes and levels (its matrix fits int8).
        unit_columns: how many of the columns are unit columns (they sit after every weight
            column: with them a calibration group stays a whole row-block).
        chunk_elements, read_kernel: the engine's options of those names.
    """
    tk, rows, m, n_x = codes.shape
    # A calibrated range per array must see all the vectors' currents of its columns before
    # it converts any. A row-block's currents of every vector rarely fit in a chunk; those of
    # one column block (arrays side by side) do: read by column block, each such group is
    # read once and converted from cache, instead of kept in a buffer the size of a
    # row-block's currents (out of cache) or read twice. Its currents are read slice pair by
    # slice pair ("pair-major"), so that each array's currents of every vector lie
    # contiguous: its range is then a reduction along memory (several times faster than one
    # across the vectors), and so is the subtraction of its lower end. (Only for row-blocks
    # of more than PAIR_MAJOR_CURRENTS currents, see there. Not for exact reads: on int8
    # units, reading twice in small chunks measured faster than reading once in large ones,
    # and their float fallback must take the same chunks, for the same numbers.)
    pair_major = per_array_ranges and not exact and not unit_columns and \
        m * n_x * n_a * n_cols > PAIR_MAJOR_CURRENTS
    width = block_columns if pair_major else n_cols
    column_ranges = [slice(c, min(c + width, n_cols)) for c in range(0, n_cols, width)]
    # An exact read is cheap on int8 units, so the passes after it (ADC, shift-add) set the
    # pace: they run from cache only if a chunk's currents stay in it. Both kernels take the
    # same chunks (the row-blocks' sums then add up in the same order: the same numbers).
    elements = min(chunk_elements, EXACT_READ_CHUNK_ELEMENTS) if exact else chunk_elements
    chunks = [(ms, ts, cs) for cs in column_ranges for ms, ts in chunk_ranges(
        tk, m, n_x * n_a * (cs.stop - cs.start), elements)]
    fewest_rows = min(c[0].stop - c[0].start for c in chunks) * n_x  # of one read
    int8_read = exact and read_kernel == "auto" and int8_matmul_fits(
        codes.device, fewest_rows, rows, n_a * n_cols)
    if per_array_ranges:  # one range per (row-block, slice pair, column block of arrays)
        by_range: dict[tuple[int, int], list] = {}
        for chunk in chunks:
            by_range.setdefault((chunk[1].start, chunk[2].start), []).append(chunk)
        groups = list(by_range.values())
    else:
        groups = [chunks]
    kernel = "int8" if int8_read else str(codes.dtype).removeprefix("torch.")
    return ChunkPlan(chunks, groups, pair_major, int8_read, kernel)


__all__ = ["EXACT_READ_CHUNK_ELEMENTS", "PAIR_MAJOR_CURRENTS", "RETAINED_BUFFER_BYTES",
           "ChunkPlan", "Workspace", "chunk_ranges", "plan_chunks", "release_buffers",
           "retained_buffer"]

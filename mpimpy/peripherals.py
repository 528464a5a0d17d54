"""Stages 4 and 6: the DAC that drives word lines and the ADC that reads bit lines.

Both work in *code units*: the DAC returns integer codes ``d`` in ``[0, dac_levels - 1]`` (the
word-line voltage is ``vread * d / (dac_levels - 1)``); the ADC turns a column current, expressed in
the same units as the currents it is given, into one of ``radc`` levels.
"""

from __future__ import annotations

import torch

from .config import TileShape, level_scale
from .jit import Compiled
from .slicing import bit_slices
from .tiling import n_tiles, tile_inputs


def dac_scale(widths, rdac: int | None, level_mapping: str) -> list[float]:
    """DAC codes per unit of each input slice's value (:func:`mpimpy.config.level_scale`);
    1 for an ideal DAC, whose code is the slice value."""
    return [1.0 if rdac is None else level_scale(w, rdac, level_mapping) for w in widths]


def dac_full_scale(widths, rdac: int | None) -> list[int]:
    """Largest DAC code for each input slice: ``rdac - 1``, or ``2**w - 1`` for an ideal DAC."""
    return [(rdac - 1) if rdac is not None else 2**w - 1 for w in widths]


#: Inputs of at most this many bits take their DAC codes from a table of every possible value.
CODE_TABLE_BITS = 16


def dac_codes(slices: torch.Tensor, widths, rdac: int | None, dtype: torch.dtype,
              level_mapping: str = "integer") -> torch.Tensor:
    """Noise-free DAC codes of input slices (slice axis first, any shape after it).

    A slice value ``u`` of width ``w`` becomes the code ``round(u * dac_scale)``
    (:func:`dac_scale`: ``u * ((rdac - 1) // (2**w - 1))`` with the integer mapping), or ``u``
    itself for an ideal DAC (``rdac=None``); the voltage is ``vread * code / dac_full_scale``.
    """
    codes = slices.to(dtype)
    if rdac is not None:
        scale = torch.tensor(dac_scale(widths, rdac, level_mapping), dtype=dtype,
                             device=slices.device)
        codes = torch.round(codes * scale.view((-1,) + (1,) * (slices.dim() - 1)))
    return codes


def read_slices(widths, encoding: str) -> tuple[int, ...]:
    """Indices of the input slices that are driven, one read each: all of them, except the
    sign slice of a sign-magnitude input (its sign is the voltage's polarity)."""
    return tuple(range(1 if encoding == "sign_magnitude" else 0, len(widths)))


def driven_shape(q_shape, widths, tile: TileShape, encoding: str = "twos_complement"
                 ) -> tuple[int, int, int, int]:
    """``(Tk, rows, M, n_x)``: the shape of :func:`drive`'s codes for inputs of shape
    ``(M, K)``: K's row-blocks, of ``tile.rows`` word lines each (a single, partly filled one
    keeps its K), times the slices read."""
    m, k = q_shape
    rows = min(tile.rows, max(k, 1))
    return n_tiles(k, rows), rows, m, len(read_slices(widths, encoding))


def drive(q: torch.Tensor, widths, rdac: int | None, vnoise: float, tile: TileShape,
          generator: torch.Generator, dtype: torch.dtype, *, encoding: str = "twos_complement",
          level_mapping: str = "integer", return_sums: bool = False,
          out: torch.Tensor | None = None, scratch: torch.Tensor | None = None):
    """Input integers -> the DAC codes of the slices they are driven as, per row-block, noisy.

    Args:
        q: integer ``(M, K)`` inputs, ``|q| <= 2**(bits - 1) - 1`` with ``bits = sum(widths)``.
        widths: the input slice widths.
        rdac: DAC levels (a side, for sign-magnitude inputs), or ``None`` for an ideal DAC
            (code = slice value).
        vnoise: relative standard deviation of each driven voltage, drawn on every call.
        tile: the array size; K is cut into row-blocks of ``tile.rows`` word lines.
        generator: random source of the voltage noise.
        dtype: floating dtype of the result.
        encoding: how the inputs are cut (:data:`mpimpy.slicing.ENCODINGS`); the slices read
            are :func:`read_slices` (sign-magnitude codes carry the sign of their input).
        level_mapping: how slice values become codes (:func:`dac_codes`).
        return_sums: return ``(codes, sums)``, with the noise-free codes summed over each
            row-block's word lines, ``(Tk, M, n_x)``: what a digital adder fed with the DAC's
            inputs computes.
        out, scratch: reused buffers for the codes and, with ``vnoise``, their noise: flat
            tensors of ``dtype`` with at least ``Tk * rows * M * n_x`` elements (the codes are a
            view of ``out``), or ``None`` for fresh ones. A product reads the codes once, so a
            caller that drives input after input can hand the same buffers back each time:
            that spares the fresh allocation of tens of MB (mapped and zeroed page by page by
            the OS) that would otherwise cost about as much as the lookup itself.

    Returns:
        ``(Tk, rows, M, n_x)`` codes :func:`dac_codes` times ``1 + vnoise * N(0, 1)`` of the
        ``n_x`` slices read: per row-block and word line, every input vector's slices side by
        side (:func:`mpimpy.tiling.tile_inputs`). Word lines past K carry no input (code 0, so
        0 V, whatever the encoding). The last row-block is zero-padded to ``tile.rows``, except
        a single, partly filled one (K < rows), which keeps its K word lines.
    """
    tk, rows, m, n_x = driven_shape(q.shape, widths, tile, encoding)
    tile = TileShape(rows, tile.cols)
    bits = sum(widths)
    driven = list(read_slices(widths, encoding))
    size = tk * rows * m * n_x
    for name, buffer in (("out", out), ("scratch", scratch)):
        if buffer is not None and (buffer.dtype != dtype or buffer.numel() < size
                                   or not buffer.is_contiguous()):
            raise ValueError(f"{name} must be a contiguous {dtype} tensor of at least {size} "
                             f"elements, got {buffer.dtype} of {buffer.numel()}")
    if bits <= CODE_TABLE_BITS:
        # An input takes one of 2**bits values: cut and convert each value once, then look
        # every element up (one pass over the codes instead of one per slicing step). The
        # last row of the table is the padding's: no input, 0 V.
        values = torch.arange(-(2 ** (bits - 1)), 2 ** (bits - 1), device=q.device)
        table = dac_codes(bit_slices(values, widths, encoding), widths, rdac, dtype,
                          level_mapping)[driven].t()
        table = torch.cat([table, table.new_zeros(1, len(driven))]).contiguous()
        # every word line's table row, in int32 (half the bytes of q's int64); the padding,
        # 2**(bits - 1) before the offset is added, lands on the last row
        offset = 2 ** (bits - 1)
        index = tile_inputs(q.unsqueeze(0), tile, pad_value=2**bits - offset,
                            dtype=torch.int32).add_(offset)
        # (index_select gathers rows of a few codes several times faster than indexing)
        codes = torch.index_select(table, 0, index.view(-1), out=None if out is None else
                                   out[:size].view(-1, len(driven)))
        codes = codes.view(tk, rows, m, n_x)
    else:
        codes = tile_inputs(dac_codes(bit_slices(q, widths, encoding), widths, rdac, dtype,
                                      level_mapping)[driven], tile)
        if out is not None:
            codes = out[:size].view(codes.shape).copy_(codes)
    sums = codes.sum(1) if return_sums else None
    if vnoise > 0:
        noise = torch.randn(codes.shape, generator=generator, device=codes.device, dtype=dtype,
                            out=None if scratch is None else scratch[:size].view(codes.shape))
        codes.mul_(noise.mul_(vnoise).add_(1))
    return (codes, sums) if return_sums else codes


def adc_step(full_scale: torch.Tensor, radc: int, bipolar: bool) -> torch.Tensor:
    """Current of one ADC level for a given full-scale current (same units, any shape).

    Unipolar: ``radc`` levels on ``[0, full_scale]``. Bipolar (currents of both signs): a
    symmetric ADC with ``(radc - 1) // 2`` levels on each side of 0. A zero full scale
    (a slice pair that carries no current) gets step 1 so it converts to 0, never NaN. (A
    range ``[low, high]`` calibrated on the currents is ``radc - 1`` steps of
    ``adc_step(high - low, radc, False)`` from ``low``.)
    """
    levels = (radc - 1) // 2 if bipolar else radc - 1
    step = full_scale / levels
    return torch.where(step > 0, step, torch.ones_like(step))


def convert(currents: torch.Tensor, radc: int, bipolar: bool, saturates: bool = True
            ) -> torch.Tensor:
    """Quantize currents, given in units of one ADC level, to ADC codes in place.

    Currents past the full scale saturate at the end codes, as in a real ADC. ``saturates=False``
    promises that none does (every current rounds to a code in range), and skips that pass.
    Returns ``currents`` holding integer codes.
    """
    currents.round_()
    if not saturates:
        return currents
    top = (radc - 1) // 2 if bipolar else radc - 1
    bottom = -top if bipolar else 0
    return currents.clamp_(bottom, top)


def _convert_shift_add(currents: torch.Tensor, weights: torch.Tensor, radc: int | None,
                       bipolar: bool, divisor: torch.Tensor | None = None,
                       low: torch.Tensor | None = None, step: torch.Tensor | None = None,
                       gain: torch.Tensor | None = None, saturates: bool = True,
                       scratch: torch.Tensor | None = None, out: torch.Tensor | None = None,
                       pair_major: bool = False) -> torch.Tensor:
    """Stages 6 and 7 on one chunk: every current through the ADC, then the shift-add.

    Args:
        currents: ``(T, M, n_x, n_a, C)`` currents of ``T`` row-blocks and ``M`` vectors, in code
            units: float, or the exact int32 sums of an integer read. Not modified (unless it
            is ``scratch``). With ``pair_major``, ``(T, n_x, n_a, M, C)``: each slice pair's
            currents contiguous.
        weights: ``(n_x * n_a,)`` shift-add weight of each slice pair (float; for a fixed ADC
            range, per ADC level).
        radc: ADC levels, or ``None`` (no ADC: the currents are added up as they are).
        bipolar: a symmetric ADC, for currents of both signs (see :func:`convert`).
        divisor: a fixed range's ADC step, broadcastable to ``currents`` (e.g. per input slice
            ``(1, 1, n_x, 1, 1)``), dividing every current first; or ``None``.
        low, step: calibrated range of every read column, broadcastable to ``currents`` (e.g.
            ``(T, 1, n_x, n_a, C)``, or ``(T, n_x, n_a, 1, C)`` pair-major): code ``c``
            reads ``low + c * step``, and this returns the ``c * step`` (the lower ends add up
            to a constant per output, left to the caller). ``None``: currents already in ADC
            levels.
        gain: digital gain of every converted column (drift compensation), broadcastable to
            ``currents`` (e.g. ``(T, 1, 1, n_a, C)``), or ``None``.
        saturates: whether a current may fall outside the ADC's range (see :func:`convert`);
            ``False`` where the caller knows none does.
        scratch, out: uncompiled, reused buffers for the ADC's codes (float, shaped like
            ``currents``; may be ``currents`` itself, which is then overwritten) and the result:
            each pass then runs in place, without a fresh buffer per chunk. ``None`` (as
            compiled, where the passes fuse into one and hold no chunk-sized buffer): fresh.

    Returns:
        ``(T, M, C)`` float: ``sum over slice pairs of weight * ADC output``.
    """
    # int32 sums (at most 2**24) convert exactly
    values = currents.to(weights.dtype, copy=True) if scratch is None else \
        scratch.copy_(currents)
    if divisor is not None:
        values.div_(divisor)
    if low is not None:
        values.sub_(low).div_(step)
    if radc is not None:
        convert(values, radc, bipolar, saturates)
    if step is not None:
        values.mul_(step)
    if gain is not None:
        values.mul_(gain)
    if pair_major:  # the weighted sum of the pairs' contiguous blocks
        t, n_x, n_a, m, c = values.shape
        return torch.matmul(weights, values.view(t, n_x * n_a, m * c),
                            out=None if out is None else out.view(t, m * c)).view(t, m, c)
    t, m, n_x, n_a, c = values.shape
    return torch.matmul(weights, values.view(t * m, n_x * n_a, c), out=out).view(t, m, c)


#: :func:`_convert_shift_add`, run as it is or compiled into one pass (:mod:`mpimpy.jit`)
convert_shift_add = Compiled(_convert_shift_add, dynamic_dim=1)

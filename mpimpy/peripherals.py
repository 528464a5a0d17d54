"""Stages 4 and 6: the DAC that drives word lines and the ADC that reads bit lines.

Both work in *code units*: the DAC returns integer codes ``d`` in ``[0, dac_levels - 1]`` (the
word-line voltage is ``vread * d / (dac_levels - 1)``); the ADC turns a column current, expressed in
the same units as the currents it is given, into one of ``radc`` levels.
"""

from __future__ import annotations

import torch

from .calibration import PER_ARRAY_ADC_RANGES
from .config import ADC_RANGE_MODES, TileShape, level_scale
from .jit import Compiled
from .slicing import bit_slices, encoding_bias, slice_weights
from .tiling import n_tiles, tile_inputs, weight_sums


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


def input_weights(widths, cfg) -> tuple[torch.Tensor, list[int]]:
    """Shift-add weight of each input slice read, per DAC code, float64 ``(n_x,)``: the
    slice's power of two (negative for a two's complement sign slice) over the codes one unit
    of that slice is driven as; and the DAC's full-scale code of each ``(n_x,)``."""
    driven = read_slices(widths, cfg.input_encoding)
    weights = torch.tensor([w / c for w, c in zip(
        slice_weights(widths, cfg.input_encoding),
        dac_scale(widths, cfg.rdac, cfg.level_mapping), strict=True)],
        dtype=torch.float64)[list(driven)]
    return weights, [dac_full_scale(widths, cfg.rdac)[i] for i in driven]


def adc_full_scale(dac_full: list[int], rows: int, cfg) -> torch.Tensor:
    """The ADC's worst-case current per input slice, float64 ``(n_x,)`` in code units: every
    cell of ``rows`` at HGS, every input at the DAC's full scale ``dac_full`` (levels above
    LGS; where a read holds every cell's LGS current, :attr:`mpimpy.mapping.Mapping.holds_lgs`,
    that comes on top)."""
    full_levels = (cfg.g_level - 1) + (cfg.LGS / cfg.level_step
                                       if cfg.weight_mapping.holds_lgs else 0.0)
    return torch.tensor(dac_full, dtype=torch.float64) * (rows * full_levels)


def shift_add_first(codes: torch.Tensor, matrix: torch.Tensor, gain: torch.Tensor | None,
                    x_weight: torch.Tensor, w_weight: torch.Tensor):
    """Without an ADC and read noise the read is linear, so the shift-add commutes with it:
    the input slices are added up first (codes ``(Tk, rows, M, n_x)`` -> ``(Tk, rows, M, 1)``)
    and so are the arrays, with their drift gains ``(Tk, n_a * C)`` if any (read matrix
    ``(Tk, rows, n_a * C)`` -> ``(Tk, rows, C)``): each array is read once instead of once per
    slice pair. Returns the codes, the matrix and their shift-add weights (ones)."""
    codes = (codes * x_weight.to(codes)).sum(-1, keepdim=True)
    tk, rows, _ = matrix.shape
    if gain is not None:  # a digital gain per column commutes with the linear read
        matrix = matrix * gain[:, None, :]
    matrix = (matrix.view(tk, rows, len(w_weight), -1)
              * w_weight.to(matrix).view(1, 1, -1, 1)).sum(2)
    ones = torch.ones(1, dtype=torch.float64)
    return codes, matrix, ones, ones


def bias_levels(cfg, widths, w_weight: torch.Tensor) -> float:
    """What a read of weights sliced as ``widths`` holds beyond the weights, per unit of input,
    in weight units (:meth:`mpimpy.mapping.Mapping.bias_levels`), ``w_weight`` ``(n_a,)``
    being the arrays' shift-add weights."""
    return cfg.weight_mapping.bias_levels(encoding_bias(widths, cfg.weight_encoding),
                                          cfg.LGS / cfg.level_step, w_weight)


def operand_biases(cfg, x_widths, w_widths, q_w: torch.Tensor, code_sums, x_weight, w_weight,
                   rows: int, dtype: torch.dtype):
    """What the biases of offset-binary operands add, in the units of the shift-added result:
    the weights' bias times each vector's input sum, per row-block ``(Tk, M)`` (from the DAC
    codes' noise-free sums ``code_sums`` ``(Tk, M, n_x)``, when the mapping removes its bias
    digitally), and the inputs' bias times each column's weight sum, per row-block
    ``(Tk, N)`` (offset-binary inputs); each ``None`` where there is none."""
    bias_per_vector = bias_per_column = None
    if cfg.weight_mapping.digital_bias:
        bias_per_vector = (code_sums.double() @ x_weight.to(code_sums.device)).mul_(
            bias_levels(cfg, w_widths, w_weight)).to(dtype)
    if cfg.input_encoding == "offset_binary":
        bias_per_column = weight_sums(q_w, rows).mul_(
            encoding_bias(x_widths, cfg.input_encoding)).to(dtype)
    return bias_per_vector, bias_per_column


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


def clipped_currents(currents: torch.Tensor, low: torch.Tensor, high: torch.Tensor):
    """How many ``currents`` lie outside ``[low, high]`` (bounds broadcastable to them, one
    per range): one min/max pass over the axes each range spans, and a count only where some
    current lies outside (an exact count costs three passes: paid only when something clips).
    Returns an integer tensor, or 0."""
    axes = tuple(d for d in range(currents.dim())
                 if low.shape[d] == 1 and currents.shape[d] != 1)
    if bool((currents.amin(axes, keepdim=True) >= low).all()) and \
            bool((currents.amax(axes, keepdim=True) <= high).all()):
        return 0
    return (currents < low).logical_or_(currents > high).sum()


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


class ChunkConverter:
    """Stages 6 and 7 of a product, chunk by chunk: the ADC (its ranges fixed, frozen by the
    calibration stage, or found from the currents it converts), the shift-add, the removal of
    the operands' biases, and the rescale by the block scales into the result ``(M, N)``.

    Args:
        cfg: the hardware settings (``radc``, ``adc_range``, the mapping).
        codes: the product's DAC codes ``(Tk, rows, M, n_x)``; a fixed ADC range on an inexact
            read divides them in place (into ADC levels).
        pair_weight: shift-add weight of each (input slice, array) pair per code unit of
            current, float64 ``(n_x * n_a,)``.
        full_scale: the ADC's worst-case current per input slice ``(n_x,)``, code units.
        n_a, n_cols, n: arrays, read columns per array (unit columns included), outputs.
        arrays: the programmed arrays (unit columns, columns per array, tile).
        plan, workspace: the product's :class:`~mpimpy.execution.ChunkPlan` and buffers.
        exact: ``(int8 matrix, largest |current|)`` of an exact read, or ``None``.
        scale_x, scale_w: block scales per row-block ``(M, Tk)`` and ``(Tk, N)``.
        bias_per_vector, bias_per_column: ``(Tk, M)`` and ``(Tk, N)`` biases of offset-binary
            weights and inputs to subtract, or ``None``.
        gain: ``(Tk, n_a * C)`` drift-compensation gain of every converted column, applied
            after the ADC, or ``None``.
        calibration_elements: the currents a calibration group may keep between calibrating
            and converting (more are read twice, the generator rewound).
        compiled: run :func:`convert_shift_add` compiled.
        generator: the engine's generator (rewound for a second read of a group).
        frozen: the ranges the calibration stage froze (:class:`mpimpy.calibration.AdcRanges`)
            for a frozen mode; ``None`` finds them from the currents (an oracle mode, or a
            calibration).
        recorder: a :class:`mpimpy.calibration.RangeRecorder` that collects the ranges found,
            or ``None``.

    After the product, ``clipped`` holds how many conversions saturated against frozen ranges
    (a tensor; 0 without frozen ranges) of ``conversions``.
    """

    def __init__(self, cfg, codes, pair_weight, full_scale, n_a, n_cols, n, arrays, plan,
                 workspace, exact, scale_x, scale_w, bias_per_vector, bias_per_column, gain,
                 calibration_elements, compiled, generator, frozen=None, recorder=None):
        self.cfg, self.n_a, self.n_cols, self.n, self.arrays = cfg, n_a, n_cols, n, arrays
        self.n_x = codes.shape[-1]
        self.plan, self.workspace, self.compiled = plan, workspace, compiled
        self.scale_x, self.scale_w, self.gain = scale_x, scale_w, gain
        self.bias_per_vector, self.bias_per_column = bias_per_vector, bias_per_column
        self.calibration_elements, self.generator = calibration_elements, generator
        self.bipolar = cfg.bipolar_adc
        # (fixed ranges: "full" or a float; the others are found from currents)
        self.calibrated = cfg.radc is not None and cfg.adc_range in ADC_RANGE_MODES[1:]
        self.per_array = self.calibrated and cfg.adc_range in PER_ARRAY_ADC_RANGES
        self.frozen, self.recorder = frozen, recorder
        self.clipped, self.conversions = 0, 0
        self.step_after = None  # a fixed ADC's step per input slice, dividing the exact sums
        # A range per array found from the currents it converts spans them, so none saturates
        self.saturates = not (self.per_array and frozen is None)
        if cfg.radc is not None and not self.calibrated:
            # A fixed ADC range: currents come out in ADC levels. Inexact reads divide the
            # codes (fewer than the currents); exact ones their sums, so that both kernels
            # round the same integers.
            fraction = 1.0 if cfg.adc_range == "full" else cfg.adc_range
            step = adc_step(full_scale * fraction, cfg.radc, self.bipolar)
            if exact is None:  # in place: the codes are this product's own
                codes.div_(step.to(codes))
            else:
                self.step_after = step.to(codes).view(1, 1, self.n_x, 1, 1)
            pair_weight = pair_weight * step.repeat_interleave(n_a)
            # Nor does any on an exact read with the full range: no current passes the full
            # scale (every input at the DAC's top code, every cell at the top level) and, for
            # a unipolar ADC, none is negative (no negative code or level).
            if fraction == 1.0 and exact is not None and \
                    exact[1] <= float(full_scale.min()):
                self.saturates = not (self.bipolar or (float(codes.amin()) >= 0
                                                       and float(exact[0].amin()) >= 0))
        self.pair_weight = pair_weight.to(codes)
        # the column block of every read column (C,), for one range per array
        self.block_of = (arrays.columns // arrays.tile.cols).to(codes.device) \
            if self.per_array else None

    def ranges(self, group, reader):
        """The ADC ranges of a group of chunks (:attr:`ChunkPlan.groups`) as keyword arguments
        of :meth:`add`, and the group's currents if they were kept (else ``None``: read each
        chunk again, the generator rewound to draw the same read noise).

        A calibrated ADC's ranges are set by the currents it converts, so a group is read in
        full before any of it is converted: with one range per array, each row-block's column
        range on its own, since no range spans row-blocks or column blocks; with one range per
        slice pair, the whole product. A fixed range needs no read.
        """
        pair_weight = self.pair_weight
        if not self.calibrated:
            return {"weights": pair_weight}, None
        _, ts, cs = group[0]
        if self.frozen is not None:  # no read: the calibration stage set them
            low, high = (v[ts] if self.per_array else v
                         for v in (self.frozen.low, self.frozen.high))
            kept = None
        else:
            state = self.generator.get_state()
            low, high, kept = self._calibrate(group, reader)
            if kept is None:
                self.generator.set_state(state)
            if self.recorder is not None:
                self.recorder.record(low, high, ts if self.per_array else None)
        n_x, n_a, n_cols, cfg = self.n_x, self.n_a, self.n_cols, self.cfg
        ranges = {"weights": pair_weight}
        if self.per_array:
            # code c reads low + c * step, every one of the radc levels on [min, max]; per
            # read column of the group (Tk', n_x, n_a, C')
            step = adc_step(high - low, cfg.radc, False)
            low_c, step_c = (v.index_select(-1, self.block_of[cs]).to(pair_weight)
                             for v in (low, step))
            lows = low_c
            if self.gain is not None:  # the drift gain scales what the ADC read, offset too
                lows = lows * self.gain[ts].view(-1, 1, n_a, n_cols)[..., cs]
            # what the lower ends add up to in the shift-add of each column (Tk', C')
            ranges["range_offset"] = torch.einsum("tsac,sa->tc", lows,
                                                  pair_weight.view(n_x, n_a))
            # as the currents lie: (Tk', 1, n_x, n_a, C'), or pair-major one range per
            # array (Tk', n_x, n_a, 1, 1)
            ranges["array_range"] = tuple(v[..., :1, None] if self.plan.pair_major
                                          else v.unsqueeze(1) for v in (low_c, step_c))
            if self.frozen is not None:  # what saturates, as the currents lie
                high_c = high.index_select(-1, self.block_of[cs]).to(pair_weight)
                ranges["bounds"] = (ranges["array_range"][0], high_c[..., :1, None]
                                    if self.plan.pair_major else high_c.unsqueeze(1))
        else:
            # zero current stays at code 0: [0, max], or +-max|I| for a bipolar ADC
            peak = torch.maximum(high, -low) if self.bipolar else high
            pair_step = adc_step(peak.clamp_min(0), cfg.radc, self.bipolar)
            ranges["weights"] = pair_weight * pair_step.flatten().to(pair_weight)
            ranges["pair_step"] = pair_step.to(pair_weight).view(1, 1, n_x, n_a, 1)
            if self.frozen is not None:
                top = peak.to(pair_weight).view(1, 1, n_x, n_a, 1)
                ranges["bounds"] = (-top if self.bipolar else torch.zeros_like(top), top)
        return ranges, kept

    def _calibrate(self, group, reader):
        """[min, max] of the group's currents: per (row-block, slice pair, column block)
        ``(Tk', n_x, n_a, Tn)`` for per-array ranges, else per slice pair ``(n_x, n_a)``;
        and the currents if they were kept (else ``None``)."""
        n_x, n_a, device = self.n_x, self.n_a, self.pair_weight.device
        _, ts, cs = group[0]
        tn = self.arrays.positive.shape[2]
        tk = reader.tk
        t, cw = ts.stop - ts.start if self.per_array else tk, cs.stop - cs.start
        shape = (t, n_x, n_a, tn) if self.per_array else (n_x, n_a)
        low = torch.full(shape, torch.inf, dtype=torch.float64, device=device)
        high = torch.full(shape, -torch.inf, dtype=torch.float64, device=device)
        block_of = self.block_of
        size = sum((c[0].stop - c[0].start) * (c[1].stop - c[1].start)
                   for c in group) * n_x * n_a * cw
        # (an int8 read costs less than keeping its currents out of cache: read again); a
        # percentile needs them all
        rule = None if self.recorder is None else self.recorder.rule
        by_percentile = rule is not None and rule.name == "percentile"
        keep = len(group) == 1 or by_percentile or (size <= self.calibration_elements
                                                    and not self.plan.int8_read)
        kept = [] if keep else None
        # Kept currents go to one buffer of the group's size (reused from group to group;
        # each chunk the next contiguous part of it), unless the group is one chunk
        buffer = self.workspace.get("kept", (size,)) if keep and len(group) > 1 else None
        offset = 0
        for chunk in group:
            ms, cts, _ = chunk
            chunk_size = (ms.stop - ms.start) * (cts.stop - cts.start) * n_x * n_a * cw
            currents = reader.read(chunk, None if buffer is None else
                                   buffer[offset:offset + chunk_size])
            offset += chunk_size
            # (amin and amax apart: torch.aminmax is several times slower; compiled into
            # one pass, they are no faster)
            if self.plan.pair_major:  # each array's currents are contiguous: along memory
                flat = currents.view(currents.shape[0], n_x, n_a, -1)
                chunk_low, chunk_high = (v.double().unsqueeze(-1)
                                         for v in (flat.amin(-1), flat.amax(-1)))
                chunk_blocks = block_of[cs][:1]  # (t, n_x, n_a, 1): the block's range
            else:
                # over the vectors first: a reduction down the outer axis reads memory in
                # order
                flat = currents.view(currents.shape[0], -1, n_x * n_a * cw)
                chunk_low, chunk_high = (v.double().view(-1, n_x, n_a, cw)
                                         for v in (flat.amin(1), flat.amax(1)))
                chunk_blocks = None if not self.per_array else block_of[cs]
            if self.per_array:
                index = chunk_blocks.expand(chunk_low.shape)
                low.copy_(low.scatter_reduce(-1, index, chunk_low, "amin"))
                high.copy_(high.scatter_reduce(-1, index, chunk_high, "amax"))
            else:  # one range per slice pair over the whole product
                low.copy_(torch.minimum(low, chunk_low.amin((0, 3))))
                high.copy_(torch.maximum(high, chunk_high.amax((0, 3))))
            if keep:
                kept.append(currents)
        if by_percentile:
            low, high = self._percentiles(kept, low, high, block_of, cs, rule)
        return low, high, kept

    def _percentiles(self, kept, low, high, block_of, cs, rule):
        """The rule's ends of a group's currents ``kept``, shaped as :meth:`_calibrate`'s (the
        arrays' min/max ``low`` and ``high`` say which column blocks the group read)."""
        n_x, n_a = self.n_x, self.n_a
        if self.plan.pair_major:  # (t, n_x, n_a, M', C') chunks of one column block
            values = torch.cat([c.reshape(*c.shape[:3], -1) for c in kept], -1)
            ends = rule.ends(values)
            index = block_of[cs][:1].expand(ends[0].shape + (1,))
            return tuple(v.scatter(-1, index, e.unsqueeze(-1)) for v, e in zip(
                (low, high), ends, strict=True))
        currents = torch.cat(kept, 1) if self.per_array else None
        if not self.per_array:  # one range per slice pair, over every chunk
            values = torch.cat([k.permute(2, 3, 0, 1, 4).reshape(n_x, n_a, -1)
                                for k in kept], -1)
            return rule.ends(values)
        blocks = block_of[cs]
        for block in blocks.unique().tolist():  # (a few column blocks: calibration only)
            columns = (blocks == block).nonzero().flatten()
            values = currents.index_select(-1, columns).movedim(1, 3).reshape(
                currents.shape[0], n_x, n_a, -1)
            low[..., block], high[..., block] = rule.ends(values)
        return low, high

    def add(self, y, chunk, currents, weights, array_range=None, range_offset=None,
            pair_step=None, bounds=None):
        """Stages 6-7 on one chunk's currents ``(Tk', M', n_x, n_a, C')``, added into ``y``.

        ``weights``: the shift-add weight of each slice pair ``(n_x * n_a,)``.
        ``array_range``: the calibrated (lower end, step) of the chunk's read columns of
        these row-blocks and ``range_offset`` what the lower ends add up to; ``pair_step``:
        the step of a whole-product calibration; both ``None`` for a fixed ADC range.
        ``bounds``: the frozen ranges' ends as the currents lie, to count what saturates.
        """
        ms, ts, cs = chunk
        t, mc, cw = currents.shape[0], ms.stop - ms.start, cs.stop - cs.start
        n_a, n_cols, pair_major = self.n_a, self.n_cols, self.plan.pair_major
        outputs = slice(cs.start, min(cs.stop, self.n))  # the output columns (no unit columns)
        low, step = (None, None) if array_range is None else array_range
        # uncompiled, the passes run in place in reused buffers; compiled, they fuse into
        # one and need none
        buffers = {} if self.compiled else {
            "scratch": currents if currents.is_floating_point() else
            self.workspace.get("codes", currents.shape).view(currents.shape),
            "out": self.workspace.get("partial", (t * mc, cw))}
        saturates = self.saturates
        if bounds is not None:  # (before the ADC, which may convert the currents in place)
            clipped = clipped_currents(currents, *bounds)
            self.clipped = self.clipped + clipped
            self.conversions += currents.numel()
            # every current within its range rounds to a code in range: no clipping pass
            saturates = not isinstance(clipped, int)
        column_gain = None
        if self.gain is not None:  # the gain of every read column, as the currents lie
            column_gain = self.gain[ts].view(t, 1, n_a, 1, n_cols) if pair_major else \
                self.gain[ts].view(t, 1, 1, n_a, n_cols)
            column_gain = column_gain[..., cs]
        partial = convert_shift_add(
            currents, weights, self.cfg.radc, self.bipolar and array_range is None,
            divisor=pair_step if self.step_after is None else self.step_after, low=low,
            step=step, gain=column_gain, saturates=saturates, pair_major=pair_major,
            compile=self.compiled, dynamic_dim=3 if pair_major else 1, **buffers)
        if range_offset is not None:
            partial.add_(range_offset.unsqueeze(1))  # the ranges' lower ends
        partial = self.cfg.weight_mapping.remove_bias(
            partial, self.arrays.unit_columns, self.arrays.weight_columns_per_array,
            None if self.bias_per_vector is None else
            self.bias_per_vector[ts, ms].unsqueeze(-1))
        if self.bias_per_column is not None:
            partial.sub_(self.bias_per_column[ts, outputs].unsqueeze(1))
        # rescale each row-block by its block scales and add the row-blocks up
        partial.mul_(self.scale_x[ms, ts].t().unsqueeze(-1)).mul_(
            self.scale_w[ts, outputs].unsqueeze(1))
        y[ms, outputs] += partial[0] if t == 1 else partial.sum(0)

"""Stage 1: quantize an operand in blocks and cut it into bit slices.

A real number ``v`` becomes ``q * step`` with ``q`` a signed integer of ``bits = sum(slice_method)``
bits and ``step`` shared by a block of elements:

* **INT**: ``step = max|v| / (2**(bits-1) - 1)`` over the block, ``q = round(v / step)``.
* **FP** (block floating point, ``bw_e`` exponent bits): the block shares the exponent
  ``e = floor(log2(max|v|))``, clipped to the signed range ``[-2**(bw_e-1), 2**(bw_e-1) - 1]``;
  mantissas are pre-aligned to it: ``step = 2**(e - (bits - 2))``, so the largest value of the
  block has the form ``1.xxx * 2**e`` with ``bits - 2`` fraction bits, one integer bit and a sign
  bit.  FP16, BF16 and FP32 pre-aligned are ``bw_e / bits`` = 5/12, 8/9, 8/25.
  Values much smaller than the block's largest one lose their low bits and *underflow to 0*
  (a block exponent below the exponent range is clipped up, which only coarsens the step).
  A block whose exponent exceeds the range is refused with ``ValueError``, never clipped.

Both formats then hold ``q`` in ``bits``-bit two's complement and cut it into slices of the
given widths, most significant first; the first slice is the sign slice (width 1), which weighs
``-2**(bits-1)``. The differential-pair mapping cuts ``|q|`` instead (sign-magnitude) and carries
the sign on the slice values.

An all-zero block gets ``q = 0`` and, in INT, scale 0 (max |v| / q_max), so the device errors of
its cells (which do read some current) are not scaled up into the result; never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import TileShape, resolve_device

QUANT_GRAN_MODES = ("per-matrix", "per-row", "per-col")
MAX_TOTAL_BITS = 53  # beyond this an integer is no longer exact in float64


def parse_slice_method(slice_method, name="slice_method") -> tuple[int, ...]:
    """Validate slice widths (most significant first, the first being the 1-bit sign slice)."""
    if isinstance(slice_method, torch.Tensor):
        slice_method = slice_method.tolist()
    if isinstance(slice_method, (str, bytes)) or not isinstance(slice_method, Sequence):
        raise TypeError(f"{name} must be a sequence of slice widths such as [1, 1, 2, 4]")
    widths = []
    for w in slice_method:
        if isinstance(w, bool) or not float(w).is_integer():
            raise TypeError(f"{name} widths must be integers, got {list(slice_method)!r}")
        widths.append(int(w))
    if not widths:
        raise ValueError(f"{name} must not be empty")
    if any(w <= 0 for w in widths):
        raise ValueError(f"{name} widths must be positive integers, got {widths}")
    if widths[0] != 1:
        raise ValueError(f"{name}[0] is the sign slice and must be 1, got {widths}")
    if sum(widths) > MAX_TOTAL_BITS:
        raise ValueError(f"{name} must total at most {MAX_TOTAL_BITS} bits, got {sum(widths)}")
    return tuple(widths)


def slice_weights(widths: Sequence[int], signed_magnitude: bool = False) -> list[float]:
    """Digital weight of each slice in the shift-add: ``2**shift``, the sign slice negative.

    With ``signed_magnitude`` (differential pair) the sign is carried by the slice values, so the
    sign slice weighs 0 and the others weigh ``+2**shift``.
    """
    bits = sum(widths)
    shifts = [bits - sum(widths[: i + 1]) for i in range(len(widths))]
    weights = [float(2**s) for s in shifts]
    weights[0] = 0.0 if signed_magnitude else -float(2 ** (bits - 1))
    return weights


def block_shape(quant_gran, shape: tuple[int, int], tile: TileShape, transpose: bool):
    """Resolve ``quant_gran`` into a block ``(rows, cols)`` of the 2-D matrix ``shape``.

    ``None`` (default) is one block per array tile; a tuple is given, like ``paral_size``, in
    array orientation (contraction axis first) and is transposed when ``transpose`` is set;
    strings name rows and columns of the data as passed.
    """
    n_rows, n_cols = shape
    if quant_gran is None:
        block = (tile.rows, tile.cols)
    elif isinstance(quant_gran, str):
        if quant_gran not in QUANT_GRAN_MODES:
            raise ValueError(
                f"quant_gran must be one of {QUANT_GRAN_MODES}, a (rows, cols) block or None, "
                f"got {quant_gran!r}"
            )
        return {
            "per-matrix": (max(n_rows, 1), max(n_cols, 1)),
            "per-row": (1, max(n_cols, 1)),
            "per-col": (max(n_rows, 1), 1),
        }[quant_gran]
    else:
        try:
            block = TileShape.parse(quant_gran)
        except (TypeError, ValueError):
            raise ValueError(
                f"quant_gran must be one of {QUANT_GRAN_MODES}, a pair (rows, cols) of positive "
                f"integers or None, got {quant_gran!r}"
            ) from None
        block = (block.rows, block.cols)
    return (block[1], block[0]) if transpose else block


def _blocks(values: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """A 2-D tensor as a (ceil(R / br), br, ceil(C / bc), bc) view of its blocks (zero-padded;
    a copy only when padding is needed)."""
    rows, cols = values.shape
    br, bc = min(block[0], max(rows, 1)), min(block[1], max(cols, 1))
    nbr, nbc = -(-rows // br), -(-cols // bc)
    if (nbr * br, nbc * bc) != (rows, cols):
        values = torch.nn.functional.pad(values, (0, nbc * bc - cols, 0, nbr * br - rows))
    return values.reshape(nbr, br, nbc, bc)


def _expand_blocks(per_block: torch.Tensor, block: tuple[int, int], shape) -> torch.Tensor:
    rows, cols = shape
    br, bc = min(block[0], max(rows, 1)), min(block[1], max(cols, 1))
    return per_block.repeat_interleave(br, 0)[:rows].repeat_interleave(bc, 1)[:, :cols]


def integer_dtype(bits: int) -> torch.dtype:
    """The integer dtype that holds ``bits``-bit two's complement with room to spare."""
    return torch.int32 if bits <= 30 else torch.int64


def quantize(values: torch.Tensor, bits: int, bw_e: int | None, block: tuple[int, int]):
    """Quantize a 2-D tensor in blocks to ``bits``-bit signed integers.

    Args:
        values: (R, C) finite real tensor.
        bits: total bits including the sign (``sum(slice_method)``).
        bw_e: exponent bits for block floating point, or ``None`` for INT.
        block: (rows, cols) of one quantization block.

    Returns:
        ``(q, block_step)``: ``q`` an integer tensor (R, C) (:func:`integer_dtype`) with
        ``|q| <= 2**(bits-1) - 1`` and ``block_step`` a float64 tensor
        (ceil(R/rows), ceil(C/cols)), so that the quantized value of element (r, c) is
        ``q[r, c] * block_step[r // rows, c // cols]``.
    """
    q_max = 2 ** (bits - 1) - 1
    # float32 data is exact in float32 while q fits its 24-bit mantissa; otherwise float64
    work = torch.float32 if values.dtype in (torch.float32, torch.float16, torch.bfloat16) \
        and bits <= 24 else torch.float64
    blocks = _blocks(values.to(work), block)
    peak = blocks.abs().amax(dim=(1, 3)).double()
    if not bool(torch.isfinite(peak).all()):  # a block's peak is NaN or Inf if any element is
        raise ValueError("data contains NaN or Inf")
    if bw_e is None:
        # an all-zero block gets scale 0: whatever its cells read, it adds nothing
        block_step = peak / max(q_max, 1)
    else:
        e_min, e_max = -(2 ** (bw_e - 1)), 2 ** (bw_e - 1) - 1
        exponent = torch.floor(torch.log2(peak.clamp_min(torch.finfo(torch.float64).tiny)))
        if bool((exponent > e_max).any()):
            raise ValueError(
                f"data reaches {float(peak.max()):.6g} = 2**{int(exponent.max())}, beyond the "
                f"{bw_e}-bit exponent range [-{2 ** (bw_e - 1)}, {e_max}]: use a larger bw_e"
            )
        exponent = exponent.clamp(min=e_min)
        block_step = torch.exp2(exponent - (bits - 2))
    # zero blocks divide by 1 (q = 0); steps are powers of two (FP) or max / q_max (INT)
    divisor = torch.where(block_step > 0, block_step, torch.ones_like(block_step))
    if work == torch.float32 and not bool(
        (divisor >= torch.finfo(torch.float32).tiny).all()
        & (divisor <= torch.finfo(torch.float32).max).all()
    ):  # an FP step beyond float32's range (tiny block exponents)
        blocks = blocks.double()
    scaled = blocks / divisor.to(blocks.dtype)[:, None, :, None]
    # Rounding the block's largest mantissa (just under 2 * 2**e) may reach 2**(bits-1): saturate.
    nbr, br, nbc, bc = scaled.shape  # explicit sizes: -1 is ambiguous for empty data
    q = scaled.round_().clamp_(-q_max, q_max).reshape(nbr * br, nbc * bc)
    return q[: values.shape[0], : values.shape[1]].to(integer_dtype(bits)), block_step


def bit_slices(q: torch.Tensor, widths: Sequence[int], signed_magnitude: bool = False):
    """Cut integers into bit slices, most significant first.

    Args:
        q: integer tensor of any shape with ``|q| <= 2**(bits-1) - 1``, ``bits = sum(widths)``.
        widths: slice widths, the first being the 1-bit sign slice.
        signed_magnitude: cut ``|q|`` and give each slice the sign of ``q`` (differential pair;
            the sign slice is then all zero) instead of cutting the two's complement.

    Returns:
        tensor ``(len(widths), *q.shape)`` of ``q``'s dtype. Two's complement slices lie in
        ``[0, 2**w - 1]``; signed-magnitude slices in ``[-(2**w - 1), 2**w - 1]``.
        ``sum(slices[i] * slice_weights(widths, signed_magnitude)[i]) == q``.
    """
    bits = sum(widths)
    shifts = torch.tensor(
        [bits - sum(widths[: i + 1]) for i in range(len(widths))], device=q.device, dtype=q.dtype
    )
    masks = torch.tensor([2**w - 1 for w in widths], device=q.device, dtype=q.dtype)
    view = (-1,) + (1,) * q.dim()
    if signed_magnitude:
        slices = (q.abs().unsqueeze(0) >> shifts.view(view)) & masks.view(view)
        return slices * torch.sign(q).unsqueeze(0)
    unsigned = torch.remainder(q, 2**bits)  # two's complement as an unsigned integer
    return (unsigned.unsqueeze(0) >> shifts.view(view)) & masks.view(view)


class SlicedData:
    """An operand of a simulated product, quantized in blocks and ready to be bit-sliced.

    Args:
        slice_method: slice widths, most significant first, e.g. ``[1, 1, 2, 4]`` (a 1-D tensor,
            as in the original mPimPy, or any sequence). The first is the sign slice and must be 1.
        bw_e: exponent bits of block floating point; ``None`` for INT.
        is_weight: the operand will be programmed into arrays; its slice widths are then checked
            against the engine's ``g_level`` when it is sliced (they are checked again when
            programmed either way).
        paral_size: array size ``(rows, cols)``: a product programs its right operand into arrays
            of this size (rows along the contraction axis). Default (64, 64).
        quant_gran: quantization block: ``"per-matrix"``, ``"per-row"``, ``"per-col"`` (rows and
            columns of the data as passed), a block ``(rows, cols)`` in array orientation, or
            ``None`` for one block per array tile. Blocks must span whole arrays along the
            contraction axis (a multiple of ``paral_size[0]`` elements, or all of it), because an
            array adds up all its rows in one read; the engine checks this.
        device: torch device of the sliced data; default CPU.

    After :meth:`slice_data_imp`, ``quantized_data`` holds the quantized values (float64, the
    data's shape) and ``q``/``block_step`` the integers and scales behind them.

    The simulation is not differentiable: the data is detached when sliced, so a product of
    tensors that require grad has no gradient (rather than a wrong one, through the block
    scales). :func:`mpimpy.dot` and the :mod:`mpimpy.nn` layers give the straight-through
    gradient of the ideal product.
    """

    def __init__(self, slice_method, bw_e=None, is_weight=False, paral_size=(64, 64),
                 quant_gran=None, device=None, input_en=False):
        self.slice_method = parse_slice_method(slice_method)
        if bw_e is not None:
            if isinstance(bw_e, bool) or not float(bw_e).is_integer() or not 2 <= bw_e <= 11:
                raise ValueError(f"bw_e must be None (INT) or an integer in [2, 11], got {bw_e!r}")
            bw_e = int(bw_e)
        self.bw_e = bw_e
        self.is_weight = bool(is_weight)
        self.paral_size = TileShape.parse(paral_size)
        self.quant_gran = quant_gran
        block_shape(quant_gran, (1, 1), self.paral_size, False)  # validate now, not at slicing
        self.device = resolve_device(device)
        self.input_en = input_en  # accepted for compatibility with the original API; unused
        self.data = None
        self._programmed = None  # (engine token, programmed arrays), set by the engine

    @property
    def bits(self) -> int:
        return sum(self.slice_method)

    @property
    def format(self) -> str:
        return "INT" if self.bw_e is None else "FP"

    @property
    def shape(self):
        return None if self.data is None else tuple(self.data.shape)

    def slice_data_imp(self, engine, data, transpose=False):
        """Quantize ``data`` for use in ``engine``; returns ``self``.

        Args:
            engine: the :class:`~mpimpy.engine.DPETensor` that will use this operand (its device
                settings validate the slice widths of weights).
            data: tensor or array. A left operand (``x`` in ``x @ W``) may have any number of
                leading batch dims, ``(..., M, K)`` or ``(K,)``; a right operand is ``(K, N)``
                or ``(K,)``.
            transpose: declares the operand a left (input) operand, as in the original mPimPy:
                ``paral_size`` and a tuple ``quant_gran`` are given in array orientation
                (contraction axis first) and are applied transposed, so that blocks run along
                the last axis. It does not transpose the data.
        """
        data = torch.as_tensor(data).detach()  # not differentiable: see the class docstring
        if resolve_device(data.device) != self.device:
            data = data.to(self.device)
        if not (data.is_floating_point() or data.dtype in (torch.int8, torch.int16, torch.int32,
                                                             torch.int64, torch.uint8, torch.bool)):
            raise TypeError(f"data must be real numbers, got dtype {data.dtype}")
        if data.dim() == 0:
            raise ValueError("data must have at least one dimension, got a scalar")
        if self.is_weight:
            engine.check_weight_widths(self.slice_method, "slice_method")
        transpose = bool(transpose)
        matrix = self._as_matrix(data, transpose)
        block = block_shape(self.quant_gran, tuple(matrix.shape), self.paral_size, transpose)
        q, block_step = quantize(matrix, self.bits, self.bw_e, block)  # checks finiteness too
        self.data, self.transpose, self.block = data, transpose, block
        self.q, self.block_step = q, block_step
        self._programmed = None
        return self

    @staticmethod
    def _as_matrix(data, transpose):
        """Data as a 2-D matrix: leading batch dims are folded into rows; 1-D data becomes one
        row when transposed (a left operand) and one column otherwise."""
        # explicit sizes, so that empty data (0 rows, K = 0) keeps its shape
        if data.dim() == 1:
            return data.view(1, data.shape[0]) if transpose else data.view(data.shape[0], 1)
        return data.reshape(data.shape[:-1].numel(), data.shape[-1])

    def role_matrix(self, role: str, rows: int):
        """The sliced operand as the engine uses it.

        Args:
            role: ``"input"`` for the left operand of ``x @ W`` (contraction along the data's
                last axis) or ``"weight"`` for the right one (contraction along its first axis).
            rows: the arrays' row count: K is read in row-blocks of this many elements.

        Returns:
            ``(q, tile_scale, k_block)``: the integers, ``(M, K)`` for an input or
            ``(K, N)`` for a weight; the float64 scale of each row-block, ``(M, Tk)`` or
            ``(Tk, N)``, read at the row-block's first element (blocks must span whole
            row-blocks, which the engine checks with ``k_block``); and the block length
            along K.
        """
        self._require_sliced()
        q, block_step, block = self.q, self.block_step, list(self.block)
        # the matrix axis that holds the contraction dimension K
        if self.data.dim() == 1:
            k_axis = 1 if self.transpose else 0
        else:
            k_axis = 1 if role == "input" else 0
        if k_axis != (1 if role == "input" else 0):
            q, block_step, block = q.t(), block_step.t(), block[::-1]
        k_axis = 1 if role == "input" else 0
        k = q.shape[k_axis]
        block = [min(b, max(n, 1)) for b, n in zip(block, q.shape, strict=True)]
        device = block_step.device
        # block index of every row-block (along K) and of every element of the other axis
        k_index = torch.arange(0, k, rows, device=device) // block[k_axis]
        other_axis = 1 - k_axis
        other_index = torch.arange(q.shape[other_axis], device=device) // block[other_axis]
        tile_scale = block_step.index_select(k_axis, k_index).index_select(other_axis,
                                                                           other_index)
        return q, tile_scale, min(block[k_axis], k)

    def _require_sliced(self):
        if self.data is None:
            raise RuntimeError("call slice_data_imp(engine, data) first")

    def step(self) -> torch.Tensor:
        """Per-element scale (float64, the 2-D matrix's shape)."""
        self._require_sliced()
        return _expand_blocks(self.block_step, self.block, self.q.shape)

    @property
    def quantized_data(self) -> torch.Tensor:
        """The quantized values, float64, the shape of the data that was sliced."""
        self._require_sliced()
        return (self.q.to(torch.float64) * self.step()).reshape(self.data.shape)

    @property
    def sliced_data(self) -> torch.Tensor:
        """Two's complement bit slices, integers ``(n_slices, *data.shape)``."""
        self._require_sliced()
        return bit_slices(self.q, self.slice_method).reshape(-1, *self.data.shape)

    def __repr__(self):
        state = f"shape={self.shape}" if self.data is not None else "not sliced"
        bw = "" if self.bw_e is None else f", bw_e={self.bw_e}"
        return f"SlicedData({list(self.slice_method)}{bw}, {state})"

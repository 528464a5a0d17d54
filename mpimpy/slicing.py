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

Both formats then cut ``q`` into slices of the given widths, most significant first, in one of
three encodings (:data:`ENCODINGS`): two's complement (the offset mapping's weights, and
inputs), whose first slice is the 1-bit sign slice weighing ``-2**(bits-1)``; sign-magnitude
(the differential pair's weights), which cuts ``|q|`` and carries the sign on the slice
values; and offset binary (the bias mapping's weights, as ISAAC stores them), which cuts the
unsigned ``q + 2**(bits-1)`` and has no sign slice.

An all-zero block gets ``q = 0`` and, in INT, scale 0 (max |v| / q_max), so the device errors of
its cells (which do read some current) are not scaled up into the result; never NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from .config import TileShape, resolve_device
from .validation import check_real

#: Named quantization blocks (see :func:`block_shape`).
QUANT_GRAN_MODES = ("per-matrix", "per-row", "per-col", "per-vector", "batch-oracle")
MAX_TOTAL_BITS = 53  # beyond this an integer is no longer exact in float64


def parse_slice_method(slice_method, name="slice_method", sign_slice: bool = True
                       ) -> tuple[int, ...]:
    """Validate slice widths, most significant first.

    ``sign_slice``: the slices are two's complement or sign-magnitude, whose first slice is the
    1-bit sign slice (a wider first slice would hold the sign bit together with value bits,
    which no single shift-add weight can undo). Offset-binary slices (``mapping="bias"``
    weights) have no sign slice and any first width.
    """
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
    if sum(widths) > MAX_TOTAL_BITS:
        raise ValueError(f"{name} must total at most {MAX_TOTAL_BITS} bits, got {sum(widths)}")
    if sign_slice:
        check_sign_slice(widths, name)
    return tuple(widths)


def check_sign_slice(widths: Sequence[int], name="slice_method") -> None:
    """Two's complement and sign-magnitude slices start with the 1-bit sign slice."""
    if widths[0] != 1:
        raise ValueError(f"{name}[0] is the sign slice and must be 1, got {list(widths)} "
                         f"(only mapping='bias' weights, stored offset-binary, have no sign "
                         f"slice)")


#: How a ``bits``-bit signed integer ``q`` (``|q| <= 2**(bits-1) - 1``) is cut into slices.
#: ``"twos_complement"``: the slices of ``q mod 2**bits``; the 1-bit sign slice weighs
#: ``-2**(bits-1)``. ``"sign_magnitude"``: the slices of ``|q|``, each carrying the sign of
#: ``q``; the sign slice is all zero and weighs 0. ``"offset_binary"``: the slices of the
#: unsigned ``q + 2**(bits-1)`` (the bias is removed after the shift-add), all weights positive.
ENCODINGS = ("twos_complement", "sign_magnitude", "offset_binary")


def encoding_bias(widths: Sequence[int], encoding: str) -> int:
    """What the slices' shift-add holds beyond ``q``: ``2**(bits-1)`` for offset binary, else 0."""
    return 2 ** (sum(widths) - 1) if encoding == "offset_binary" else 0


def slice_weights(widths: Sequence[int], encoding: str = "twos_complement") -> list[float]:
    """Digital weight of each slice in the shift-add: ``2**shift`` (see :data:`ENCODINGS`).

    Two's complement: the sign slice weighs ``-2**(bits-1)``. Sign-magnitude: the sign is
    carried by the slice values, so the sign slice weighs 0. Offset binary: every slice weighs
    ``+2**shift`` and the sum is ``q + 2**(bits-1)``.
    """
    _check_encoding(encoding)
    bits = sum(widths)
    shifts = [bits - sum(widths[: i + 1]) for i in range(len(widths))]
    weights = [float(2**s) for s in shifts]
    if encoding == "twos_complement":
        weights[0] = -float(2 ** (bits - 1))
    elif encoding == "sign_magnitude":
        weights[0] = 0.0
    return weights


def _check_encoding(encoding):
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


def block_shape(quant_gran, shape: tuple[int, int], tile: TileShape, transpose: bool):
    """Resolve ``quant_gran`` into a block ``(rows, cols)`` of the 2-D matrix ``shape``.

    ``None`` (default) is one block per array tile; a tuple is given, like ``paral_size``, in
    array orientation (contraction axis first) and is transposed when ``transpose`` is set;
    ``"per-matrix"``, ``"per-row"`` and ``"per-col"`` name rows and columns of the data as
    passed. ``"per-vector"``: one block per vector and array row-block, ``(rows, 1)`` in array
    orientation: each input vector scaled by its own maximum on each array, as a chip's digital
    max-finder does (aihwkit's noise management), so no vector's scale depends on its batch.
    ``"batch-oracle"``: one block per array tile spanning ``cols`` input vectors (the default
    of the original mPimPy): one loud vector sets the scale of its batch, which no chip does.
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
        named = {
            "per-matrix": (max(n_rows, 1), max(n_cols, 1)),
            "per-row": (1, max(n_cols, 1)),
            "per-col": (max(n_rows, 1), 1),
        }
        if quant_gran in named:
            return named[quant_gran]
        block = (tile.rows, 1) if quant_gran == "per-vector" else (tile.rows, tile.cols)
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


def whole_arrays(block: tuple[int, int], k_axis: int, shape: tuple[int, int], rows: int,
                 quant_gran=None) -> tuple[int, int]:
    """A quantization block that spans whole arrays along the contraction axis.

    An array sums all its rows in one read, so a block along K must be a multiple of the
    array's ``rows`` or all of K. A shorter block (``quant_gran=(1, 64)`` or ``"per-row"`` for
    weights) is rounded up to whole arrays with a ``UserWarning``, as the original mPimPy rounds
    every block up to whole arrays (there ``"per-row"`` weights mean 64-row bands).
    """
    length, total = block[k_axis], shape[k_axis]
    if length >= total or length % rows == 0:
        return block
    rounded = list(block)
    rounded[k_axis] = min(-(-length // rows) * rows, max(total, 1))
    warnings.warn(
        f"quant_gran={quant_gran!r}: blocks of {length} elements along the contraction axis do "
        f"not span whole arrays ({rows} rows, summed in one read); rounded up to "
        f"{rounded[k_axis]}, as the original mPimPy does", UserWarning, stacklevel=3)
    return tuple(rounded)


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


def quantize(values: torch.Tensor, bits: int, bw_e: int | None, block: tuple[int, int],
             static_range: float | None = None):
    """Quantize a 2-D tensor in blocks to ``bits``-bit signed integers.

    Args:
        values: (R, C) finite real tensor.
        bits: total bits including the sign (``sum(slice_method)``).
        bw_e: exponent bits for block floating point, or ``None`` for INT.
        block: (rows, cols) of one quantization block.
        static_range: every block's scale set for this peak ``|value|`` instead of its own
            (a range fixed before the data was seen); larger values saturate.

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
    if static_range is not None:
        peak = torch.full_like(peak, static_range)
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


def bit_slices(q: torch.Tensor, widths: Sequence[int], encoding: str = "twos_complement"):
    """Cut integers into bit slices, most significant first.

    Args:
        q: integer tensor of any shape with ``|q| <= 2**(bits-1) - 1``, ``bits = sum(widths)``.
        widths: slice widths (two's complement and sign-magnitude: the first is the 1-bit sign
            slice).
        encoding: one of :data:`ENCODINGS`.

    Returns:
        tensor ``(len(widths), *q.shape)`` of ``q``'s dtype. Two's complement and offset-binary
        slices lie in ``[0, 2**w - 1]``; sign-magnitude slices in ``[-(2**w - 1), 2**w - 1]``.
        ``sum(slices[i] * slice_weights(widths, encoding)[i]) == q + encoding_bias(widths,
        encoding)``.
    """
    _check_encoding(encoding)
    bits = sum(widths)
    shifts = torch.tensor(
        [bits - sum(widths[: i + 1]) for i in range(len(widths))], device=q.device, dtype=q.dtype
    )
    masks = torch.tensor([2**w - 1 for w in widths], device=q.device, dtype=q.dtype)
    view = (-1,) + (1,) * q.dim()
    if encoding == "sign_magnitude":
        slices = (q.abs().unsqueeze(0) >> shifts.view(view)) & masks.view(view)
        return slices * torch.sign(q).unsqueeze(0)
    if encoding == "offset_binary":
        unsigned = q + 2 ** (bits - 1)
    else:
        unsigned = torch.remainder(q, 2**bits)  # two's complement as an unsigned integer
    return (unsigned.unsqueeze(0) >> shifts.view(view)) & masks.view(view)


def dot_high_dim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Every slice pair's product, tile by tile, of two operands in the tiled layout of
    :attr:`SlicedData.sliced_data` (the original mPimPy's ``dot_high_dim``).

    Args:
        x: ``(Tr, Tk, n_x, m, k)`` or ``(batch, Tr, Tk, n_x, m, k)``: the left operand's slices.
        y: ``(Tk, Tc, n_w, k, p)``: the right operand's slices.

    Returns:
        ``(Tr, Tk, Tc, n_x, n_w, m, p)`` (``batch`` first for a batched ``x``): for every
        row-block of ``x``, every contraction tile and column tile, every pair of slices, the
        exact integer product of the two tiles. Summed over the contraction tiles and
        shift-added it is the product of the two integer matrices.
    """
    if y.dim() != 5:
        raise ValueError(f"y must be (Tk, Tc, n_w, k, p), got shape {tuple(y.shape)}")
    if x.dim() == 5:
        return torch.einsum("nmijk,mpskl->nmpisjl", x, y)
    if x.dim() == 6:
        return torch.einsum("bnmijk,mpskl->bnmpisjl", x, y)
    raise ValueError(f"x must be (Tr, Tk, n_x, m, k) or (batch, Tr, Tk, n_x, m, k), got shape "
                     f"{tuple(x.shape)}")


def check_operand(operand, name: str, device: torch.device) -> None:
    """``operand`` must be a :class:`SlicedData`, sliced, on ``device`` (an engine's)."""
    if not isinstance(operand, SlicedData):
        raise TypeError(f"{name} must be a SlicedData, got {type(operand).__name__}")
    if operand.data is None:
        raise ValueError(f"{name} has not been sliced: call {name}.slice_data_imp(engine, "
                         f"data) first")
    if resolve_device(operand.data.device) != device:
        raise ValueError(f"{name} is on {operand.data.device} but the engine runs on "
                         f"{device}; pass device= to both")


def product_shape(x: SlicedData, mat: SlicedData) -> tuple[tuple[int, ...], torch.dtype]:
    """The shape and dtype of ``x @ mat``: ``(..., M, N)`` without the dims that were 1-D, in
    ``x.data``'s floating dtype (float64 for integer data)."""
    n = mat.data.shape[-1] if mat.data.dim() == 2 else None
    out_shape = x.data.shape[:-1] + ((n,) if n is not None else ())
    if x.data.dim() == 1 and not x.transpose:
        out_shape = (n,) if n is not None else ()
    return out_shape, x.data.dtype if x.data.is_floating_point() else torch.float64


class SlicedData:
    """An operand of a simulated product, quantized in blocks and ready to be bit-sliced.

    Args:
        slice_method: slice widths, most significant first, e.g. ``[1, 1, 2, 4]`` (a 1-D tensor,
            as in the original mPimPy, or any sequence). For two's complement and sign-magnitude
            operands (inputs, and the weights of the offset and differential-pair mappings) the
            first is the sign slice and must be 1; the bias mapping stores weights offset-binary,
            where the widths are those of the unsigned biased integer (e.g. ``[2] * 8``). The
            rule is checked when the operand is sliced for an engine, which knows the mapping.
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
        input_en: accepted for compatibility with the original API; unused.
        static_range: a fixed range (> 0, the data's units): every block is scaled for a peak
            of this ``|value|`` whatever the data holds (a DAC range calibrated once and
            frozen); larger values saturate at the full scale, and ``clipped_fraction`` says
            which fraction of the elements did. ``None``: each block scaled by its own peak.

    After :meth:`slice_data_imp`, ``quantized_data`` holds the quantized values (float64, the
    data's shape) and ``q``/``block_step`` the integers and scales behind them.

    The simulation is not differentiable: the data is detached when sliced, so a product of
    tensors that require grad has no gradient (rather than a wrong one, through the block
    scales). :func:`mpimpy.dot` and the :mod:`mpimpy.nn` layers give the straight-through
    gradient of the ideal product.
    """

    def __init__(self, slice_method, bw_e=None, is_weight=False, paral_size=(64, 64),
                 quant_gran=None, device=None, input_en=False, static_range=None):
        # the sign-slice rule depends on how the operand is encoded, which the engine knows:
        # it is checked when the operand is sliced for an engine
        self.slice_method = parse_slice_method(slice_method, sign_slice=False)
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
        if static_range is not None:
            check_real("static_range", static_range, low=0.0, low_open=True)
            static_range = float(static_range)
        self.static_range = static_range
        #: the fraction of the elements beyond ``static_range`` (saturated) in the last slicing
        self.clipped_fraction = 0.0
        self.data = None

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
        transpose = bool(transpose)
        if self.is_weight:
            engine.check_weight_widths(self.slice_method, "slice_method")
        elif transpose:
            engine.check_input_widths(self.slice_method, "slice_method")
        matrix = self._as_matrix(data, transpose)
        block = block_shape(self.quant_gran, tuple(matrix.shape), self.paral_size, transpose)
        # the contraction axis of the matrix, where the role is known
        k_axis = 0 if self.is_weight else (1 if transpose else None)
        if k_axis is not None:
            block = whole_arrays(block, k_axis, tuple(matrix.shape), self.paral_size.rows,
                                 self.quant_gran)
        # (checks finiteness too)
        q, block_step = quantize(matrix, self.bits, self.bw_e, block, self.static_range)
        if self.static_range is not None:
            self.clipped_fraction = float((matrix.abs() > self.static_range).sum()) / max(
                matrix.numel(), 1)
        self.data, self.transpose, self.block = data, transpose, block
        self.q, self.block_step = q, block_step
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
    def slices(self) -> torch.Tensor:
        """Two's complement bit slices of the integers, ``(n_slices, *data.shape)``."""
        self._require_sliced()
        return bit_slices(self.q, self.slice_method).reshape(-1, *self.data.shape)

    # -- what code written for the original mPimPy reads ------------------------------------
    def _tile(self) -> TileShape:
        """``paral_size`` in the orientation of the data (transposed for an input)."""
        tile = self.paral_size
        return TileShape(tile.cols, tile.rows) if self.transpose else tile

    @property
    def sliced_data(self) -> torch.Tensor:
        """Two's complement bit slices in the original's tiled layout,
        ``(Tr, Tc, n_slices, tile_rows, tile_cols)``: the 2-D data (leading batch dims folded
        into rows) cut into ``paral_size`` tiles (transposed for an input), zero-padded.
        :attr:`slices` has them in the data's own shape."""
        self._require_sliced()
        tile = self._tile()
        slices = bit_slices(self.q, self.slice_method)  # (n, R, C)
        n, rows, cols = slices.shape
        tr, tc = -(-rows // tile.rows), -(-cols // tile.cols)
        padded = torch.nn.functional.pad(slices, (0, tc * tile.cols - cols,
                                                  0, tr * tile.rows - rows))
        return padded.view(n, tr, tile.rows, tc, tile.cols).permute(1, 3, 0, 2, 4)

    @property
    def max_data(self) -> torch.Tensor:
        """The largest ``|value|`` of the quantization block holding each tile, float64
        ``(Tr, Tc, 1, 1)`` in the tiled layout of :attr:`sliced_data` (the original's
        ``max_data``; its quantization blocks always hold whole tiles)."""
        self._require_sliced()
        matrix = self._as_matrix(self.data, self.transpose)
        peaks = _blocks(matrix.abs().double(), self.block).amax(dim=(1, 3))
        per_element = _expand_blocks(peaks, self.block, tuple(matrix.shape))
        tile = self._tile()
        return per_element[::tile.rows, ::tile.cols].unsqueeze(-1).unsqueeze(-1).contiguous()

    def size(self) -> torch.Size:
        """The shape of the sliced data (the original's ``size()``)."""
        self._require_sliced()
        return self.data.size()

    def __len__(self) -> int:
        """The number of slices (as in the original)."""
        return len(self.slice_method)

    def t(self) -> SlicedData:
        """The transposed operand: the same integers and scales, transposed (2-D data; 1-D data
        is its own transpose). The copy is not programmed. Its quantization blocks are the
        transposed ones: if they do not span whole arrays along the new contraction axis, the
        engine refuses it."""
        self._require_sliced()
        if self.data.dim() > 2:
            raise ValueError(f"t() needs 1-D or 2-D data, got shape {tuple(self.data.shape)}")
        copy = SlicedData.__new__(SlicedData)
        copy.__dict__.update(self.__dict__)
        if self.data.dim() == 2:
            copy.data, copy.q = self.data.t(), self.q.t()
            copy.block_step, copy.block = self.block_step.t(), tuple(self.block[::-1])
        return copy

    def __repr__(self):
        state = f"shape={self.shape}" if self.data is not None else "not sliced"
        bw = "" if self.bw_e is None else f", bw_e={self.bw_e}"
        return f"SlicedData({list(self.slice_method)}{bw}, {state})"

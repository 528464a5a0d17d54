"""``mpimpy.dot``: a drop-in for ``np.dot`` / ``torch.matmul`` that runs on simulated crossbars."""

from __future__ import annotations

import numpy as np
import torch

from .calibration import FROZEN_ADC_RANGES
from .config import CrossbarConfig
from .engine import DPETensor
from .slicing import SlicedData, parse_slice_method

#: The chip ``mpimpy.dot`` simulates unless told otherwise: a realistic one that a user replacing
#: ``np.dot`` can trust for a first answer: the hardware settings it sets over the defaults
#: of :class:`~mpimpy.config.CrossbarConfig`, checked there (:class:`~mpimpy.engine.DPETensor`
#: keeps the original mPimPy's defaults, for code written for it).
DOT_DEFAULTS = CrossbarConfig.overrides(
    var=0.05,  # 5 % lognormal programming spread: RRAM after write-verify
    mapping="diffpair",  # signed weights on G+/G- pairs: no cancelling two's complement slices
    input_encoding="sign_magnitude",  # signed inputs as +-V: no sign slice to read
    adc_range="calibrated",  # every ADC trimmed once, on calibration data (DOT_CALIBRATION)
    radc=2**8,  # 8-bit ADCs
    rdac=2**4,  # 4-bit DACs
    vnoise=0.0,  # no DAC voltage noise
)


#: What ``mpimpy.dot``'s chip is calibrated on (a frozen ``adc_range``): this many standard
#: normal vectors of ``a``'s length, drawn from the engine's seed and sliced as ``a`` is
#: (scaled per vector by default). Never ``a`` itself, so that no row of ``a`` changes the
#: answer for another.
DOT_CALIBRATION_VECTORS = 64


def calibration_inputs(engine: DPETensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """``mpimpy.dot``'s calibration set: :data:`DOT_CALIBRATION_VECTORS` standard normal
    vectors ``(V, k)``, the same for the same engine seed, on the engine's device."""
    generator = torch.Generator().manual_seed(engine.seed)
    return torch.randn(DOT_CALIBRATION_VECTORS, k, generator=generator, dtype=torch.float64
                       ).to(device=engine.device, dtype=dtype)


class _StraightThrough(torch.autograd.Function):
    """The simulated product forward, the ideal product's gradient backward (straight-through,
    as in :class:`mpimpy.nn.MemMatmul`): rounding, slicing and the devices have no useful
    gradient of their own."""

    @staticmethod
    def forward(ctx, simulated, a, b):
        ctx.save_for_backward(a, b)
        return simulated

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        with torch.enable_grad():
            a_, b_ = (t.detach().requires_grad_(n) for t, n in zip((a, b), needs, strict=True))
            wrt = [t for t, n in zip((a_, b_), needs, strict=True) if n]
            grads = iter(torch.autograd.grad(torch.matmul(a_, b_), wrt, grad))
        return None, *(next(grads) if n else None for n in needs)


def dot(a, b, engine: DPETensor | None = None, xblk=(1, 1, 2, 4), mblk=(1, 1, 2, 4),
        bw_e: int | None = None, paral_size=(64, 64), quant_gran=None,
        x_quant_gran="per-vector", device=None, **engine_kwargs):
    """Simulated ``np.dot(a, b)``: ``b`` is programmed into crossbars and ``a`` drives them.

    Every call programs ``b`` anew: device variation and stuck cells are drawn again, so with
    ``seed=None`` two identical calls give different results (the same ``seed``, the same
    result). To program a matrix once and multiply many inputs by the same chip, use
    :class:`mpimpy.CrossbarMatmul`.

    Args:
        a: numpy array or torch tensor: a vector ``(K,)``, a matrix ``(M, K)`` or a batch
            ``(..., M, K)``.
        b: ``(K,)`` or ``(K, N)``.
        engine: the engine to use; by default one is made from :data:`DOT_DEFAULTS` updated
            with ``engine_kwargs`` (any :class:`~mpimpy.engine.DPETensor` setting): 5 %
            programming variation, differential pairs, sign-magnitude inputs, calibrated 8-bit
            ADCs, 4-bit DACs. The weights are programmed anew on every call (new variation
            unless ``seed`` is given) and, with a frozen ``adc_range`` ("calibrated"), their ADC
            ranges calibrated (minmax) on :func:`calibration_inputs`, never on ``a``: each row
            of ``a`` gets the answer it would get alone.
        xblk, mblk: slice widths of ``a`` and ``b``, most significant (sign) first.
        bw_e: exponent bits for block floating point on both operands; ``None`` for INT.
        paral_size: array size (rows, cols).
        quant_gran: quantization blocks of ``b`` (see :class:`~mpimpy.slicing.SlicedData`;
            default one block per array tile).
        x_quant_gran: quantization blocks of ``a``: default ``"per-vector"``, each row scaled
            by its own maximum on each array (a digital max-finder per vector);
            ``"batch-oracle"`` is the original's block across rows, an oracle no chip has.
        device: where the engine made here simulates (default: ``a``'s device for torch
            input, the CPU for numpy input).

    Returns:
        What ``np.dot`` returns for numpy input (``torch.matmul`` for torch input): the same
        shape and kind (empty operands give what ``torch.matmul`` gives); the dtype of the
        floating inputs, float64 for integer inputs. A torch result is on ``a``'s device.
        Inputs that require grad get the straight-through gradient, that of the ideal
        product ``a @ b``, as the :mod:`mpimpy.nn` layers do. Complex inputs raise
        ``TypeError``.
    """
    if engine is not None and (engine_kwargs or device is not None):
        settings = sorted(engine_kwargs) + (["device"] if device is not None else [])
        raise TypeError(f"pass either engine or engine settings, not both (got engine and "
                        f"{settings})")
    # the widths' own checks now, under dot's names; the sign-slice rule, which depends on the
    # encodings, once the engine is known
    xblk = parse_slice_method(xblk, "xblk", sign_slice=False)
    mblk = parse_slice_method(mblk, "mblk", sign_slice=False)
    for name, value in (("a", a), ("b", b)):
        if value.is_complex() if isinstance(value, torch.Tensor) else np.iscomplexobj(value):
            raise TypeError(f"{name} is complex: mpimpy.dot multiplies real numbers; simulate "
                            f"the real and imaginary parts as separate products")
    as_torch = isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)
    if as_torch:
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        dtype = torch.promote_types(ta.dtype, tb.dtype)
        if not dtype.is_floating_point:
            dtype = torch.float64
        home = ta.device  # where the result goes
    else:
        na, nb = np.asarray(a), np.asarray(b)
        np_dtype = np.result_type(na, nb)
        if not np.issubdtype(np_dtype, np.floating) or np_dtype == np.float16:
            np_dtype = np.dtype(np.float64) if np_dtype != np.float16 else np_dtype
        ta, tb = torch.from_numpy(na.astype(np_dtype, copy=False)), torch.from_numpy(
            nb.astype(np_dtype, copy=False))
        dtype, home = ta.dtype, torch.device("cpu")
    if ta.dim() == 0 or tb.dim() == 0:
        raise ValueError("dot needs arrays, not scalars: multiply scalars digitally")
    if tb.dim() > 2:
        raise ValueError(f"b must be 1-D or 2-D (it is programmed into arrays), got shape "
                         f"{tuple(tb.shape)}")
    if ta.shape[-1] != tb.shape[0]:
        raise ValueError(f"shapes {tuple(ta.shape)} and {tuple(tb.shape)} not aligned: "
                         f"{ta.shape[-1]} (last dim of a) != {tb.shape[0]} (first dim of b)")
    if engine is None:
        engine = DPETensor(device=home if device is None else device,
                           **{**DOT_DEFAULTS, **engine_kwargs})
    engine.check_input_widths(xblk, "xblk")
    engine.check_weight_widths(mblk, "mblk")
    ta, tb = ta.to(device=engine.device, dtype=dtype), tb.to(device=engine.device, dtype=dtype)

    def sliced(data):
        return SlicedData(xblk, bw_e=bw_e, paral_size=paral_size, quant_gran=x_quant_gran,
                          device=engine.device).slice_data_imp(engine, data, transpose=True)

    x = sliced(ta)
    mat = SlicedData(mblk, bw_e=bw_e, paral_size=paral_size, quant_gran=quant_gran,
                     device=engine.device, is_weight=True)
    mat.slice_data_imp(engine, tb)
    if engine.config.radc is not None and engine.config.adc_range in FROZEN_ADC_RANGES:
        engine.calibrate(sliced(calibration_inputs(engine, tb.shape[0], dtype)), mat)
    y = engine(x, mat)
    if ta.requires_grad or tb.requires_grad:
        y = _StraightThrough.apply(y, ta, tb)
    if as_torch:
        return y.to(home)
    result = y.cpu().numpy()
    return result[()] if result.ndim == 0 else result

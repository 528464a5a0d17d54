"""``mpimpy.dot``: a drop-in for ``np.dot`` / ``torch.matmul`` that runs on simulated crossbars."""

from __future__ import annotations

import numpy as np
import torch

from .engine import DPETensor
from .slicing import SlicedData, parse_slice_method

#: The chip ``mpimpy.dot`` simulates unless told otherwise: a realistic one that a user replacing
#: ``np.dot`` can trust for a first answer. (:class:`~mpimpy.engine.DPETensor` keeps the
#: original mPimPy's defaults, for code written for it.)
DOT_DEFAULTS = dict(
    var=0.05,  # 5 % lognormal programming spread: RRAM after write-verify
    mapping="diffpair",  # signed weights on G+/G- pairs: no cancelling two's complement slices
    input_encoding="sign_magnitude",  # signed inputs as +-V: no sign slice to read
    adc_range="calibrated",  # every ADC trimmed to the currents it converts
    radc=2**8,  # 8-bit ADCs
    rdac=2**4,  # 4-bit DACs
    vnoise=0.0,  # no DAC voltage noise
)


def dot(a, b, engine: DPETensor | None = None, xblk=(1, 1, 2, 4), mblk=(1, 1, 2, 4),
        bw_e: int | None = None, paral_size=(64, 64), quant_gran=None, **engine_kwargs):
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
            ADCs, 4-bit DACs, about 4.5 % relative error on standard normal data. The weights
            are programmed anew on every call (new variation unless ``seed`` is given).
        xblk, mblk: slice widths of ``a`` and ``b``, most significant (sign) first.
        bw_e: exponent bits for block floating point on both operands; ``None`` for INT.
        paral_size: array size (rows, cols).
        quant_gran: quantization blocks for both operands (see
            :class:`~mpimpy.slicing.SlicedData`).

    Returns:
        What ``np.dot`` returns for numpy input (``torch.matmul`` for torch input): the same
        shape and kind; the dtype of the floating inputs, float64 for integer inputs. A torch
        result is on ``a``'s device.
    """
    if engine is not None and engine_kwargs:
        raise TypeError(f"pass either engine or engine settings, not both (got engine and "
                        f"{sorted(engine_kwargs)})")
    xblk, mblk = parse_slice_method(xblk, "xblk"), parse_slice_method(mblk, "mblk")
    as_torch = isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)
    if as_torch:
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        dtype = torch.promote_types(ta.dtype, tb.dtype)
        if not dtype.is_floating_point:
            dtype = torch.float64
        device = ta.device
    else:
        na, nb = np.asarray(a), np.asarray(b)
        np_dtype = np.result_type(na, nb)
        if not np.issubdtype(np_dtype, np.floating) or np_dtype == np.float16:
            np_dtype = np.dtype(np.float64) if np_dtype != np.float16 else np_dtype
        ta, tb = torch.from_numpy(na.astype(np_dtype, copy=False)), torch.from_numpy(
            nb.astype(np_dtype, copy=False))
        dtype, device = ta.dtype, torch.device("cpu")
    if ta.dim() == 0 or tb.dim() == 0:
        raise ValueError("dot needs arrays, not scalars: multiply scalars digitally")
    if tb.dim() > 2:
        raise ValueError(f"b must be 1-D or 2-D (it is programmed into arrays), got shape "
                         f"{tuple(tb.shape)}")
    if ta.shape[-1] != tb.shape[0]:
        raise ValueError(f"shapes {tuple(ta.shape)} and {tuple(tb.shape)} not aligned: "
                         f"{ta.shape[-1]} (last dim of a) != {tb.shape[0]} (first dim of b)")
    if engine is None:
        engine = DPETensor(device=device, **{**DOT_DEFAULTS, **engine_kwargs})
    ta, tb = ta.to(device=engine.device, dtype=dtype), tb.to(device=engine.device, dtype=dtype)

    x = SlicedData(xblk, bw_e=bw_e, paral_size=paral_size, quant_gran=quant_gran,
                   device=engine.device)
    mat = SlicedData(mblk, bw_e=bw_e, paral_size=paral_size, quant_gran=quant_gran,
                     device=engine.device, is_weight=True)
    x.slice_data_imp(engine, ta, transpose=True)
    mat.slice_data_imp(engine, tb)
    y = engine(x, mat)
    if as_torch:
        return y.to(device)
    result = y.cpu().numpy()
    return result[()] if result.ndim == 0 else result

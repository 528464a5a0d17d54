"""Matrix products with a fixed right operand, ideal or on simulated crossbars.

Every application in :mod:`mpimpy.apps` is written against a *matmul*: a callable
``matmul(x) -> x @ W`` for one fixed operator ``W`` (the DCT matrix, a Laplacian, a transition
matrix). The algorithm does not care whether ``W`` sits in float64 memory or in memristor
crossbars; the caller decides by passing one of:

* :class:`IdealMatmul` (``x @ W`` in float64), the reference answer;
* :class:`CrossbarMatmul`: ``W`` is quantized, sliced and **programmed once** into the arrays of
  one :class:`mpimpy.DPETensor` (variation and stuck cells drawn then and kept); every call only
  drives the inputs through the DACs and reads the arrays, as a chip running an iterative
  algorithm would. ``mpimpy.dot`` inside a loop would instead re-program (and redraw the
  variation of) the weights at every step.

Both take numpy arrays or torch tensors ``(..., K)`` and return the same kind, ``(..., N)``, in
float64 (numpy) or the input's floating dtype (torch).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mpimpy.calibration import (
    FROZEN_ADC_RANGES,
    CalibrationRule,
    calibration_batches,
    input_range,
)
from mpimpy.engine import DPETensor
from mpimpy.slicing import SlicedData
from mpimpy.validation import check_real

#: Number formats a :class:`CrossbarMatmul` understands: integer or block floating point.
FORMATS = ("INT", "FP")


def _as_matrix(w) -> torch.Tensor:
    if isinstance(w, torch.Tensor):
        t = w.detach().to("cpu", torch.float64)
    else:
        t = torch.from_numpy(np.array(w, dtype=np.float64))
    if t.dim() != 2:
        raise ValueError(f"the operator must be a 2-D matrix (K, N), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("the operator contains NaN or Inf")
    return t


def _check_input(x, k: int):
    shape = tuple(x.shape)
    if len(shape) == 0 or shape[-1] != k:
        raise ValueError(f"input of shape {shape} does not fit the operator: its last axis must "
                         f"have K = {k} elements")


class _FixedOperator:
    """What every matmul here holds: the operator ``w`` ``(K, N)`` (float64 torch tensor), and
    ``calls`` and ``sim_time_s``, the products computed and the seconds spent in them."""

    def __init__(self, w):
        self.w = _as_matrix(w)
        self.calls = 0
        self.sim_time_s = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        """``(K, N)`` of the operator."""
        return tuple(self.w.shape)


class IdealMatmul(_FixedOperator):
    """``x @ W`` in float64: the reference every simulated answer is compared with.

    Attributes:
        w: the operator ``(K, N)`` (float64 torch tensor).
        calls: how many products were computed.
        sim_time_s: total time spent in them (seconds).
    """

    fmt = "ideal"

    def __init__(self, w):
        super().__init__(w)
        self._w_numpy = self.w.numpy()

    def __call__(self, x):
        _check_input(x, self.shape[0])
        start = time.perf_counter()
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float64
            y = (x.to(torch.float64) @ self.w.to(x.device)).to(dtype)
        else:
            y = np.asarray(x, dtype=np.float64) @ self._w_numpy
        self.calls += 1
        self.sim_time_s += time.perf_counter() - start
        return y

    def params(self) -> dict[str, Any]:
        return {"fmt": self.fmt, "w_shape": list(self.shape)}

    def __repr__(self) -> str:
        return f"IdealMatmul(shape={self.shape})"


class CrossbarMatmul(_FixedOperator):
    """``x @ W`` on simulated memristor crossbars, ``W`` programmed once.

    Args:
        w: the operator ``(K, N)`` (numpy array or torch tensor), programmed into the arrays of
            ``engine`` when this object is made.
        fmt: ``"INT"`` (integer quantization per block) or ``"FP"`` (block floating point with
            ``bw_e`` exponent bits), for both the inputs and ``W``.
        bw_e: exponent bits of the FP format (ignored for INT).
        x_slice, w_slice: slice widths of the inputs and of ``W`` (sign slice first).
        paral_size: array size ``(rows, cols)``; a small operator on big arrays leaves most rows
            unused, which wastes ADC range when ``adc_range="full"``.
        quant_gran: quantization blocks of ``W`` (see :class:`mpimpy.SlicedData`); default one
            block per array tile.
        x_quant_gran: quantization blocks of the inputs; default ``"per-vector"``: each input
            vector scaled by its own maximum on each array (a digital max-finder per vector,
            counted in the cost), so its answer never depends on the other vectors of its
            batch. ``"batch-oracle"``: one block per tile across vectors (the original's
            default), an oracle no chip has.
        input_range: ``None`` (default): inputs scaled by ``x_quant_gran``; a float > 0: a
            static input range, the ``|value|`` the DACs' full scale is set for (larger values
            saturate there, ``x.clipped_fraction`` says how many); ``"calibrated"``: a static
            range set by :meth:`calibrate` from calibration data (a call before it is refused).
        engine: a :class:`mpimpy.DPETensor`; by default one is made from ``engine_kwargs``
            (hardware settings such as ``var``, ``radc``, ``mapping``, ``wire_resistance``,
            ``seed``).

    With a frozen ``adc_range`` (``"calibrated"``), call :meth:`calibrate` on calibration
    data before inference; otherwise the first call calibrates the ADC ranges on its own
    inputs (and warns).

    Attributes:
        w: the exact operator (float64), ``engine``, ``mat`` (the programmed
            :class:`mpimpy.SlicedData`), ``x`` (the last sliced input), ``calls`` and
            ``sim_time_s`` (time spent in simulated products, seconds); ``static_range``, the
            static input range in force (or ``None``).
    """

    def __init__(self, w, *, fmt: str = "INT", bw_e: int = 8,
                 x_slice: Sequence[int] = (1, 1, 2, 4), w_slice: Sequence[int] = (1, 1, 2, 4),
                 paral_size=(64, 64), quant_gran=None, x_quant_gran="per-vector",
                 input_range: float | str | None = None, engine: DPETensor | None = None,
                 **engine_kwargs):
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
        if engine is not None and engine_kwargs:
            raise TypeError(f"pass either engine or engine settings, not both (got engine and "
                            f"{sorted(engine_kwargs)})")
        super().__init__(w)
        self.fmt = fmt
        self.bw_e = bw_e if fmt == "FP" else None
        self.x_slice = list(x_slice)
        self.w_slice = list(w_slice)
        self.paral_size = paral_size
        self.quant_gran = quant_gran
        self.x_quant_gran = x_quant_gran
        if input_range is not None and input_range != "calibrated":
            check_real("input_range", input_range, low=0.0, low_open=True)
        self.input_range = input_range
        self.static_range = None if input_range == "calibrated" else input_range
        self.engine = engine if engine is not None else DPETensor(**engine_kwargs)
        self.mat = SlicedData(self.w_slice, bw_e=self.bw_e, paral_size=paral_size,
                              quant_gran=quant_gran, device=self.engine.device, is_weight=True)
        self.mat.slice_data_imp(self.engine, self.w.to(self.engine.device))
        self.engine.program(self.mat)
        self.x: SlicedData | None = None

    @property
    def w_quantized(self) -> torch.Tensor:
        """``W`` as quantized before programming (float64)."""
        return self.mat.quantized_data

    def reprogram(self) -> None:
        """Program ``W`` again: new variation and stuck cells, as a fresh write of the chip
        (its calibrated ADC ranges go with the old programming: calibrate again)."""
        self.engine.program(self.mat)

    def calibrate(self, inputs, rule: str | CalibrationRule = "minmax",
                  percentile: float | None = None) -> CrossbarMatmul:
        """Set the chip's ranges from calibration data and freeze them, once, before inference.

        ``inputs``: one batch ``(..., K)`` (numpy array or torch tensor) or an iterable of
        batches. With ``input_range="calibrated"``, the static input range is set first (the
        rule's upper end of ``|inputs|``); with a frozen ``adc_range``, every array's ADC range
        (:meth:`mpimpy.DPETensor.calibrate`), from the inputs as they are then sliced. ``rule``:
        ``"minmax"`` or ``"percentile"`` (with ``percentile`` in [50, 100]). Calibration reads
        the arrays as products do (``engine.last_schedule``). Returns ``self``.
        """
        rule = CalibrationRule.resolve(rule, percentile)
        batches = []
        for batch in calibration_batches(inputs, "inputs"):
            _check_input(batch, self.shape[0])
            batches.append(torch.as_tensor(batch).to(self.engine.device))
        if self.input_range == "calibrated":
            self.static_range = input_range(batches, rule)
        # (with a fixed ADC range and nothing else to calibrate, the engine refuses)
        if self.input_range != "calibrated" or self.engine.config.adc_range in FROZEN_ADC_RANGES:
            self.engine.calibrate([self._slice_input(b) for b in batches], self.mat, rule)
        return self

    def _slice_input(self, data: torch.Tensor) -> SlicedData:
        if self.input_range == "calibrated" and self.static_range is None:
            raise RuntimeError("input_range='calibrated': call calibrate(inputs) on "
                               "calibration data before multiplying")
        x = SlicedData(self.x_slice, bw_e=self.bw_e, paral_size=self.paral_size,
                       quant_gran=self.x_quant_gran, device=self.engine.device,
                       static_range=self.static_range)
        return x.slice_data_imp(self.engine, data, transpose=True)

    def __call__(self, x):
        _check_input(x, self.shape[0])
        as_numpy = not isinstance(x, torch.Tensor)
        data = torch.from_numpy(np.asarray(x, dtype=np.float64)) if as_numpy else x
        device = data.device
        dtype = data.dtype if data.is_floating_point() else torch.float64
        start = time.perf_counter()
        self.x = self._slice_input(data.to(self.engine.device, dtype))
        y = self.engine(self.x, self.mat)
        self.sim_time_s += time.perf_counter() - start
        self.calls += 1
        return y.cpu().numpy() if as_numpy else y.to(device)

    def params(self) -> dict[str, Any]:
        """Every hardware and slicing setting (:func:`mpimpy.tracking.simulation_params`) plus
        ``fmt``, for logging. Before the first call the input's slicing is described by an
        unsliced operand (no ``x_shape``)."""
        from mpimpy import tracking

        x = self.x
        if x is None:
            x = SlicedData(self.x_slice, bw_e=self.bw_e, paral_size=self.paral_size,
                           quant_gran=self.x_quant_gran)
        params = tracking.simulation_params(self.engine, x, self.mat)
        params["fmt"] = self.fmt
        return params

    def __repr__(self) -> str:
        return (f"CrossbarMatmul(shape={self.shape}, fmt={self.fmt!r}, x_slice={self.x_slice}, "
                f"w_slice={self.w_slice}, engine={self.engine!r})")


def make_matmul(w, hardware: bool = True, **settings):
    """:class:`CrossbarMatmul` ``(w, **settings)`` if ``hardware``, else :class:`IdealMatmul`."""
    return CrossbarMatmul(w, **settings) if hardware else IdealMatmul(w)


def resolve(matmul, w):
    """``matmul`` if given, else :class:`IdealMatmul` ``(w)``.

    A matmul that holds its operator (``.w``, as both classes here do) is checked against
    ``w``: a wrong or transposed operator is refused with ``ValueError``.
    """
    if matmul is None:
        return IdealMatmul(w)
    if not callable(matmul):
        raise TypeError(f"matmul must be a callable x -> x @ W, got {type(matmul).__name__}")
    shape = getattr(matmul, "shape", None)
    expected = tuple(np.shape(w))
    if shape is not None and tuple(shape) != expected:
        raise ValueError(f"matmul holds an operator of shape {tuple(shape)}, this algorithm needs "
                         f"{expected}")
    held = getattr(matmul, "w", None)
    if held is not None and not np.allclose(np.asarray(held, dtype=np.float64),
                                            np.asarray(w, dtype=np.float64)):
        raise ValueError("matmul holds a different operator than this algorithm needs (a "
                         "transposed one?): make it from the operator the docstring names")
    return matmul


__all__ = ["FORMATS", "CrossbarMatmul", "IdealMatmul", "make_matmul", "resolve"]

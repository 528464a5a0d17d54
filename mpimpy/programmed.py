"""The programmed state of a weight operand, owned by the engine that programmed it.

A :class:`~mpimpy.engine.DPETensor` keeps one :class:`ProgrammedWeight` per weight operand it
has programmed (:class:`Programs`, keyed weakly on the operand, so that an operand that is
dropped frees its arrays). It holds the conductances programming drew
(:class:`~mpimpy.devices.ProgrammedArrays`), the read-out right after programming (drift
compensation's baseline) and what is derived from the conductances for reads at one time
(:class:`ReadOut`: the arrays as read then, the read matrices, the drift gains, the effective
weights), kept until the weights are programmed again or the read time changes.

Re-slicing an operand (``mat.slice_data_imp``) gives it new integers: the engine then no
longer holds it (:meth:`Programs.get`) and programs it again on its next use.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .crossbar import read_matrix, read_noise_matrix, small_integer_peak
from .devices import ProgrammedArrays, read_at
from .devices.compensation import global_drift_gain

if TYPE_CHECKING:
    from .calibration import AdcRanges
    from .config import CrossbarConfig
    from .slicing import SlicedData


@dataclass
class ReadOut:
    """What is derived from the programmed conductances for reads at time ``t`` (seconds after
    programming; 0 for a device model that does not change with time), per float dtype.

    Attributes:
        arrays: the arrays as a read at ``t`` sees them (:func:`mpimpy.devices.read_at`).
        matrices: dtype -> (read matrix ``(Tk, rows, n_a * C)``, read-noise matrix or
            ``None``), in conductance levels (:func:`mpimpy.crossbar.read_matrix`).
        drive: what the word lines drive (the admittance the read power needs), or ``None``
            until asked.
        integer: dtype -> (the read matrix in int8, its largest ``|entry|``), or ``None`` when
            it does not hold small integers.
        gain: dtype -> drift-compensation gain of every converted column ``(Tk, n_a * C)``.
        effective: dtype -> the effective weights ``(K, N)``.
    """

    t: float
    arrays: ProgrammedArrays | None = None
    matrices: dict = field(default_factory=dict)
    drive: torch.Tensor | None = None
    integer: dict = field(default_factory=dict)
    gain: dict = field(default_factory=dict)
    effective: dict = field(default_factory=dict)


class ProgrammedWeight:
    """One weight operand programmed into arrays, and what reads derive from its conductances.

    ``adc_ranges`` holds the ADC ranges the calibration stage froze on these arrays
    (:class:`mpimpy.calibration.AdcRanges`), or ``None`` until they are calibrated; programming
    the weights again makes a new state, without them; pickling keeps them.

    Args:
        q: the operand's integers that were programmed (held weakly: re-slicing the operand
            replaces them, and the arrays no longer hold it).
        arrays: the programmed conductances.
        cfg: the hardware settings they were programmed with.
    """

    def __init__(self, q: torch.Tensor, arrays: ProgrammedArrays, cfg: CrossbarConfig):
        self.source = weakref.ref(q)
        self.arrays = arrays
        self.cfg = cfg
        #: the read matrix right after programming (drift compensation's baseline), once asked
        self.baseline: torch.Tensor | None = None
        self.read_out: ReadOut | None = None
        self.adc_ranges: AdcRanges | None = None

    def __getstate__(self):
        # a weak reference does not pickle: the integers themselves do (shared with their
        # operand when both are pickled together); what reads derive is derived again
        return {**self.__dict__, "source": self.source(), "read_out": None}

    def __setstate__(self, state):
        self.__dict__.update({"adc_ranges": None, **state}, source=weakref.ref(state["source"]))

    def at(self, t: float) -> ReadOut:
        """The :class:`ReadOut` for reads ``t`` seconds after programming: kept while ``t``
        stays the same (for a device model that does not change with time, for good)."""
        t_key = t if self.cfg.device_model.time_dependent else 0.0
        if self.read_out is None or self.read_out.t != t_key:
            self.read_out = ReadOut(t=t_key)
        read_out = self.read_out
        if read_out.arrays is None:
            read_out.arrays = read_at(self.arrays, self.cfg, t)
        return read_out

    def read_matrices(self, t: float, dtype: torch.dtype, drive_admittance: bool = False):
        """Read matrix and read-noise matrix (or ``None``) at time ``t`` in ``dtype`` (with
        wires, computing them solves every array's circuit, in ``dtype``); with
        ``drive_admittance`` also what the word lines drive (see
        :func:`mpimpy.crossbar.read_matrix`), from the same circuit solution, so the array
        energy follows the conductances at the read time."""
        read_out = self.at(t)
        if dtype not in read_out.matrices or (drive_admittance and read_out.drive is None):
            arrays, cfg = read_out.arrays, self.cfg
            noise = read_noise_matrix(arrays, cfg) if cfg.read_noise > 0 else None
            if drive_admittance:
                matrix, read_out.drive = read_matrix(arrays, cfg, dtype, admittance=True)
            else:
                matrix = read_matrix(arrays, cfg, dtype)
            read_out.matrices[dtype] = (matrix, None if noise is None else noise.to(dtype))
        return read_out.matrices[dtype] + ((read_out.drive,) if drive_admittance else ())

    def integer_matrix(self, t: float, dtype: torch.dtype) -> tuple[torch.Tensor, float] | None:
        """The read matrix in int8 and its largest ``|entry|``, if it holds small integers
        (float32 integer levels: no variation, drift or wires), else ``None``."""
        read_out = self.at(t)
        if dtype not in read_out.integer:
            matrix, _ = self.read_matrices(t, dtype)
            peak = small_integer_peak(matrix)
            read_out.integer[dtype] = None if peak is None else (matrix.to(torch.int8), peak)
        return read_out.integer[dtype]

    def drift_gain(self, t: float, dtype: torch.dtype) -> torch.Tensor | None:
        """The digital gain of every converted column, ``(Tk, n_a * C)`` in ``dtype``, of
        ``drift_compensation="global"`` (:func:`mpimpy.devices.compensation.global_drift_gain`
        of the read matrices at ``t`` and right after programming), or ``None`` (no
        compensation, or a device model that does not change with time)."""
        cfg = self.cfg
        if cfg.drift_compensation == "none" or not cfg.device_model.time_dependent:
            return None
        read_out = self.at(t)
        if dtype not in read_out.gain:
            if self.baseline is None:  # the read-out right after programming
                self.baseline = read_matrix(self.arrays, cfg)
            now, _ = self.read_matrices(t, dtype)
            read_out.gain[dtype] = global_drift_gain(now, self.baseline, self.arrays).to(dtype)
        return read_out.gain[dtype]

    def effective_weights(self, t: float, dtype: torch.dtype, level_weights: torch.Tensor,
                          bias: float, scale_w: torch.Tensor) -> torch.Tensor:
        """The weights the conductances hold at ``t``, ``(K, N)`` in ``dtype``: the read matrix
        (with the drift gains) shift-added with ``level_weights`` ``(n_a,)``, less the
        mapping's ``bias`` (:meth:`mpimpy.mapping.Mapping.bias_levels`), times the block
        scales ``scale_w`` ``(Tk, N)``."""
        read_out = self.at(t)
        if dtype not in read_out.effective:
            arrays = self.arrays
            matrix, _ = self.read_matrices(t, dtype)  # (Tk, rows, n_a * columns), levels
            gain = self.drift_gain(t, dtype)
            if gain is not None:
                matrix = matrix * gain.unsqueeze(1)
            tk, rows, _ = matrix.shape
            n = scale_w.shape[1]
            levels = (matrix.view(tk, rows, len(level_weights), -1)
                      * level_weights.to(matrix).view(1, 1, -1, 1)).sum(2)
            levels = self.cfg.weight_mapping.remove_bias(
                levels, arrays.unit_columns, arrays.weight_columns_per_array, bias)
            weights = (levels * scale_w.to(matrix).unsqueeze(1)).reshape(tk * rows, n)
            read_out.effective[dtype] = weights[:arrays.shape[0]]
        return read_out.effective[dtype]


class Programs:
    """The weight operands one engine has programmed: operand -> :class:`ProgrammedWeight`,
    held weakly on the operand (an operand that is dropped frees its arrays)."""

    def __init__(self):
        self._by_operand: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self, mat: SlicedData) -> ProgrammedWeight | None:
        """``mat``'s programmed state, or ``None`` if it was never programmed here or was
        sliced anew since."""
        programmed = self._by_operand.get(mat)
        if programmed is None or programmed.source() is not mat.q:
            return None
        return programmed

    def set(self, mat: SlicedData, programmed: ProgrammedWeight) -> None:
        self._by_operand[mat] = programmed

    def __getstate__(self):
        # the operands still held (strongly in the pickle: an operand pickled with its engine
        # is held by the unpickled engine; one pickled alone is dropped again)
        return [(mat, self.get(mat)) for mat in list(self._by_operand) if self.get(mat)]

    def __setstate__(self, held):
        self._by_operand = weakref.WeakKeyDictionary(held)


__all__ = ["ProgrammedWeight", "Programs", "ReadOut"]

"""Hardware settings of a simulated crossbar chip, validated once at construction.

Everything the engine needs to know about the hardware lives in one frozen dataclass,
:class:`CrossbarConfig`.  Each field documents its unit and allowed range; a value outside
that range raises ``ValueError`` (or ``TypeError`` for a wrong type) naming the field, so a
study file with a typo fails before anything runs.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import torch

from .calibration import FROZEN_ADC_RANGES, ORACLE_ADC_RANGES
from .mapping import MAPPINGS as MAPPING_CLASSES
from .mapping import Mapping, resolve_mapping
from .validation import check_int, check_real

#: The weight mappings' names (:data:`mpimpy.mapping.MAPPINGS`).
MAPPINGS = tuple(MAPPING_CLASSES)
#: How each mapping cuts its weights into slices (see :data:`mpimpy.slicing.ENCODINGS`).
WEIGHT_ENCODINGS = {name: m.weight_encoding for name, m in MAPPING_CLASSES.items()}


def resolve_device(device) -> torch.device:
    """A torch device with its index filled in (``"cuda"`` is the current CUDA device), so
    ``"cuda"`` and ``"cuda:0"`` compare equal; ``None`` is the CPU."""
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return device
ADC_RANGE_MODES = ("full",) + FROZEN_ADC_RANGES + ORACLE_ADC_RANGES
#: How inputs are cut into slices and driven (see ``input_encoding``).
INPUT_ENCODINGS = ("twos_complement", "sign_magnitude", "offset_binary")
#: How the outputs of drifted arrays are corrected (see ``drift_compensation``).
DRIFT_COMPENSATIONS = ("none", "global")
#: ``var`` when it is not given: the lognormal model's 5 %; other device models have their own.
DEFAULT_VAR = 0.05
#: How a slice value becomes a conductance level or a DAC code (see ``level_mapping``).
LEVEL_MAPPINGS = ("integer", "spread")


def setting(default, unit: str, valid) -> dataclasses.Field:
    """A dataclass field declaring a setting: its default, its unit (``""`` for none) and its
    allowed values (a description, or a tuple of the choices), in the field's ``metadata``
    (``dataclasses.fields(CrossbarConfig)`` lists them; :func:`describe` formats them)."""
    return dataclasses.field(default=default, metadata={"unit": unit, "valid": valid})


def describe(settings_class) -> dict[str, dict]:
    """Every setting of a settings dataclass (:class:`CrossbarConfig`, :class:`EngineOptions`):
    name -> ``{"default", "unit", "valid"}``."""
    return {f.name: {"default": f.default, **f.metadata} for f in fields(settings_class)}


def level_scale(width: int, levels: int, level_mapping: str) -> float:
    """Levels (or DAC codes) per unit of a ``width``-bit slice value on a device (or DAC) of
    ``levels`` levels: a value ``v`` is written to level ``round(v * level_scale)``.

    ``"integer"``: ``(levels - 1) // (2**width - 1)``, so every value lands on a level that is
    exactly ``v`` times a constant (whenever ``2**width <= levels``; a coarser device falls back
    to the spread). ``"spread"`` (the original mPimPy): ``(levels - 1) / (2**width - 1)``,
    which uses the whole range but rounds when ``levels - 1`` is not a multiple of
    ``2**width - 1``.
    """
    top = 2**width - 1
    if level_mapping == "integer" and levels - 1 >= top:
        return float((levels - 1) // top)
    return (levels - 1) / top


def validate_time(t, name: str = "t_inference") -> float:
    """A time after programming in seconds: a finite real number >= 0, as a float."""
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        t = t.item()
    check_real(f"{name} (seconds after programming)", t, low=0.0)
    return float(t)


def parse_wire_resistance(r) -> tuple[float, float]:
    """``(r_row, r_col)`` in ohms from a wire resistance given as one number or a pair, checked."""
    if isinstance(r, (tuple, list)):
        if len(r) != 2:
            raise ValueError(
                f"r (wire_resistance) must be one number or a pair (r_row, r_col), got {r!r}"
            )
        pair = r
    else:
        pair = (r, r)
    values = []
    for k, value in enumerate(pair):
        name = ("r_row", "r_col")[k]
        label = "r (wire_resistance)" if pair is not r else f"r[{k}] ({name}, wire_resistance)"
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{label} must be a real number of ohms, got {value!r}")
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"{label} must be finite, got {value!r}")
        if value < 0:
            raise ValueError(f"{label} must be >= 0 ohm, got {value!r}")
        values.append(value)
    return values[0], values[1]


@dataclass(frozen=True)
class CrossbarConfig:
    """Devices, peripherals and array settings of one simulated crossbar chip.

    Conductances
        HGS : float
            High conductance state in siemens (default 1e-5 S, i.e. 100 kOhm). Must be > LGS.
        LGS : float
            Low conductance state in siemens (default 1e-7 S, i.e. 10 MOhm). Must be > 0.
        g_level : int
            Number of programmable conductance levels between LGS and HGS, inclusive (>= 2).
            A weight slice of width ``w`` needs ``2**w <= g_level``.
        level_mapping : "integer" or "spread"
            How a slice value ``v`` of width ``w`` becomes a conductance level, and an input
            slice value a DAC code. ``"integer"`` (default): level ``v * ((g_level - 1) //
            (2**w - 1))``, exact whenever ``2**w <= g_level`` (the top levels stay unused when
            ``g_level - 1`` is not a multiple of ``2**w - 1``). ``"spread"``, the original
            mPimPy's: ``round(v / (2**w - 1) * (g_level - 1))``, the whole range but rounded
            (``[1, 3, 4]`` slices on 16 levels are 5 % off the exact product without noise).
            The DAC likewise with ``rdac`` codes (a DAC of fewer than ``2**w`` codes rounds
            either way).

    Devices
        device_model : str, dict or :class:`~mpimpy.devices.models.DeviceModel`
            What programming writes and what a read sees ``t`` seconds later
            (:mod:`mpimpy.devices.models`): ``"lognormal"`` (default: the variation ``var``,
            nothing changes with time), ``"pcm"`` (aihwkit's PCM model: programming noise,
            drift, 1/f read noise), ``"rram"`` (relaxation growing with log t) or
            ``"measured"`` (a per-level CSV table); a dict ``{"name": ..., **parameters}`` or a
            model object sets its parameters. Checked against the other settings (a measured
            table must have ``g_level`` levels from LGS to HGS).
        drift_compensation : "none" or "global"
            ``"global"``: every array's digital output is multiplied by one gain, calibrated as
            aihwkit's global drift compensation: right after programming and again at the time
            read, the array is read with a known input (each word line alone at full scale, as
            aihwkit's one-hot read-out), and the gain is the ratio of the two read-outs' mean
            absolute outputs. It undoes the mean drift of each array, not the spread between
            cells, nor offsets (the fixed LGS reference of drifting LGS cells). Cost: each
            calibration is ``rows`` extra reads of every array, ``rows`` times its columns
            conversions, and one multiplication per converted output; the calibration reads
            are taken as exact (no read noise, no ADC rounding) and are not counted in
            :attr:`mpimpy.DPETensor.last_schedule`. No effect for models that do not change
            with time. Default ``"none"``.

    Non-idealities
        var : float or None
            Device-to-device programming variation of the ``lognormal`` model: every
            programmed conductance is multiplied by ``exp(N(0, var))`` once, at programming
            time (var=0.05 is about 5 %). Range [0, inf). ``None`` (default): 0.05 for
            ``lognormal``, 0 for the other models, which have their own programming noise
            (giving them a ``var > 0`` is an error).
        read_noise : float
            Cycle-to-cycle read noise: relative standard deviation of each cell's conductance on
            every read (each input vector is a new read). Range [0, inf).
        vnoise : float
            Relative standard deviation of each DAC output voltage on every read. Range [0, inf).
            Default 0: the original mPimPy accepted ``vnoise=0.05`` but never applied it, so 0
            reproduces its results; set it to model a noisy DAC.
        stuck_fault_ratio : float
            Fraction of weight cells stuck at one state, drawn at programming time. Range [0, 1].
        stuck_fault_value : int
            The state stuck cells hold: 0 for LGS, 1 for HGS, at every time (stuck cells do not
            drift).

    Peripherals
        rdac : int or None
            Number of DAC output levels between 0 V and ``vread`` (rdac=2**4 is a 4-bit DAC);
            >= 2. ``None`` is an ideal DAC that reproduces every input slice value exactly.
        radc : int or None
            Number of ADC levels (radc=2**8 is an 8-bit ADC); >= 2 (>= 3 when the ADC is
            bipolar: ``mapping="diffpair"`` or ``input_encoding="sign_magnitude"``, whose
            currents take both signs). ``None`` is an ideal ADC.
        adc_range : one of :data:`ADC_RANGE_MODES` or float in (0, 1]
            Range of the ADC. ``"full"``: the worst case ``(HGS - LGS) * vread * rows`` (every
            cell at HGS, every input at ``vread``; ``[0, full]``, or ``[-full, full]`` for a
            bipolar ADC), as the original mPimPy. ``"calibrated"``: each array (row-block,
            slice pair, column block) converts over ``[low, high]``, with all ``radc`` levels
            spread over it, set by the calibration stage from calibration data and frozen on
            the programmed weights (:meth:`mpimpy.engine.DPETensor.calibrate`; an ADC with an
            adjustable offset and gain, as in CrossSim's calibrated ADC). A product on weights
            that were never calibrated calibrates them on its own inputs first (minmax rule)
            and warns once. ``"calibrated-symmetric"``: frozen too, one range per slice pair
            that keeps zero current at code 0: ``[0, max]`` (unipolar; negative currents clip
            to 0) or ``[-max|I|, max|I|]`` with ``(radc - 1) // 2`` levels a side (bipolar).
            ``"batch-oracle"`` / ``"batch-oracle-symmetric"``: the same ranges found at every
            product from the currents of its whole batch (the ``"calibrated"`` modes of mPimPy
            before calibration was a stage): an upper-bound oracle no chip has, since each
            answer then depends on its batch (:mod:`mpimpy.calibration`). A float ``f``: a
            fixed range of ``f`` times the full range (a range calibrated once, offline).
            Currents beyond the range saturate at the end codes, as a real ADC.
        vread : float
            Read voltage in volts: the DAC's full-scale output (default 0.1 V). Must be > 0.

    Arrays
        mapping : "offset", "diffpair" or "bias"
            ``"offset"``: each weight slice is programmed as unsigned levels on one array and the
            LGS offset is removed by a reference column of LGS cells (two's complement weights,
            the sign slice weighing negatively). ``"diffpair"``: sign-magnitude weights on a
            G+/G- pair of arrays, ``I = V @ (G+ - G-)``; the sign slice needs no array.
            ``"bias"`` (ISAAC's encoding): a ``b``-bit weight is stored as the unsigned
            ``w + 2**(b-1)`` (offset binary; its slice widths are those of the unsigned integer,
            e.g. ``[2] * 8``, with no sign slice), read without a reference column, and the bias
            times the sum of the inputs (plus the LGS offset of the cells) is subtracted
            digitally after the shift-add, see ``unit_column``.
        input_encoding : "twos_complement", "sign_magnitude" or "offset_binary"
            How input slices are driven. ``"twos_complement"`` (default, the original mPimPy's):
            every slice of the two's complement input is one read with voltages in
            ``[0, vread]``; the sign slice weighs ``-2**(bits-1)`` in the shift-add (a small
            negative input drives all its slices near full scale). ``"sign_magnitude"``: the
            slices of ``|x|`` are driven with the sign of ``x`` as the voltage's polarity, a
            bipolar DAC of ``rdac`` codes a side (costed one bit more): the sign slice needs no
            read (one read fewer per vector), currents take both signs and the ADC is bipolar.
            ``"offset_binary"``: the slices of the unsigned ``x + 2**(bits-1)`` (any widths, no
            sign slice), every slice one read; the bias times each column's weight sum (known
            when the weights are programmed) is subtracted digitally, one subtraction per output
            per row-block; the arrays' errors on the bias are not removed.
        unit_column : bool
            Only with ``mapping="bias"``. ``True``: every array has one more column, ISAAC's
            "unit column", holding the bias (the biased value of a zero weight); it is read and
            converted with the others and its result is subtracted from every column of its
            array, so its own variation and ADC rounding enter the result (one more conversion
            per array read). ``False`` (default): the bias term is computed digitally from the
            DAC codes (CrossSim's "digital offset"): exact, no extra column, but it cannot follow
            the devices' errors.
        wire_resistance : float or (float, float)
            Resistance of one wire segment in ohms, >= 0: one value, or ``(r_row, r_col)`` for
            word-line and bit-line segments. 0 is ideal wires. Each array is then solved exactly
            as a circuit (see :mod:`mpimpy.crossbar` for the topology) when it is programmed.
            The ADC's full scale stays the ideal-wire worst case: the ADC knows nothing of the
            wires, so IR drop shows up as the gain loss it causes on an uncompensated chip
            (a calibrated ``adc_range`` is set on the dropped currents instead).
    """

    HGS: float = setting(1e-5, "S", "> LGS")
    LGS: float = setting(1e-7, "S", "> 0")
    g_level: int = setting(16, "levels", "integer >= 2")
    level_mapping: str = setting("integer", "", LEVEL_MAPPINGS)
    var: float | None = setting(None, "log-std", ">= 0 (lognormal only); None: the model's")
    read_noise: float = setting(0.0, "relative std", ">= 0")
    vnoise: float = setting(0.0, "relative std", ">= 0")
    stuck_fault_ratio: float = setting(0.0, "fraction of cells", "[0, 1]")
    stuck_fault_value: int = setting(0, "", (0, 1))
    rdac: int | None = setting(2**4, "levels", "integer >= 2, or None (ideal)")
    radc: int | None = setting(2**8, "levels", "integer >= 2 (>= 3 bipolar), or None (ideal)")
    adc_range: str | float = setting("full", "", ADC_RANGE_MODES + ("float in (0, 1]",))
    vread: float = setting(0.1, "V", "> 0")
    mapping: str = setting("offset", "", MAPPINGS)
    input_encoding: str = setting("twos_complement", "", INPUT_ENCODINGS)
    unit_column: bool = setting(False, "", "bool, True only with mapping='bias'")
    wire_resistance: float | tuple[float, float] = setting(0.0, "ohm", ">= 0, or (r_row, r_col)")
    device_model: object = setting("lognormal", "", "a name in mpimpy.devices.models."
                                   "DEVICE_MODELS, a dict of parameters or a DeviceModel")
    drift_compensation: str = setting("none", "", DRIFT_COMPENSATIONS)

    def __post_init__(self):
        from .devices.models import resolve_device_model  # the devices package imports config

        model = resolve_device_model(self.device_model)
        object.__setattr__(self, "device_model", model)
        if self.var is None:
            object.__setattr__(self, "var", DEFAULT_VAR if model.name == "lognormal" else 0.0)
        elif model.name != "lognormal" and not isinstance(self.var, bool) \
                and isinstance(self.var, numbers.Real) and self.var != 0:
            raise ValueError(f"var={self.var!r} is the lognormal model's variation; the "
                             f"{model.name} model draws its own programming noise: leave var "
                             f"unset (or 0), or use device_model='lognormal'")
        if self.drift_compensation not in DRIFT_COMPENSATIONS:
            raise ValueError(f"drift_compensation must be one of {DRIFT_COMPENSATIONS}, got "
                             f"{self.drift_compensation!r}")
        check_real("LGS", self.LGS, low=0.0, low_open=True)
        check_real("HGS", self.HGS, low=0.0, low_open=True)
        if self.HGS <= self.LGS:
            raise ValueError(f"HGS must be > LGS, got HGS={self.HGS!r} and LGS={self.LGS!r}")
        check_int("g_level", self.g_level, 2)
        if self.level_mapping not in LEVEL_MAPPINGS:
            raise ValueError(f"level_mapping must be one of {LEVEL_MAPPINGS}, got "
                             f"{self.level_mapping!r}")
        for name in ("var", "read_noise", "vnoise"):
            check_real(name, getattr(self, name), low=0.0)
        check_real("stuck_fault_ratio", self.stuck_fault_ratio, low=0.0, high=1.0)
        if self.stuck_fault_value not in (0, 1) or isinstance(self.stuck_fault_value, bool):
            raise ValueError(
                f"stuck_fault_value must be 0 (stuck at LGS) or 1 (stuck at HGS), "
                f"got {self.stuck_fault_value!r}"
            )
        resolve_mapping(self.mapping, self.unit_column)
        if self.input_encoding not in INPUT_ENCODINGS:
            raise ValueError(f"input_encoding must be one of {INPUT_ENCODINGS}, got "
                             f"{self.input_encoding!r}")
        if self.rdac is not None:
            check_int("rdac", self.rdac, 2)
        if self.radc is not None:
            check_int("radc", self.radc, 3 if self.bipolar_adc else 2)
        if isinstance(self.adc_range, str):
            if self.adc_range not in ADC_RANGE_MODES:
                raise ValueError(
                    f"adc_range must be one of {ADC_RANGE_MODES} or a float in (0, 1], "
                    f"got {self.adc_range!r}"
                )
        else:
            check_real("adc_range", self.adc_range, low=0.0, high=1.0, low_open=True)
        check_real("vread", self.vread, low=0.0, low_open=True)
        r_row, r_col = parse_wire_resistance(self.wire_resistance)
        # one number, or a pair when the word and bit lines differ
        object.__setattr__(self, "wire_resistance", r_row if r_row == r_col else (r_row, r_col))
        model.check(self)

    @property
    def bipolar_adc(self) -> bool:
        """Whether column currents take both signs (a differential pair, or inputs driven with
        both polarities), so the ADC converts both."""
        return self.weight_mapping.bipolar or self.input_encoding == "sign_magnitude"

    @cached_property
    def weight_mapping(self) -> Mapping:
        """The :class:`~mpimpy.mapping.Mapping` object of ``mapping`` (and ``unit_column``)."""
        return resolve_mapping(self.mapping, self.unit_column)

    @property
    def weight_encoding(self) -> str:
        """How the weights are cut into slices (:data:`mpimpy.slicing.ENCODINGS`)."""
        return self.weight_mapping.weight_encoding

    @property
    def level_step(self) -> float:
        """Conductance between two adjacent programmable levels, in siemens."""
        return (self.HGS - self.LGS) / (self.g_level - 1)

    @classmethod
    def overrides(cls, **settings) -> dict:
        """``settings`` (keyword arguments of this class, or of ``DPETensor``) as a dict, once
        checked: a name that is no hardware setting, or a value out of its range, raises
        here, where the overrides are declared."""
        cls(**settings)
        return settings

    def as_dict(self) -> dict:
        """All settings as a flat dict (for logging; ``CrossbarConfig(**as_dict())`` rebuilds
        it). ``device_model`` is the model object, whose ``str`` is its name (and changed
        parameters); :meth:`~mpimpy.devices.models.DeviceModel.log_params` flattens it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: How an engine reads its arrays (see :class:`EngineOptions`).
READ_KERNELS = ("auto", "float")


@dataclass(frozen=True)
class EngineOptions:
    """The run-time options of an engine (:class:`~mpimpy.engine.DPETensor`): how it
    simulates, not what hardware. Validated here (``t_inference`` made a float, ``device``
    resolved by :func:`resolve_device`); ``technology`` is resolved by
    :func:`mpimpy.cost.resolve_technology` when the engine is made.

    Attributes:
        t_inference: seconds after programming at which the arrays are read (finite, >= 0;
            default 0), see :meth:`mpimpy.engine.DPETensor.at_time`.
        seed: an int, a ``torch.Generator`` on the engine's device, or ``None`` to draw a seed
            from torch's global generator (so ``torch.manual_seed`` makes runs repeatable). The
            same seed and the same sequence of calls give bit-identical results.
        device: where the simulation runs; default CPU. Operands must live there.
        chunk_elements: how many currents one chunk of work may hold (memory stays bounded by
            about ``4 * chunk_elements`` bytes for float32 beyond the operands; exact integer
            reads use chunks of at most ``2**21``, which keep their currents in cache). Between
            products each thread keeps the working buffers (DAC codes, chunks; those of at most
            128 MB, see :data:`mpimpy.execution.RETAINED_BUFFER_BYTES`) for its next product;
            :func:`mpimpy.release_buffers` frees them.
        calibration_elements: with a calibrated ADC, the currents one calibration needs (for
            ``"calibrated"``, one row-block's, or with inexact reads of a large row-block
            (see :data:`mpimpy.execution.PAIR_MAJOR_CURRENTS`) those of one column block,
            every array of it side by side; the whole product's, for
            ``"calibrated-symmetric"``) are kept between calibrating and converting if they are
            at most this many (512 MB in float32 by default); more, and those of int8 reads
            (cheaper to read again than to keep), are read twice instead.
        read_kernel: how arrays are read. ``"auto"`` (default): a noise-free read of integer
            codes on integer conductance levels (no variation, drift, wires, input or read
            noise; float32 operands) sums its currents exactly on the integer matrix units of
            the CPU or GPU (int8 ``torch._int_mm``) where it has them, every other read in the
            operands' float dtype. ``"float"``: every read in the float dtype. Both give the same
            numbers, element for element; ``engine.last_read_kernel`` says which one the last
            product used (``"int8"``, ``"float32"`` or ``"float64"``).
        compile: ``True`` runs the passes after each chunk's read (the ADC and the shift-add,
            :func:`mpimpy.peripherals.convert_shift_add`) as one kernel compiled by
            ``torch.compile`` (:mod:`mpimpy.jit`): faster for long runs, after a compile of a few
            seconds per process for each new shape of chunk (columns, slices, row-blocks per
            chunk) and ADC variant; the numbers agree with the uncompiled ones to round-off. Where
            compiling fails (no C++ compiler), a warning says why and the passes run
            uncompiled. ``False`` (default): uncompiled. ``engine.last_convert_kernel`` says
            which ran (``"compiled"`` or ``"eager"``).
        technology: a :class:`~mpimpy.cost.Technology`, a preset name (``"isaac-32nm"``), a
            dict of fields or a YAML/JSON file: the engine then estimates the energy, latency
            and area of every product and keeps the last one as ``engine.last_cost`` (a
            :class:`~mpimpy.cost.CostReport`). ``None`` (default): no estimate.
    """

    t_inference: float = setting(0.0, "s", ">= 0, finite")
    seed: int | torch.Generator | None = setting(None, "", "int >= 0, a torch.Generator on "
                                                 "the device, or None (drawn from torch)")
    device: str | torch.device | None = setting(None, "", "a torch device; None: the CPU")
    chunk_elements: int = setting(2**22, "currents", "integer >= 1")
    calibration_elements: int = setting(2**27, "currents", "integer >= 0")
    read_kernel: str = setting("auto", "", READ_KERNELS)
    compile: bool = setting(False, "", (False, True))
    technology: object = setting(None, "", "a mpimpy.cost.Technology, preset name, dict or "
                                 "YAML/JSON file, or None (no cost estimate)")

    def __post_init__(self):
        object.__setattr__(self, "t_inference", validate_time(self.t_inference))
        object.__setattr__(self, "device", resolve_device(self.device))
        for name, low in (("chunk_elements", 1), ("calibration_elements", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                kind = "positive" if low else "non-negative"
                raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
        if self.read_kernel not in READ_KERNELS:
            raise ValueError(f"read_kernel must be 'auto' or 'float', got {self.read_kernel!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        seed = self.seed
        if isinstance(seed, torch.Generator):
            if resolve_device(seed.device) != self.device:
                raise ValueError(f"seed: the generator is on {seed.device}, the engine on "
                                 f"{self.device}")
        elif seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                   or seed < 0):
            raise ValueError(f"seed must be a non-negative int, a torch.Generator or None, "
                             f"got {seed!r}")


@dataclass(frozen=True)
class TileShape:
    """Size of one crossbar array: ``rows`` word lines (inputs) by ``cols`` bit lines (outputs)."""

    rows: int = 64
    cols: int = 64

    def __post_init__(self):
        check_int("paral_size[0] (array rows)", self.rows, 1)
        check_int("paral_size[1] (array cols)", self.cols, 1)

    @classmethod
    def parse(cls, paral_size) -> TileShape:
        if isinstance(paral_size, TileShape):
            return paral_size
        try:
            rows, cols = (int(v) if hasattr(v, "item") else v for v in paral_size)
        except (TypeError, ValueError):
            raise TypeError(
                f"paral_size must be a pair (rows, cols) of positive integers, got {paral_size!r}"
            ) from None
        return cls(rows, cols)


__all__ = ["CrossbarConfig", "EngineOptions", "TileShape", "READ_KERNELS", "describe",
           "setting", "MAPPINGS", "WEIGHT_ENCODINGS", "ADC_RANGE_MODES",
            "INPUT_ENCODINGS", "DRIFT_COMPENSATIONS", "LEVEL_MAPPINGS", "level_scale",
           "validate_time"]

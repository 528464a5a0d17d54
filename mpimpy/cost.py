"""Stage 8: what a product costs: energy, latency and area of the schedule the engine ran.

Every simulated product leaves a :class:`~mpimpy.schedule.Schedule` in
``engine.last_schedule``: how many input vectors drove how many arrays through how many word
lines, input slices and converted columns, read off the engine's own tensors (the DAC codes it
drove and the arrays it programmed), and, when asked, the power its reads dissipated, ``V^2 G``
summed over every cell (with wire resistance the power of the whole circuit, wires included).
:func:`report` counts that schedule as hardware events and prices them with a
:class:`Technology` (this module reads the schedule, never the engine)::

    report = mpimpy.cost.estimate(engine, x, mat, technology="isaac-32nm")
    report.energy, report.latency, report.area, report.energy_per_mac, report.tops_per_watt
    report.energy_breakdown    # {"adc": ..., "dac": ..., "array": ..., ...}, joules

or ``DPETensor(..., technology="isaac-32nm")`` prices every product (``engine.last_cost``).

Events (per product)
    * array reads: every array is read once per input slice per vector;
    * DAC conversions: each array drives its own word lines, one conversion per driven word line
      per input slice per vector;
    * ADC conversions, sample-and-holds and shift-and-adds: one per converted column per read
      (the offset mapping's reference column and the differential pair's G- column are
      subtracted as currents before the ADC and are not converted; the bias mapping's unit
      column is);
    * accumulations: adding each row-block's partial result into the output (and, with the
      bias mapping's digital bias, summing the inputs and subtracting the bias; and, for
      inputs scaled by their own data, the max-finder's comparison per input element);
    * buffer traffic in bits: inputs into each array group's input register and partial
      results out of its output register (the IMA level), inputs from and outputs to the
      tile's eDRAM, over the bus and the router;
    * cells written when the product programmed the weights.

Latency: the schedule it assumes
    Weights are stationary; every array of a product (all row-blocks, column blocks and slices)
    reads in parallel; the input slices of the vectors are read one after another, each read
    taking ``max(read_time, ADC time)`` because the ADCs convert one read while the arrays do
    the next; an ADC shared by ``columns_per_adc`` columns converts them one after another
    (a SAR ADC's conversion time grows linearly with its bits); the digital stages are
    pipelined and add their depth once (shift-add, an adder tree over the row-blocks, the
    output write). So ``latency = (reads - 1) * cycle + read_time + ADC time + digital depth``.

Area
    The arrays (with their reference or unit columns), their DACs (one per word line), ADCs
    (``ceil(cols / columns_per_adc)`` per array), sample-and-holds (one per converted column),
    then whole IMAs (``arrays_per_ima`` arrays with shift-and-add units and input/output
    registers) and whole tiles (``imas_per_tile`` IMAs with eDRAM, bus, router share and
    output register): what a chip must lay out to hold the weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .schedule import Schedule

if TYPE_CHECKING:
    from .engine import DPETensor
    from .slicing import SlicedData

#: The components of :attr:`CostReport.energy_breakdown` and :attr:`CostReport.area_breakdown`.
#: ``buffer``: the IMAs' input and output registers; ``accumulate``: the tile's adders over
#: row-blocks and its output register; ``interconnect``: the tile's bus and its router share;
#: ``other``: area of the tile's units a matrix product does not use (activation, pooling).
COMPONENTS = ("array", "dac", "adc", "sample_hold", "shift_add", "buffer", "accumulate",
              "edram", "interconnect", "other")
#: The components that make up one IMA (ISAAC's in-situ multiply-accumulate unit).
IMA_COMPONENTS = ("array", "dac", "adc", "sample_hold", "shift_add", "buffer")


# --------------------------------------------------------------------------------------------
# The technology


def _field(default, unit: str, **metadata):
    return field(default=default, metadata={"unit": unit, **metadata})


@dataclass(frozen=True)
class Technology:
    """Per-event energies, latencies and component areas of a crossbar accelerator.

    Energies in joules per event, times in seconds, rates in hertz, areas in mm^2. The default
    values are the ``"isaac-32nm"`` preset: Shafiee et al., "ISAAC: A Convolutional Neural
    Network Accelerator with In-Situ Analog Arithmetic in Crossbars", ISCA 2016, Table I
    (32 nm, 128 x 128 arrays of 2-bit cells, 1-bit DACs, one 8-bit 1.28 GS/s SAR ADC per array,
    100 ns reads, 8 arrays per IMA, 12 IMAs per tile). Table I gives each component's power at
    full rate; a per-event energy is that power divided by the component's event rate in
    ISAAC's own dataflow (one read per 100 ns, 128 conversions per ADC per read, 16 reads per
    16-bit input vector):

    * ADC: 16 mW / (8 ADCs x 1.28 GS/s) = 1.5625 pJ per conversion; 9600 um^2 / 8 per ADC.
      Resolution scaling (``*_exp_fraction``): the comparator, SAR logic and clock grow linearly
      with the bits, the capacitive DAC as ``2**bits``; the split is fitted to the scaled 4- to
      10-bit figures (after Saberi et al., IEEE TCAS-I 2011) that Accelergy's ISAAC component
      library (``hwcomponents_library/library/isaac.py``) ships: 6 % of the 8-bit energy and
      45.5 % of its area scale as ``2**bits`` (the fit reproduces those figures within 2 %).
    * DAC: 4 mW / 1024 DACs x 100 ns = 0.39 pJ per 1-bit conversion; 170 um^2 / 1024;
      a multi-bit DAC scales as ``2**bits`` (its unit elements).
    * sample-and-hold: 10 uW / 1024 x 100 ns; 40 um^2 / 1024.
    * array: 2.4 mW / 8 arrays x 100 ns / (128 x 128 cells) = 1.83 fJ per cell per read
      (``array_energy_per_cell``; set it to ``None`` to use the physics instead, the
      ``V^2 G t`` of every cell that the engine measures); 200 um^2 / 8 / 16384 per cell.
    * shift-and-add: 0.2 mW / 1024 conversions per read x 100 ns per operation; 4 units per
      IMA (one per two ADCs), 240 um^2 / 4.
    * IMA registers: input 2 KB, 1.24 mW, 0.0021 mm^2; output 256 B, 0.23 mW, 0.00077 mm^2;
      per bit of traffic: the power times the 1.6 us of one 16-bit vector over the 2048 bits
      an IMA reads (128 inputs x 16 bits) or writes (128 outputs x 16 bits) in that time.
    * tile (12 IMAs): eDRAM 64 KB 20.7 mW / 0.083 mm^2, bus 7 mW / 0.090 mm^2, a quarter of a
      42 mW / 0.151 mm^2 router, one shift-and-add 0.05 mW / 0.00006 mm^2, output register 3 KB
      1.68 mW / 0.0032 mm^2, sigmoid and max-pool units 0.00084 mm^2 (area only); per bit or
      operation: the power times 1.6 us over the traffic of a 384 x 512 layer filling the 12
      IMAs as 3 row-blocks x 4 column blocks (eDRAM 14336 bits, bus 49152 bits, router 14336
      bits, 1536 additions and 24576 output-register bits per vector).

    Any field can be overridden (``Technology.preset("isaac-32nm", adc_energy=1e-12)``), and a
    technology reads from and writes to YAML or JSON (:meth:`from_file`, :meth:`to_file`).
    Every field is validated once, at construction: energies, times and areas finite and
    >= 0, rates and the read time > 0, counts integers >= 1, fractions in [0, 1].
    """

    name: str = "isaac-32nm"
    node_nm: float = _field(32.0, "nm")
    source: str = "Shafiee et al., ISCA 2016, Table I"
    read_time: float = _field(100e-9, "s", positive=True)
    digital_clock: float = _field(1.28e9, "Hz", positive=True)
    # ADC
    adc_reference_bits: int = _field(8, "bits", count=True)
    adc_energy: float = _field(16e-3 / (8 * 1.28e9), "J per conversion at the reference bits")
    adc_area: float = _field(9600e-6 / 8, "mm^2 per ADC at the reference bits")
    adc_sample_rate: float = _field(1.28e9, "conversions/s at the reference bits",
                                    positive=True)
    adc_energy_exp_fraction: float = _field(0.0596, "fraction", fraction=True)
    adc_area_exp_fraction: float = _field(0.455, "fraction", fraction=True)
    columns_per_adc: int = _field(128, "columns", count=True)
    # DAC
    dac_reference_bits: int = _field(1, "bits", count=True)
    dac_energy: float = _field(4e-3 / 1024 * 100e-9, "J per conversion at the reference bits")
    dac_area: float = _field(170e-6 / 1024, "mm^2 per DAC at the reference bits")
    dac_energy_exp_fraction: float = _field(1.0, "fraction", fraction=True)
    dac_area_exp_fraction: float = _field(1.0, "fraction", fraction=True)
    # sample-and-hold
    sample_hold_energy: float = _field(10e-6 / 1024 * 100e-9, "J per sample")
    sample_hold_area: float = _field(40e-6 / 1024, "mm^2 per sample-and-hold")
    # arrays
    array_energy_per_cell: float | None = _field(2.4e-3 / 8 * 100e-9 / (128 * 128),
                                                 "J per cell per read (None: physics)",
                                                 optional=True)
    cell_area: float = _field(200e-6 / 8 / (128 * 128), "mm^2 per cell")
    write_energy_per_cell: float | None = _field(None, "J per cell written (None: not "
                                                 "modelled)", optional=True)
    # shift-and-add (in each IMA)
    shift_add_energy: float = _field(0.2e-3 / 1024 * 100e-9, "J per operation")
    shift_add_area: float = _field(240e-6 / 4, "mm^2 per unit")
    adcs_per_shift_add: int = _field(2, "ADCs", count=True)
    # IMA
    arrays_per_ima: int = _field(8, "arrays", count=True)
    input_buffer_energy: float = _field(1.24e-3 * 1.6e-6 / 2048, "J per bit")
    input_buffer_area: float = _field(0.0021, "mm^2 per IMA")
    output_buffer_energy: float = _field(0.23e-3 * 1.6e-6 / 2048, "J per bit")
    output_buffer_area: float = _field(0.00077, "mm^2 per IMA")
    output_bits: int = _field(16, "bits per partial result", count=True)
    # tile
    imas_per_tile: int = _field(12, "IMAs", count=True)
    edram_energy: float = _field(20.7e-3 * 1.6e-6 / 14336, "J per bit")
    edram_area: float = _field(0.083, "mm^2 per tile")
    bus_energy: float = _field(7e-3 * 1.6e-6 / 49152, "J per bit")
    bus_area: float = _field(0.090, "mm^2 per tile")
    router_energy: float = _field(42e-3 / 4 * 1.6e-6 / 14336, "J per bit")
    router_area: float = _field(0.151 / 4, "mm^2 per tile")
    accumulate_energy: float = _field(0.05e-3 * 1.6e-6 / 1536, "J per addition")
    accumulate_area: float = _field(0.00006, "mm^2 per tile")
    tile_buffer_energy: float = _field(1.68e-3 * 1.6e-6 / 24576, "J per bit")
    tile_buffer_area: float = _field(0.0032, "mm^2 per tile")
    other_tile_area: float = _field(0.0006 + 0.00024, "mm^2 per tile")

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Technology.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.source, str):
            raise TypeError(f"Technology.source must be a string, got {self.source!r}")
        for f in dataclasses.fields(self):
            if f.name in ("name", "source"):
                continue
            value, meta = getattr(self, f.name), f.metadata
            label = f"Technology.{f.name} ({meta['unit']})"
            if value is None and meta.get("optional"):
                continue
            if meta.get("count"):
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                        or value < 1:
                    raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{label} must be a real number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{label} must be finite, got {value!r}")
            if meta.get("positive") and value <= 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
            if value < 0:
                raise ValueError(f"{label} must be >= 0, got {value!r}")
            if meta.get("fraction") and value > 1:
                raise ValueError(f"{label} must be in [0, 1], got {value!r}")

    # -- converters as a function of their resolution ----------------------------------------
    @staticmethod
    def _scaled(reference: float, bits: int, reference_bits: int, exp_fraction: float) -> float:
        """``reference`` at ``reference_bits``: a part linear in the bits and a part growing as
        ``2**bits`` (``exp_fraction`` of it at the reference)."""
        return reference * ((1 - exp_fraction) * bits / reference_bits
                            + exp_fraction * 2.0 ** (bits - reference_bits))

    def adc_conversion_energy(self, bits: int) -> float:
        """J per conversion of a ``bits``-bit ADC."""
        return self._scaled(self.adc_energy, bits, self.adc_reference_bits,
                            self.adc_energy_exp_fraction)

    def adc_unit_area(self, bits: int) -> float:
        """mm^2 of one ``bits``-bit ADC."""
        return self._scaled(self.adc_area, bits, self.adc_reference_bits,
                            self.adc_area_exp_fraction)

    def adc_conversion_time(self, bits: int) -> float:
        """Seconds per conversion: a SAR ADC decides one bit per step."""
        return bits / self.adc_reference_bits / self.adc_sample_rate

    def dac_conversion_energy(self, bits: int) -> float:
        """J per conversion of a ``bits``-bit DAC."""
        return self._scaled(self.dac_energy, bits, self.dac_reference_bits,
                            self.dac_energy_exp_fraction)

    def dac_unit_area(self, bits: int) -> float:
        """mm^2 of one ``bits``-bit DAC."""
        return self._scaled(self.dac_area, bits, self.dac_reference_bits,
                            self.dac_area_exp_fraction)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def preset(cls, preset: str, /, **overrides) -> Technology:
        """A shipped technology (:data:`PRESETS`), with any fields overridden."""
        if preset not in PRESETS:
            raise ValueError(f"unknown technology preset {preset!r}; presets: "
                             f"{sorted(PRESETS)}")
        return PRESETS[preset].replace(**overrides)

    def replace(self, **overrides) -> Technology:
        """A copy with some fields changed (validated like a new one)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown Technology fields {unknown}; fields: "
                             f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **overrides) if overrides else self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Technology:
        """From a dict of fields; a ``preset`` key names the technology the others override."""
        if not isinstance(data, dict):
            raise TypeError(f"a technology must be a mapping of fields, got {data!r}")
        data = dict(data)
        base = data.pop("preset", None)
        return cls.preset(base, **data) if base is not None else cls().replace(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> Technology:
        """Read a technology from a ``.yaml``/``.yml`` or ``.json`` file (fields as keys)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{path}: {err}") from err

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_file(self, path: str | Path) -> Path:
        """Write every field to ``path`` (JSON for ``.json``, YAML otherwise)."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        else:
            import yaml

            path.write_text(yaml.safe_dump(self.as_dict(), sort_keys=False), encoding="utf-8")
        return path


#: Shipped technologies by name.
PRESETS: dict[str, Technology] = {"isaac-32nm": Technology()}


def resolve_technology(technology, **overrides) -> Technology:
    """A :class:`Technology` from a preset name, a Technology, a dict of fields or a path to a
    YAML/JSON file, with ``overrides`` applied."""
    if isinstance(technology, Technology):
        return technology.replace(**overrides)
    if isinstance(technology, dict):
        return Technology.from_dict(technology).replace(**overrides)
    if isinstance(technology, Path) or (isinstance(technology, str) and technology.lower()
                                        .endswith((".yaml", ".yml", ".json"))):
        return Technology.from_file(technology).replace(**overrides)
    if isinstance(technology, str):
        return Technology.preset(technology, **overrides)
    raise TypeError(f"technology must be a preset name {sorted(PRESETS)}, a Technology, a dict "
                    f"or a YAML/JSON path, got {technology!r}")


# --------------------------------------------------------------------------------------------
# The report


@dataclass
class CostReport:
    """Energy, latency and area of one product (or a network: see :func:`combine`).

    Attributes:
        technology: the technology's name.
        energy: J; ``energy_breakdown`` by component (:data:`COMPONENTS`) adds up to it.
        latency: s.
        area: mm^2 of the hardware that holds the weights; ``area_breakdown`` adds up to it.
        macs: multiply-accumulates computed.
        adc_conversions, dac_conversions, array_reads, sample_holds, shift_adds,
        accumulations, cells_read, cells_written: event counts.
        input_buffer_bits, output_buffer_bits, edram_bits, bus_bits: traffic.
        arrays, adcs, dacs, imas, tiles: hardware allocated.
        adc_bits, dac_bits: converter resolutions costed.
        cycle_time: s per read cycle (``max(read_time, ADC time)``).
        array_energy_model: ``"physics"`` (the engine's ``V^2 G t`` of every cell) or
            ``"per-cell"`` (the technology's fixed energy per cell per read).
        programming_energy: J of writing ``cells_written`` cells, or ``None`` when the
            technology does not model writes (not part of ``energy``).
    """

    technology: str
    energy: float
    latency: float
    area: float
    macs: int
    energy_breakdown: dict[str, float]
    area_breakdown: dict[str, float]
    adc_conversions: int
    dac_conversions: int
    array_reads: int
    sample_holds: int
    shift_adds: int
    accumulations: int
    cells_read: int
    cells_written: int
    input_buffer_bits: int
    output_buffer_bits: int
    edram_bits: int
    bus_bits: int
    arrays: int
    adcs: int
    dacs: int
    imas: int
    tiles: int
    adc_bits: int
    dac_bits: int
    cycle_time: float
    array_energy_model: str
    programming_energy: float | None = None

    @property
    def energy_per_mac(self) -> float:
        """J per multiply-accumulate."""
        return self.energy / self.macs if self.macs else math.nan

    @property
    def power(self) -> float:
        """Average power over the latency, W."""
        return self.energy / self.latency if self.latency else math.nan

    @property
    def throughput(self) -> float:
        """MAC/s."""
        return self.macs / self.latency if self.latency else math.nan

    @property
    def tops_per_watt(self) -> float:
        """Tera-operations per joule (2 operations per MAC), i.e. TOPS/W."""
        return 2 * self.macs / self.energy / 1e12 if self.energy else math.nan

    @property
    def tops_per_mm2(self) -> float:
        """Tera-operations per second per mm^2 (2 operations per MAC)."""
        return 2 * self.throughput / self.area / 1e12 if self.area else math.nan

    @property
    def conversions_per_mac(self) -> float:
        return self.adc_conversions / self.macs if self.macs else math.nan

    def as_dict(self) -> dict[str, Any]:
        """A flat dict of numbers (for logging): totals, rates, counts and both breakdowns."""
        out: dict[str, Any] = {
            "energy_J": self.energy,
            "energy_per_mac_J": self.energy_per_mac,
            "energy_per_mac_pJ": self.energy_per_mac * 1e12,
            "latency_s": self.latency,
            "area_mm2": self.area,
            "power_W": self.power,
            "throughput_mac_per_s": self.throughput,
            "tops_per_w": self.tops_per_watt,
            "tops_per_mm2": self.tops_per_mm2,
            "macs": self.macs,
            "conversions_per_mac": self.conversions_per_mac,
        }
        for name in ("adc_conversions", "dac_conversions", "array_reads", "sample_holds",
                     "shift_adds", "accumulations", "cells_read", "cells_written",
                     "input_buffer_bits", "output_buffer_bits", "edram_bits", "bus_bits",
                     "arrays", "adcs", "dacs", "imas", "tiles", "adc_bits", "dac_bits",
                     "cycle_time"):
            out[name] = getattr(self, name)
        if self.programming_energy is not None:
            out["programming_energy_J"] = self.programming_energy
        out.update({f"energy_{k}_J": v for k, v in self.energy_breakdown.items()})
        out.update({f"area_{k}_mm2": v for k, v in self.area_breakdown.items()})
        return out

    def breakdown_table(self):
        """The breakdowns as a pandas DataFrame: one row per component, energy (J, %) and area
        (mm^2, %)."""
        import pandas as pd

        rows = []
        for name in COMPONENTS:
            e, a = self.energy_breakdown.get(name, 0.0), self.area_breakdown.get(name, 0.0)
            rows.append({"component": name, "energy_J": e,
                         "energy_share": e / self.energy if self.energy else 0.0,
                         "area_mm2": a, "area_share": a / self.area if self.area else 0.0})
        return pd.DataFrame(rows)

    def __repr__(self):
        return (f"CostReport({self.technology}: {self.energy:.4g} J, "
                f"{self.energy_per_mac * 1e12:.4g} pJ/MAC, {self.latency:.4g} s, "
                f"{self.area:.4g} mm^2, {self.tops_per_watt:.4g} TOPS/W, "
                f"array energy {self.array_energy_model})")


def report(schedule: Schedule, technology: Technology | str = "isaac-32nm") -> CostReport:
    """Count a :class:`Schedule` as hardware events and price them with ``technology``."""
    tech = resolve_technology(technology)
    s = schedule
    reads = s.vectors * len(s.input_widths)  # read cycles, every array reading in each
    arrays = s.row_blocks * s.column_blocks * s.arrays_per_group
    word_line_reads = reads * s.word_lines * s.column_blocks * s.arrays_per_group
    adc_conversions = reads * s.row_blocks * s.arrays_per_group * s.converted_columns
    accumulations = s.vectors * s.n * s.row_blocks
    if s.digital_bias:  # sum each vector's inputs per slice, subtract the bias per output
        accumulations += s.vectors * s.k * len(s.input_widths) + s.vectors * s.n * s.row_blocks
    if s.input_bias:  # subtract the inputs' bias times the column's weight sum, per output
        accumulations += s.vectors * s.n * s.row_blocks
    if s.input_max_finder:  # the inputs' scales: one comparison per input element
        accumulations += s.vectors * s.k
    input_bits = s.input_bits
    input_buffer_bits = s.vectors * s.k * input_bits * s.column_blocks
    output_buffer_bits = s.vectors * s.n * s.row_blocks * tech.output_bits
    edram_bits = s.vectors * (s.k * input_bits + s.n * tech.output_bits)
    bus_bits = input_buffer_bits + output_buffer_bits
    cells_read = word_line_reads * s.array_columns

    # hardware
    adcs_per_array = -(-s.cols // tech.columns_per_adc)
    converted_per_array = s.cols + (1 if s.unit_columns else 0)
    adcs = arrays * adcs_per_array
    dacs = arrays * s.rows
    imas = -(-arrays // tech.arrays_per_ima)
    tiles = -(-imas // tech.imas_per_tile)
    shift_add_units = -(-adcs // tech.adcs_per_shift_add)

    if tech.array_energy_per_cell is not None:
        array_energy, model = cells_read * tech.array_energy_per_cell, "per-cell"
    else:
        if s.array_power is None:
            raise ValueError(
                f"technology {tech.name!r} prices the arrays by their physics (V^2 G t), but "
                f"the product was run without measuring its array power: estimate with "
                f"mpimpy.cost.estimate(engine, x, mat, ...) or make the engine with "
                f"technology=...")
        array_energy, model = s.array_power * tech.read_time, "physics"
    energy_breakdown = {
        "array": array_energy,
        "dac": word_line_reads * tech.dac_conversion_energy(s.dac_bits),
        "adc": adc_conversions * tech.adc_conversion_energy(s.adc_bits),
        "sample_hold": adc_conversions * tech.sample_hold_energy,
        "shift_add": adc_conversions * tech.shift_add_energy,
        "buffer": input_buffer_bits * tech.input_buffer_energy
        + output_buffer_bits * tech.output_buffer_energy,
        "accumulate": accumulations * tech.accumulate_energy
        + output_buffer_bits * tech.tile_buffer_energy,
        "edram": edram_bits * tech.edram_energy,
        "interconnect": bus_bits * tech.bus_energy + edram_bits * tech.router_energy,
        "other": 0.0,
    }
    area_breakdown = {
        "array": arrays * s.rows * s.array_columns * tech.cell_area,
        "dac": dacs * tech.dac_unit_area(s.dac_bits),
        "adc": adcs * tech.adc_unit_area(s.adc_bits),
        "sample_hold": arrays * converted_per_array * tech.sample_hold_area,
        "shift_add": shift_add_units * tech.shift_add_area,
        "buffer": imas * (tech.input_buffer_area + tech.output_buffer_area),
        "accumulate": tiles * (tech.accumulate_area + tech.tile_buffer_area),
        "edram": tiles * tech.edram_area,
        "interconnect": tiles * (tech.bus_area + tech.router_area),
        "other": tiles * tech.other_tile_area,
    }

    # latency: reads back to back, each cycle as long as the slower of the read and the ADCs
    adc_time = -(-converted_per_array // adcs_per_array) * tech.adc_conversion_time(s.adc_bits)
    cycle = max(tech.read_time, adc_time)
    digital_depth = (2 + math.ceil(math.log2(s.row_blocks)) + (1 if s.removes_bias else 0)
                     ) / tech.digital_clock
    latency = (reads - 1) * cycle + tech.read_time + adc_time + digital_depth if reads else 0.0
    return CostReport(
        technology=tech.name, energy=sum(energy_breakdown.values()), latency=latency,
        area=sum(area_breakdown.values()), macs=s.macs, energy_breakdown=energy_breakdown,
        area_breakdown=area_breakdown, adc_conversions=adc_conversions,
        dac_conversions=word_line_reads, array_reads=reads * arrays,
        sample_holds=adc_conversions, shift_adds=adc_conversions, accumulations=accumulations,
        cells_read=cells_read, cells_written=s.cells_written,
        input_buffer_bits=input_buffer_bits, output_buffer_bits=output_buffer_bits,
        edram_bits=edram_bits, bus_bits=bus_bits, arrays=arrays, adcs=adcs, dacs=dacs,
        imas=imas, tiles=tiles, adc_bits=s.adc_bits, dac_bits=s.dac_bits, cycle_time=cycle,
        array_energy_model=model,
        programming_energy=None if tech.write_energy_per_cell is None
        else s.cells_written * tech.write_energy_per_cell)


def combine(reports: list[CostReport], technology: Technology | str | None = None
            ) -> CostReport:
    """Several products on separate arrays, one after the other (the layers of a network): the
    energies, latencies, areas and counts add up.

    With ``technology`` (the one the reports were priced with) their IMAs are packed into
    whole tiles together instead of each product rounding up to its own tiles, and the
    tile-level area (eDRAM, interconnect, accumulators, other) is that of the packed tiles.
    """
    if not reports:
        raise ValueError("combine needs at least one report")
    names = {r.technology for r in reports}
    if len(names) > 1:
        raise ValueError(f"cannot combine reports of different technologies: {sorted(names)}")
    summed = {}
    for f in dataclasses.fields(CostReport):
        values = [getattr(r, f.name) for r in reports]
        if f.name in ("energy_breakdown", "area_breakdown"):
            summed[f.name] = {c: sum(v.get(c, 0.0) for v in values) for c in COMPONENTS}
        elif f.name == "programming_energy":
            summed[f.name] = None if any(v is None for v in values) else sum(values)
        elif f.name in ("adc_bits", "dac_bits"):
            summed[f.name] = max(values)
        elif f.name == "cycle_time":
            summed[f.name] = max(values)
        elif f.name == "array_energy_model":
            summed[f.name] = "/".join(sorted(set(values)))
        elif f.name == "technology":
            summed[f.name] = values[0]
        else:
            summed[f.name] = sum(values)
    if technology is not None:
        tech = resolve_technology(technology)
        tiles = -(-summed["imas"] // tech.imas_per_tile)
        tile_area = {"accumulate": tech.accumulate_area + tech.tile_buffer_area,
                     "edram": tech.edram_area, "interconnect": tech.bus_area + tech.router_area,
                     "other": tech.other_tile_area}
        summed["tiles"] = tiles
        summed["area_breakdown"].update({k: tiles * v for k, v in tile_area.items()})
        summed["area"] = sum(summed["area_breakdown"].values())
    return CostReport(**summed)


@contextlib.contextmanager
def measuring_power(engine: DPETensor):
    """Within the block, ``engine`` measures the power of every read (``Schedule.array_power``)
    whatever its technology."""
    previous = engine.measure_power
    engine.measure_power = True
    try:
        yield engine
    finally:
        engine.measure_power = previous


def estimate(engine: DPETensor, x: SlicedData, mat: SlicedData,
             technology: Technology | str | dict | Path = "isaac-32nm", **overrides
             ) -> CostReport:
    """Run ``engine(x, mat)`` once and price what it did.

    The product is computed as ``engine(x, mat)`` would compute it (it draws its noise from
    the engine's generator, and programs ``mat`` if the engine has not yet), with the power of
    its reads measured. ``technology``: a preset name (:data:`PRESETS`), a
    :class:`Technology`, a dict of fields or a YAML/JSON file; ``overrides`` change fields,
    e.g. ``columns_per_adc=32`` or ``array_energy_per_cell=None`` (physics).
    """
    tech = resolve_technology(technology, **overrides)
    with measuring_power(engine):
        engine(x, mat)
    return report(engine.last_schedule, tech)


# --------------------------------------------------------------------------------------------
# The reference: ISAAC-CE

#: ISAAC's published figures (Shafiee et al., ISCA 2016, Table I): power (W) and area (mm^2)
#: of each IMA component (by :data:`COMPONENTS` name; ``buffer`` is the input and output
#: registers), of one IMA and of one tile, and the ADCs' share of a tile's power and area.
ISAAC_TABLE_1 = {
    "ima": {"adc": (16e-3, 0.0096), "dac": (4e-3, 0.00017), "array": (2.4e-3, 0.0002),
            "sample_hold": (10e-6, 0.00004), "shift_add": (0.2e-3, 0.00024),
            "buffer": (1.24e-3 + 0.23e-3, 0.0021 + 0.00077)},
    "ima_total": (24.1e-3, 0.0131),
    "tile_total": (330e-3, 0.372),
    "tile_adc_share": (0.58, 0.31),
}


def ima_figures(report: CostReport) -> dict[str, tuple[float, float]]:
    """Power (W) and area (mm^2) of each IMA component of ``report`` and of the IMA in all
    (``"ima_total"``), for a product that fills whole IMAs, per IMA."""
    figures = {c: (report.energy_breakdown[c] / report.latency / report.imas,
                   report.area_breakdown[c] / report.imas) for c in IMA_COMPONENTS}
    figures["ima_total"] = tuple(sum(v[i] for v in figures.values()) for i in range(2))
    return figures


__all__ = [
    "COMPONENTS",
    "ISAAC_TABLE_1",
    "IMA_COMPONENTS",
    "PRESETS",
    "CostReport",
    "Schedule",
    "Technology",
    "combine",
    "estimate",
    "ima_figures",
    "measuring_power",
    "report",
    "resolve_technology",
]

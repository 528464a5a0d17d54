"""Energy, latency and area from the engine's own schedule (``mpimpy.cost``).

The ISAAC figures are Table I of Shafiee et al., ISCA 2016 (per IMA of 8 arrays and per tile of
12 IMAs), set up as ISAAC-CE: 128 x 128 arrays of 2-bit cells, 16-bit weights in eight cells
with a bias of 2**15, 16-bit inputs fed bit by bit through 1-bit DACs, one 8-bit ADC per array,
100 ns reads. Array energies are checked against an independent computation from the programmed
conductances and, with wire resistance, against a plain sparse nodal analysis of each read.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_crossbar_solver import nodal_reference
from torch import nn

from mpimpy import DPETensor, SlicedData, cost
from mpimpy import nn as mnn
from mpimpy.isaac import isaac_workload
from mpimpy.mapping import MAPPINGS

PHYSICS = {"preset": "isaac-32nm", "array_energy_per_cell": None}

# ISAAC Table I, written out here (not read from the package): (power W, area mm^2) of each
# IMA component, the IMA and the tile, and the ADCs' share of the tile's power and area
PUBLISHED_IMA = {"adc": (16e-3, 0.0096), "dac": (4e-3, 0.00017), "array": (2.4e-3, 0.0002),
                 "sample_hold": (10e-6, 0.00004), "shift_add": (0.2e-3, 0.00024),
                 "buffer": (1.24e-3 + 0.23e-3, 0.0021 + 0.00077), "ima_total": (24.1e-3, 0.0131)}
PUBLISHED_TILE, PUBLISHED_TILE_ADC_SHARE = (330e-3, 0.372), (0.58, 0.31)

@pytest.mark.parametrize("unit_column", [False, True])
def test_one_ima_reproduces_isaac_table_1(unit_column):
    """A 128 x 128 16-bit layer fills one IMA: its power and area per component, and in all,
    within 10 % of ISAAC's Table I; one 8-bit conversion per 16-bit MAC (plus the unit column's
    1/128 when it is converted)."""
    report = cost.estimate(*isaac_workload(128, 128, unit_column=unit_column))
    assert (report.arrays, report.adcs, report.dacs, report.imas) == (8, 8, 1024, 1)
    assert report.conversions_per_mac == (1 + 1 / 128 if unit_column else 1.0)
    assert report.adc_conversions == report.macs * (129 if unit_column else 128) // 128
    figures = cost.ima_figures(report)
    assert set(figures) == set(PUBLISHED_IMA)
    for component, (power, area) in figures.items():
        assert power == pytest.approx(PUBLISHED_IMA[component][0], rel=0.1), component
        assert area == pytest.approx(PUBLISHED_IMA[component][1], rel=0.1), component
    # 16 reads of 100 ns per 16-bit vector: 10.24 GMAC/s per IMA
    assert report.throughput == pytest.approx(128 * 128 / 1.6e-6, rel=0.02)


def test_one_tile_reproduces_isaac_power_area_and_adc_shares():
    """A 384 x 512 layer fills the 12 IMAs of one tile (3 row-blocks x 4 column blocks)."""
    report = cost.estimate(*isaac_workload(384, 512))
    assert (report.imas, report.tiles) == (12, 1)
    power, area = PUBLISHED_TILE
    assert report.power == pytest.approx(power, rel=0.1)
    assert report.area == pytest.approx(area, rel=0.1)
    adc_power_share, adc_area_share = PUBLISHED_TILE_ADC_SHARE
    assert report.energy_breakdown["adc"] / report.energy == pytest.approx(adc_power_share,
                                                                           rel=0.1)
    assert report.area_breakdown["adc"] / report.area == pytest.approx(adc_area_share, rel=0.1)


def small_product(mapping="offset", vectors=6, k=20, n=9, tile=(8, 4), widths=(1, 1, 2, 4),
                  seed=0, x_data=None, **engine_kwargs):
    settings = dict(var=0.1, vnoise=0.0, mapping=mapping, seed=seed)
    settings.update(engine_kwargs)
    engine = DPETensor(**settings)
    gen = torch.Generator().manual_seed(seed)
    if x_data is None:
        x_data = torch.randn(vectors, k, generator=gen, dtype=torch.float64)
    w_widths = list(widths) if MAPPINGS[mapping].sign_slice else [4, 4]
    x = SlicedData(list(widths), paral_size=tile, quant_gran="per-matrix").slice_data_imp(
        engine, x_data, transpose=True)
    mat = SlicedData(w_widths, paral_size=tile, is_weight=True).slice_data_imp(
        engine, torch.randn(k, n, generator=gen, dtype=torch.float64))
    return engine, x, mat


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_array_energy_is_sum_of_v_squared_g_t(mapping):
    """Physics: every read dissipates sum V^2 G over every cell of every array it drives
    (reference columns and G- arrays included), computed here cell by cell from the programmed
    conductances and the DAC codes (ideal DAC: code = slice value)."""
    engine, x, mat = small_product(mapping, rdac=None)
    report = cost.estimate(engine, x, mat, PHYSICS)
    arrays = engine.programmed(mat)
    cfg = engine.config
    k, tile_rows = mat.data.shape[0], mat.paral_size.rows
    cells = [arrays.positive] + ([arrays.negative] if arrays.negative is not None else [])
    # per word line k: the conductance of every cell on it, over all arrays of its row-block
    per_line = sum(g.sum(dim=(0, 2, 4)) for g in cells).reshape(-1)[:k]
    if MAPPINGS[mapping].reference_column:
        per_line = per_line + cfg.LGS * arrays.positive.shape[0] * arrays.positive.shape[2]
    energy = 0.0
    for value in x.q.reshape(-1, k).tolist():  # each vector
        for s, width in enumerate(x.slice_method):  # each input slice is one read
            shift = sum(x.slice_method[s + 1:])
            for line in range(k):
                code = (value[line] % 2 ** x.bits) >> shift & (2**width - 1)
                volts = cfg.vread * code / (2**width - 1)
                energy += volts**2 * float(per_line[line]) * 100e-9
    assert report.array_energy_model == "physics"
    assert report.energy_breakdown["array"] == pytest.approx(energy, rel=1e-6)
    assert tile_rows == 8


def test_wire_resistance_array_energy_matches_a_nodal_analysis():
    """With resistive wires a read dissipates V @ A @ V: the power of the whole circuit, cells
    and wires, checked read by read against a sparse nodal analysis (sum of g * drop^2 over
    every branch). The series wires lower the power the drivers deliver at the same voltages."""
    r = 50.0  # strong drop on a small array, so the difference is large
    engine, x, mat = small_product("offset", vectors=3, k=8, n=5, tile=(8, 8),
                                   widths=(1, 3), rdac=None, wire_resistance=r, HGS=1e-3,
                                   LGS=1e-5)
    report = cost.estimate(engine, x, mat, PHYSICS)
    ideal_engine, _, _ = small_product("offset", vectors=3, k=8, n=5, tile=(8, 8),
                                       widths=(1, 3), rdac=None, HGS=1e-3, LGS=1e-5)
    ideal = cost.estimate(ideal_engine, x, mat, PHYSICS)
    arrays = engine.programmed(mat)
    total = 0.0
    for a in range(arrays.positive.shape[0]):  # each slice's array with its reference column
        G = torch.cat([arrays.positive[a, 0, 0], torch.full((8, 1), 1e-5, dtype=torch.float64)],
                      dim=1).numpy()
        for value in x.q.reshape(-1, 8).tolist():
            for s, width in enumerate(x.slice_method):
                shift = sum(x.slice_method[s + 1:])
                V = np.array([engine.vread * ((v % 2**x.bits) >> shift & (2**width - 1))
                              / (2**width - 1) for v in value])
                _, w, b = nodal_reference(V, G, r, r)
                w, b = w[0], b[0]
                power = float((G * (w - b) ** 2).sum())  # the cells
                power += float(((V - w[:, 0]) ** 2).sum() + ((w[:, 1:] - w[:, :-1]) ** 2).sum()) / r
                power += float(((b[1:] - b[:-1]) ** 2).sum() + (b[-1] ** 2).sum()) / r
                total += power * 100e-9
    assert report.energy_breakdown["array"] == pytest.approx(total, rel=1e-6)
    assert report.energy_breakdown["array"] < ideal.energy_breakdown["array"]


@pytest.mark.parametrize("technology", ["isaac-32nm", PHYSICS])
def test_energy_is_linear_in_the_number_of_vectors(technology):
    gen = torch.Generator().manual_seed(5)
    x_data = torch.randn(7, 20, generator=gen, dtype=torch.float64)
    once = cost.estimate(*small_product(x_data=x_data), technology)
    twice = cost.estimate(*small_product(x_data=torch.cat([x_data, x_data])), technology)
    assert twice.energy == pytest.approx(2 * once.energy, rel=1e-9)
    for component in cost.COMPONENTS:
        assert twice.energy_breakdown[component] == pytest.approx(
            2 * once.energy_breakdown[component], rel=1e-9, abs=1e-30)
    assert twice.macs == 2 * once.macs and twice.area == once.area


def test_all_zero_inputs_cost_no_array_energy():
    report = cost.estimate(*small_product(x_data=torch.zeros(4, 20, dtype=torch.float64)),
                           PHYSICS)
    assert report.energy_breakdown["array"] == 0.0
    assert report.energy_breakdown["adc"] > 0  # the ADCs still convert every column


def test_components_add_up_to_the_totals():
    for mapping in MAPPINGS:
        report = cost.estimate(*small_product(mapping), PHYSICS)
        assert set(report.energy_breakdown) == set(cost.COMPONENTS)
        assert sum(report.energy_breakdown.values()) == pytest.approx(report.energy, rel=1e-12)
        assert sum(report.area_breakdown.values()) == pytest.approx(report.area, rel=1e-12)
        assert report.energy_per_mac == report.energy / report.macs
        assert report.tops_per_watt == pytest.approx(2 * report.macs / report.energy / 1e12)
        flat = report.as_dict()
        assert flat["energy_J"] == report.energy and flat["energy_per_mac_pJ"] > 0
        assert all(math.isfinite(v) for v in flat.values() if isinstance(v, float))


def test_fewer_columns_per_adc_lower_adc_latency_and_raise_adc_area():
    engine, x, mat = isaac_workload(128, 128, vectors=8, unit_column=False)
    shared = cost.estimate(engine, x, mat, "isaac-32nm")
    tech = cost.Technology.preset("isaac-32nm")
    for columns in (64, 16, 1):
        own = cost.estimate(engine, x, mat, "isaac-32nm", columns_per_adc=columns)
        adcs_per_array = 128 // columns
        assert own.adcs == 8 * adcs_per_array
        assert own.area_breakdown["adc"] == pytest.approx(shared.area_breakdown["adc"]
                                                          * adcs_per_array)
        adc_time = columns * tech.adc_conversion_time(8)
        assert own.cycle_time == pytest.approx(max(tech.read_time, adc_time))
        assert own.latency < shared.latency or adc_time >= tech.read_time
        # the same conversions, the same energy
        assert own.adc_conversions == shared.adc_conversions
    # an ADC twice as slow (as many columns, more bits) makes the ADC the bottleneck
    slow = cost.estimate(engine, x, mat, "isaac-32nm", adc_sample_rate=0.64e9)
    assert slow.cycle_time == pytest.approx(200e-9) and slow.latency > shared.latency


def test_converter_resolution_scales_energy_and_area():
    tech = cost.Technology.preset("isaac-32nm")
    assert tech.adc_conversion_energy(8) == pytest.approx(tech.adc_energy)
    # the fitted split reproduces the scaled 4- and 10-bit ADC figures Accelergy ships for
    # ISAAC (0.79 / 2.38 pJ, 361 / 3002 um^2, at 1.2 GS/s against 1.67 pJ at 8 bits)
    assert tech.adc_conversion_energy(4) / tech.adc_energy == pytest.approx(0.79 / 1.667,
                                                                            rel=0.02)
    assert tech.adc_conversion_energy(10) / tech.adc_energy == pytest.approx(2.379 / 1.667,
                                                                             rel=0.02)
    assert tech.adc_unit_area(4) * 1e6 == pytest.approx(361, rel=0.02)
    assert tech.adc_unit_area(10) * 1e6 == pytest.approx(3002, rel=0.02)
    assert tech.adc_conversion_time(4) == pytest.approx(tech.adc_conversion_time(8) / 2)
    assert tech.dac_conversion_energy(4) == pytest.approx(8 * tech.dac_energy)
    # a product with a 4-bit DAC and a 6-bit ADC is costed at those resolutions
    engine, x, mat = small_product(rdac=16, radc=64)
    report = cost.estimate(engine, x, mat)
    assert (report.dac_bits, report.adc_bits) == (4, 6)
    assert report.energy_breakdown["adc"] == pytest.approx(
        report.adc_conversions * tech.adc_conversion_energy(6))


def test_event_counts_follow_the_schedule():
    """Counts for a product of known shape: (M, K) @ (K, N) on (rows, cols) arrays."""
    m, k, n, rows, cols, widths = 6, 20, 9, 8, 4, (1, 1, 2, 4)
    tk, tn = math.ceil(k / rows), math.ceil(n / cols)
    for mapping, arrays_per_group in (("offset", 4), ("diffpair", 3), ("bias", 2)):
        engine, x, mat = small_product(mapping, m, k, n, (rows, cols), widths)
        report = cost.estimate(engine, x, mat)
        reads = m * len(widths)
        assert report.array_reads == reads * tk * tn * arrays_per_group
        assert report.dac_conversions == reads * k * tn * arrays_per_group
        assert report.adc_conversions == reads * tk * arrays_per_group * n
        assert report.macs == m * k * n
        assert report.cells_written == tk * tn * arrays_per_group * rows * cols * (
            2 if mapping == "diffpair" else 1)
        # the weights are held now: the next product writes nothing
        assert cost.estimate(engine, x, mat).cells_written == 0


def test_engine_with_a_technology_keeps_the_last_cost():
    engine, x, mat = small_product(technology="isaac-32nm")
    y = engine(x, mat)
    first = engine.last_cost
    assert isinstance(first, cost.CostReport) and first.macs == y.numel() * 20
    engine2, x2, mat2 = small_product()
    assert engine2.last_cost is None
    assert cost.estimate(engine2, x2, mat2).energy == pytest.approx(first.energy)
    physical = small_product(technology=PHYSICS)[0]
    assert physical.technology.array_energy_per_cell is None


def test_technology_files_round_trip(tmp_path):
    tech = cost.Technology.preset("isaac-32nm", columns_per_adc=32, name="isaac-mux32")
    for suffix in (".yaml", ".json"):
        path = tech.to_file(tmp_path / f"tech{suffix}")
        assert cost.Technology.from_file(path) == tech
        assert cost.resolve_technology(str(path)) == tech
    (tmp_path / "partial.json").write_text(json.dumps({"preset": "isaac-32nm",
                                                       "adc_energy": 1e-12}))
    partial = cost.resolve_technology(tmp_path / "partial.json")
    assert partial.adc_energy == 1e-12 and partial.dac_energy == tech.dac_energy


@pytest.mark.parametrize("overrides, match", [
    (dict(adc_energy=-1e-12), r"adc_energy .* must be >= 0"),
    (dict(read_time=0.0), r"read_time .* must be > 0"),
    (dict(dac_area=float("nan")), r"dac_area .* must be finite"),
    (dict(edram_energy=float("inf")), r"edram_energy .* must be finite"),
    (dict(columns_per_adc=0), r"columns_per_adc .* integer >= 1"),
    (dict(columns_per_adc=2.5), r"columns_per_adc .* integer >= 1"),
    (dict(adc_area_exp_fraction=1.5), r"adc_area_exp_fraction .* in \[0, 1\]"),
    (dict(colums_per_adc=4), r"unknown Technology fields \['colums_per_adc'\]"),
])
def test_bad_technologies_are_refused_naming_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        cost.Technology.preset("isaac-32nm", **overrides)


def test_unknown_presets_list_the_presets():
    with pytest.raises(ValueError, match=r"unknown technology preset 'isaac'.*isaac-32nm"):
        cost.resolve_technology("isaac")
    with pytest.raises(ValueError, match="unknown technology preset"):
        DPETensor(technology="neurosim")
    with pytest.raises(TypeError, match="technology must be"):
        cost.resolve_technology(42)


def test_physics_needs_the_measured_power():
    engine, x, mat = small_product()
    engine(x, mat)  # not measured
    with pytest.raises(ValueError, match="without measuring its array power"):
        cost.report(engine.last_schedule, PHYSICS)
    assert cost.report(engine.last_schedule, "isaac-32nm").energy > 0  # per-cell needs none


def test_network_cost_report_adds_up_its_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 5))
    engine = DPETensor(var=0.05, radc=2**8, adc_range="calibrated", seed=0)
    hw = mnn.convert(model, engine, seed=0)
    images = torch.randn(10, 1, 6, 6)
    network = mnn.cost_report(hw, images, PHYSICS)
    assert list(network.layers["layer"]) == ["0", "3"]
    assert network.layers["energy_J"].sum() == pytest.approx(network.total.energy, rel=1e-12)
    assert network.layers["macs"].tolist() == [10 * 36 * 9 * 4, 10 * 144 * 5]
    assert network.energy_per_inference == pytest.approx(network.total.energy / 10)
    assert network.as_dict()["energy_per_inference_J"] == network.energy_per_inference
    # batches run on the same arrays one after the other: the same events, the same energy
    batched = mnn.cost_report(hw, images, PHYSICS, batch_size=3)
    assert batched.total.macs == network.total.macs
    assert batched.total.adc_conversions == network.total.adc_conversions
    # calibrated ranges differ per batch, the energy of the arrays does not depend on them
    assert batched.total.energy_breakdown["array"] == pytest.approx(
        network.total.energy_breakdown["array"], rel=1e-9)
    assert hw.training  # the model's mode is restored
    with pytest.raises(ValueError, match="no memristive layers"):
        mnn.cost_report(model, images)

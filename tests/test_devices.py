"""Device models over time: lognormal (today's), pcm, rram, measured; time; drift compensation.

Statistics are checked against the models' published equations, written out here again (not
imported from the code under test), within 5 standard errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from mpimpy import DPETensor, SlicedData
from mpimpy import nn as mnn
from mpimpy.config import CrossbarConfig
from mpimpy.crossbar import read_matrix, read_power
from mpimpy.devices import read_at
from mpimpy.devices.models import PCM, RRAM, Measured, resolve_device_model
from mpimpy.devices.tables import EXAMPLE_TABLE, load_level_table
from mpimpy.mapping import MAPPINGS
from mpimpy.tracking import simulation_params

YEAR = 365 * 86400.0
TIMES = [0.0, 1.0, 3600.0, 86400.0, YEAR, 10 * YEAR]
WAN = dict(LGS=1e-6, HGS=4e-5, g_level=16)  # the example table's hardware


def operands(engine, m=32, k=128, n=48, widths=(1, 1, 2, 4), seed=0, tile=(64, 64),
             x_widths=None):
    g = torch.Generator().manual_seed(seed)
    x_data = torch.randn(m, k, generator=g, dtype=torch.float64)
    w_data = torch.randn(k, n, generator=g, dtype=torch.float64)
    x = SlicedData(list(x_widths or widths), paral_size=tile)
    mat = SlicedData(list(widths), paral_size=tile, is_weight=True)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, w_data)
    return x, mat


def level_cells(level: int, n: int) -> torch.Tensor:
    return torch.full((n,), float(level), dtype=torch.float64)


def within(sample: torch.Tensor, expected_mean: float, expected_sd: float, sigmas: float = 5):
    """Sample mean and sd agree with the expectation within ``sigmas`` standard errors."""
    x = sample.double()
    n = x.numel()
    mean, sd = float(x.mean()), float(x.std())
    m4 = float(((x - mean) ** 4).mean())
    se_mean = sd / math.sqrt(n)
    se_sd = math.sqrt(max(m4 - sd**4, 0.0) / (4 * sd**2 * n)) if sd > 0 else 0.0
    assert abs(mean - expected_mean) <= sigmas * se_mean + 1e-15, (mean, expected_mean, se_mean)
    assert abs(sd - expected_sd) <= sigmas * se_sd + 1e-15, (sd, expected_sd, se_sd)


# ---------------------------------------------------------------------------------------------
# lognormal: today's model, bit for bit, at any time


def test_lognormal_programs_todays_conductances_bit_for_bit():
    """The documented draws of the original model: a lognormal factor per cell, then the
    stuck-at draw, positive arrays first, from the engine's generator."""
    var, ratio = 0.1, 0.05
    nominal = DPETensor(var=0.0, seed=3)
    _, mat = operands(nominal, k=64, n=64)
    levels_g = nominal.program(mat).positive  # LGS + level * step, no noise
    engine = DPETensor(var=var, stuck_fault_ratio=ratio, stuck_fault_value=1, seed=3,
                       t_inference=10 * YEAR)
    arrays = engine.program(mat)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(levels_g.shape, generator=generator, dtype=torch.float64)
    stuck = torch.rand(levels_g.shape, generator=generator, dtype=torch.float64) < ratio
    expected = torch.where(stuck, torch.full_like(levels_g, engine.config.HGS),
                           levels_g * torch.exp(noise * var))
    assert torch.equal(arrays.positive, expected)
    assert arrays.device_state is None and arrays.reference is None
    assert read_at(arrays, engine.config, 10 * YEAR) is arrays


@pytest.mark.parametrize("settings", [
    dict(), dict(mapping="diffpair", read_noise=0.02, stuck_fault_ratio=0.01),
    dict(mapping="bias", unit_column=True, adc_range="calibrated"),
    dict(wire_resistance=2.0, drift_compensation="global")])
def test_lognormal_results_do_not_depend_on_time(settings):
    results = []
    for t in TIMES:
        engine = DPETensor(seed=7, t_inference=t, **settings)
        x, mat = operands(engine)
        results.append((engine(x, mat), engine(x, mat), engine.effective_weights(mat)))
    default = DPETensor(seed=7, **settings)  # no device settings at all: today's engine
    x, mat = operands(default)
    reference = (default(x, mat), default(x, mat), default.effective_weights(mat))
    for result in results:
        assert all(torch.equal(a, b) for a, b in zip(result, reference, strict=True))
    # moving the clock of one engine between products changes nothing either
    moving = DPETensor(seed=7, **settings)
    x, mat = operands(moving)
    first = moving.at_time(YEAR)(x, mat)
    assert torch.equal(first, reference[0])
    assert torch.equal(moving.at_time(0)(x, mat), reference[1])


# ---------------------------------------------------------------------------------------------
# time: bit-identical reads, never re-programming

TIMED_MODELS = [("pcm", {}), ({"name": "rram", "relax_shift": -0.02}, {}),
                ({"name": "measured", "extrapolate": True}, WAN)]


@pytest.mark.parametrize("model, hardware", TIMED_MODELS)
@pytest.mark.parametrize("mapping", ["offset", "diffpair"])
def test_reading_at_a_time_is_reproducible_and_never_reprograms(model, hardware, mapping):
    def engine_at(t):
        return DPETensor(device_model=model, mapping=mapping, vnoise=0.0, seed=11,
                         stuck_fault_ratio=0.02, t_inference=t, **hardware)

    engine = engine_at(0.0)
    x, mat = operands(engine)
    y0 = engine(x, mat)
    arrays = engine.programmed(mat)
    programmed = [t.clone() for t in (arrays.positive, arrays.negative, arrays.reference)
                  if t is not None]
    state = engine.generator.get_state()
    y_day = engine.at_time(86400)(x, mat)
    y_year = engine.at_time(YEAR)(x, mat)
    assert not torch.equal(y_day, y0) and not torch.equal(y_year, y_day)
    assert torch.equal(engine.generator.get_state(), state)  # reads drew nothing from it
    assert engine.programmed(mat) is arrays  # nothing programmed again
    assert all(torch.equal(a, b) for a, b in zip(
        programmed, [t for t in (arrays.positive, arrays.negative, arrays.reference)
                     if t is not None], strict=True))
    assert torch.equal(engine.at_time(86400)(x, mat), y_day)  # back to one day: the same
    # a fresh engine with the same seed read straight at one year: the same, whatever came first
    fresh = engine_at(YEAR)
    assert torch.equal(fresh(*operands(fresh)), y_year)
    # stuck cells hold their value at every time
    stuck = arrays.device_state.cells["positive"]["stuck"]
    assert stuck.any()
    assert torch.equal(engine.read_arrays(mat).positive[stuck], arrays.positive[stuck])


def test_time_validation_and_clear_errors():
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="t_inference"):
            DPETensor(t_inference=bad)
        with pytest.raises(ValueError, match="t_inference"):
            DPETensor().at_time(bad)
    with pytest.raises(TypeError, match="t_inference"):
        DPETensor().at_time("1 day")
    with pytest.raises(ValueError, match=r"device_model must be one of \['lognormal', "
                                         r"'measured', 'pcm', 'rram'\], got 'reram'"):
        DPETensor(device_model="reram")
    with pytest.raises(ValueError, match="'pcm' has no parameter 'drift'.*drift_scale"):
        DPETensor(device_model={"name": "pcm", "drift": 2})
    with pytest.raises(ValueError, match="a dict needs a 'name'"):
        DPETensor(device_model={"t0": 20})
    with pytest.raises(TypeError, match="device_model must be a name"):
        DPETensor(device_model=3)
    with pytest.raises(ValueError, match="var=0.05 is the lognormal model's variation"):
        DPETensor(device_model="pcm", var=0.05)
    with pytest.raises(ValueError, match="drift_compensation must be one of"):
        DPETensor(drift_compensation="per-column")
    with pytest.raises(ValueError, match="pcm t0"):
        PCM(t0=0)
    with pytest.raises(ValueError, match="rram relax_sigma"):
        RRAM(relax_sigma=-0.1)
    with pytest.raises(ValueError, match="rram relax_shift"):
        RRAM(relax_shift=-1.0)
    assert DPETensor().config.var == 0.05 and DPETensor(device_model="pcm").config.var == 0.0
    assert DPETensor(device_model="rram", var=0).config.device_model == RRAM()


def test_device_model_settings_round_trip_and_logging():
    model = PCM(drift_scale=2.0)
    cfg = CrossbarConfig(device_model=model.as_dict(), drift_compensation="global")
    assert cfg.device_model == model and CrossbarConfig(**cfg.as_dict()) == cfg
    assert str(model) == "pcm(drift_scale=2.0)" and str(PCM()) == "pcm"
    assert resolve_device_model("measured") == Measured()
    engine = DPETensor(device_model=model, t_inference=3600, seed=0)
    x, mat = operands(engine)
    params = simulation_params(engine, x, mat)
    assert params["device_model"] == "pcm" and params["device_model.drift_scale"] == 2.0
    assert params["device_model.t0"] == 20.0 and params["t_inference"] == 3600.0
    assert params["drift_compensation"] == "none"
    measured = Measured().log_params()
    assert measured["device_model.levels"] == 16 and len(measured["device_model.sha256"]) == 64
    assert measured["device_model.times_s"] == [1.0, 86400.0, 172800.0]


# ---------------------------------------------------------------------------------------------
# pcm: aihwkit's PCMLikeNoiseModel equations, written out again here

HGS, LGS = 1e-5, 1e-7


def published_prog_sigma(g_target):
    """sigma_prog (S) = (0.26348 + 1.9650 r - 1.1731 r^2) uS at g_max = 25 uS, scaled to g_max."""
    r = g_target / HGS
    return (0.26348 + 1.9650 * r - 1.1731 * r**2) * HGS / 25.0


def published_nu(g_target):
    log_r = math.log(max(g_target / HGS, 1e-7))
    mean = min(max(-0.0155 * log_r + 0.0244, 0.049), 0.1)
    spread = min(max(-0.0125 * log_r - 0.0059, 0.008), 0.045)
    return mean, spread


def published_q(g_prog):
    return np.minimum(0.0088 / np.maximum((np.abs(g_prog) / HGS) ** 0.65, 1e-3), 0.2)


def test_pcm_hand_computed_values_of_the_published_formula():
    """Numbers worked out by hand from the published formulas (Nandakumar et al. 2019 as
    implemented in aihwkit): the model's helpers must reproduce them."""
    cfg = CrossbarConfig(device_model="pcm")
    model = cfg.device_model
    g = torch.tensor([HGS, LGS], dtype=torch.float64)
    # sigma_prog at g_max: (0.26348 + 1.9650 - 1.1731) / 25 = 1.05538 / 25 = 4.22152 % of g_max
    assert model.programming_sigma(g, cfg)[0].item() == pytest.approx(0.0422152 * HGS, rel=1e-9)
    mean, spread = model.drift_statistics(g, cfg)
    # r = 1: mean 0.0244 clamped up to 0.049, spread -0.0059 clamped up to 0.008
    assert mean[0].item() == pytest.approx(0.049) and spread[0].item() == pytest.approx(0.008)
    # r = 0.01: mean 0.0244 + 0.0155 ln 100 = 0.0957800, spread 0.051665 clamped to 0.045
    assert mean[1].item() == pytest.approx(0.0244 + 0.0155 * math.log(100), rel=1e-12)
    assert mean[1].item() == pytest.approx(0.09578, abs=1e-5)
    assert spread[1].item() == pytest.approx(0.045)
    # 1/f noise at g_max read at t = 0 (T = t0 = 20 s): 0.0088 sqrt(ln(20 / 5e-7)) = 3.6818 %
    sigma = model.read_noise_sigma(torch.tensor([HGS], dtype=torch.float64), 0.0, cfg)
    assert sigma.item() == pytest.approx(0.0088 * math.sqrt(math.log(4e7)), rel=1e-6)
    assert sigma.item() == pytest.approx(0.036818, abs=2e-6)
    # mean drift of a g_max cell after ten years: E[(T/t0)^-|N(0.049, 0.008)|] = 0.4479
    engine = DPETensor(device_model={"name": "pcm", "prog_noise_scale": 0.0,
                                     "read_noise_scale": 0.0}, seed=1)
    g_prog, state = engine.config.device_model.program(level_cells(15, 400_000), engine.config,
                                                       torch.Generator().manual_seed(1))
    aged = engine.config.device_model.read(g_prog, state, 10 * YEAR, engine.config, None)
    assert float(aged.mean() / HGS) == pytest.approx(0.4479, abs=0.0005)


@pytest.mark.parametrize("level", [0, 1, 3, 8, 15])
def test_pcm_drift_exponent_is_the_published_folded_normal(level):
    cfg = CrossbarConfig(device_model="pcm")
    _, state = cfg.device_model.program(level_cells(level, 200_000), cfg,
                                        torch.Generator().manual_seed(level))
    nu = state["nu"].numpy()
    mu, s = published_nu(LGS + level * cfg.level_step)
    # |N(mu, s)|: its mean and sd, and the whole distribution (Kolmogorov-Smirnov)
    folded = stats.foldnorm(mu / s, scale=s)
    within(torch.from_numpy(nu), folded.mean(), folded.std())
    assert stats.kstest(nu, folded.cdf).pvalue > 1e-4
    assert (nu >= 0).all()


def pcm_moments(level: int, t: float, nodes: int = 80):
    """E[G(t)] and sd[G(t)] from the published equations by Gauss-Hermite quadrature over the
    programming noise and the drift exponent (independent normals), the read noise zero-mean
    with relative sd Q_s(G_prog) sqrt(ln((T + t_read) / (2 t_read)))."""
    step = (HGS - LGS) / 15
    g_target = LGS + level * step
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    g_prog = g_target + published_prog_sigma(g_target) * z  # nodes over the programming noise
    mu, s = published_nu(g_target)
    big_t = t + 20.0
    nu = np.abs(mu + s * z)
    drift = (big_t / 20.0) ** -nu
    read = published_q(g_prog) * math.sqrt(math.log((big_t + 250e-9) / 500e-9))
    mean = (w @ g_prog) * (w @ drift)
    second = (w @ (g_prog**2 * (1 + read**2))) * (w @ drift**2)
    return mean, math.sqrt(second - mean**2)


@pytest.mark.parametrize("t", [0.0, 3600.0, YEAR, 10 * YEAR])
@pytest.mark.parametrize("level", [1, 7, 15])
def test_pcm_conductance_statistics_over_time_match_the_equations(level, t):
    engine = DPETensor(device_model="pcm", seed=level)
    model, cfg = engine.config.device_model, engine.config
    g_prog, state = model.program(level_cells(level, 200_000), cfg,
                                  torch.Generator().manual_seed(100 + level))
    g = model.read(g_prog, state, t, cfg, torch.Generator().manual_seed(200 + level))
    mean, sd = pcm_moments(level, t)
    within(g, mean, sd)


# ---------------------------------------------------------------------------------------------
# rram


@pytest.mark.parametrize("t", [0.0, 10.0, 86400.0, 10 * YEAR])
def test_rram_statistics_follow_the_log_time_law(t):
    model = RRAM(prog_sigma=0.02, relax_sigma=0.015, relax_shift=-0.01, t0=1.0)
    cfg = CrossbarConfig(device_model=model)
    level = 10
    g_prog, state = model.program(level_cells(level, 200_000), cfg,
                                  torch.Generator().manual_seed(0))
    g = model.read(g_prog, state, t, cfg, torch.Generator().manual_seed(1))
    decades = math.log10(1 + t)
    target = LGS + level * cfg.level_step
    mean = target * (1 - 0.01 * decades)
    sd = math.hypot(0.02 * HGS * (1 - 0.01 * decades), 0.015 * HGS * decades)
    within(g, mean, sd)


# ---------------------------------------------------------------------------------------------
# measured tables


def write_table(path: Path, rows: list[str], header: str = "level,time_s,mean_S,sd_S") -> Path:
    path.write_text("# a test table\n" + header + "\n" + "\n".join(rows) + "\n")
    return path


def drifting_table(path: Path, levels: int = 4) -> Path:
    """Evenly spaced levels 1..4 uS losing 5 % per decade, sd growing from 1 % to 4 %."""
    rows = []
    for decade, t in enumerate((1.0, 1e2, 1e4)):
        for level in range(levels):
            mean = (1 + level) * 1e-6 * (1 - 0.05 * 2 * decade)
            sd = (0.01 + 0.015 * decade) * (1 + level) * 1e-6
            rows.append(f"{level},{t:g},{mean:.6e},{sd:.6e}")
    return write_table(path, rows)


def test_example_table_is_the_published_fit():
    """The shipped table recomputed from the fits it cites (aihwkit's ReRamWan2022NoiseModel
    polynomials, uS, for Wan et al. 2022), at 16 targets from 1 to 40 uS."""
    coefficients = {1.0: [0.348, 16.030, -43.853, 45.393, -16.815],
                    86400.0: [0.701, 22.086, -50.773, 47.095, -16.458],
                    172800.0: [0.782, 20.274, -43.507, 37.062, -11.934]}
    table = load_level_table(EXAMPLE_TABLE)
    assert table.times == tuple(coefficients) and table.levels == 16
    targets = 1.0 + np.arange(16) * 39.0 / 15
    for i, c in enumerate(coefficients.values()):
        r = targets / 40.0
        sd = sum(ci * r**k for k, ci in enumerate(c))
        np.testing.assert_allclose(table.sd[i], sd * 1e-6, rtol=1e-4)
        np.testing.assert_allclose(table.mean[i], targets * 1e-6, rtol=1e-4)
    assert Measured().hardware() == {"LGS": 1e-6, "HGS": 4e-5, "g_level": 16}


def test_measured_programming_reproduces_the_table(tmp_path):
    path = drifting_table(tmp_path / "drift.csv")
    model = Measured(path)
    cfg = CrossbarConfig(device_model=model, **model.hardware())
    for level in range(4):
        g, _ = model.program(level_cells(level, 100_000), cfg, torch.Generator().manual_seed(level))
        within(g, (1 + level) * 1e-6, 0.01 * (1 + level) * 1e-6)
    # the example table, levels far enough from 0 S that the clamp at 0 does not matter
    example = Measured()
    cfg = CrossbarConfig(device_model=example, **example.hardware())
    for level in (3, 9, 15):
        g, _ = example.program(level_cells(level, 100_000), cfg,
                               torch.Generator().manual_seed(level))
        within(g, example.table.mean[0, level], example.table.sd[0, level])


def test_measured_reads_follow_the_table_between_its_times(tmp_path):
    """Between two table times mean and sd are linear in log t; before the first time the
    first time's; after the last an error unless extrapolating (the last trend, in log t)."""
    path = drifting_table(tmp_path / "drift.csv")
    model = Measured(path)
    cfg = CrossbarConfig(device_model=model, **model.hardware())
    table = model.table
    level = 3
    g_prog, state = model.program(level_cells(level, 200_000), cfg,
                                  torch.Generator().manual_seed(0))
    cases = {0.0: (table.mean[0], table.sd[0]), 1.0: (table.mean[0], table.sd[0]),
             100.0: (table.mean[1], table.sd[1]),
             10.0: ((table.mean[0] + table.mean[1]) / 2, (table.sd[0] + table.sd[1]) / 2),
             1e3: ((table.mean[1] + table.mean[2]) / 2, (table.sd[1] + table.sd[2]) / 2)}
    for t, (mean, sd) in cases.items():
        np.testing.assert_allclose(table.at(t)[0], mean)
        np.testing.assert_allclose(table.at(t)[1], sd)
        g = model.read(g_prog, state, t, cfg, torch.Generator().manual_seed(int(t)))
        within(g, mean[level], sd[level])
    # a quarter of the way (in log t) from 1 s to 100 s: 10**0.5 s
    np.testing.assert_allclose(table.at(10**0.5)[0], 0.75 * table.mean[0] + 0.25 * table.mean[1])
    with pytest.raises(ValueError, match=r"drift.csv: t = 1e\+06 s is after the table's last "
                                         r"time 10000 s"):
        model.read(g_prog, state, 1e6, cfg, None)
    extrapolating = Measured(path, extrapolate=True)
    np.testing.assert_allclose(extrapolating.table.at(1e6, True)[0],
                               2 * table.mean[2] - table.mean[1])
    # each cell keeps its programming deviation: corr(G_prog, G(t)) = sd_0 / sd_t
    g = model.read(g_prog, state, 1e4, cfg, torch.Generator().manual_seed(5))
    corr = float(torch.corrcoef(torch.stack([g_prog, g]))[0, 1])
    assert corr == pytest.approx(table.sd[0, level] / table.sd[2, level], abs=0.01)


BAD_TABLES = [
    (["0,1,1e-6,1e-8", "2,1,3e-6,1e-8"], "rows 3-4: level 1 is missing at time_s 1"),
    (["0,10,1e-6,1e-8", "1,10,2e-6,1e-8", "0,1,1e-6,1e-8", "1,1,2e-6,1e-8"],
     "row 5: time_s 1 comes after 10: the rows must be sorted by time_s"),
    (["0,1,1e-6,1e-8", "1,1,-2e-6,1e-8"], "row 4: mean_S must be a conductance > 0 S"),
    (["0,1,1e-6,1e-8", "1,1,2e-6,-1e-8"], "row 4: sd_S must be >= 0 S"),
    (["0,1,1e-6,1e-8", "1,1,abc,1e-8"], "row 4: mean_S must be a number"),
    (["0,1,1e-6,1e-8", "1,1,nan,1e-8"], "row 4: mean_S must be finite"),
    (["0,1,1e-6,1e-8", "1.5,1,2e-6,1e-8"], "row 4: level must be an integer"),
    (["0,1,1e-6,1e-8", "0,1,2e-6,1e-8"], "row 4: level 0 appears twice at time_s 1"),
    (["0,0,1e-6,1e-8", "1,0,2e-6,1e-8"], "row 3: time_s must be > 0"),
    (["0,-5,1e-6,1e-8"], "row 3: time_s must be > 0"),
    (["0,1,1e-6"], "row 3: 3 values for the 4 columns"),
    ([], "no table rows"),
]


@pytest.mark.parametrize("rows, message", BAD_TABLES)
def test_bad_tables_name_the_file_and_row(tmp_path, rows, message):
    path = write_table(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError) as error:
        Measured(path)
    assert str(path) in str(error.value) and message in str(error.value), str(error.value)


def test_bad_table_headers_and_hardware(tmp_path):
    with pytest.raises(ValueError, match=r"bad.csv, row 2: unknown column 'G_mean'"):
        Measured(write_table(tmp_path / "bad.csv", ["0,1e-6,1e-8"], "level,G_mean,sd_S"))
    with pytest.raises(ValueError, match=r"row 2: the header has no 'sd_S' column"):
        Measured(write_table(tmp_path / "bad.csv", ["0,1e-6"], "level,mean_S"))
    with pytest.raises(ValueError, match="does not exist"):
        Measured(tmp_path / "missing.csv")
    # no time column: the table holds at every time
    still = Measured(write_table(tmp_path / "still.csv", ["1,2e-6,0", "0,1e-6,0"],
                                 "level,mean_S,sd_S"))
    assert not still.time_dependent and still.hardware() == {"LGS": 1e-6, "HGS": 2e-6,
                                                             "g_level": 2}
    with pytest.raises(ValueError, match="has 16 levels but g_level=8; set g_level=16"):
        DPETensor(device_model="measured", LGS=1e-6, HGS=4e-5, g_level=8)
    with pytest.raises(ValueError, match="set LGS and HGS to the table's range.*HGS=4e-05"):
        DPETensor(device_model="measured")


# ---------------------------------------------------------------------------------------------
# drift compensation

NOISE_FREE = dict(vnoise=0.0, rdac=None, radc=None)
DRIFT_ONLY = [
    ({"name": "pcm", "prog_noise_scale": 0.0, "read_noise_scale": 0.0}, {}, TIMES),
    ({"name": "rram", "prog_sigma": 0.0, "relax_sigma": 0.0, "relax_shift": -0.04}, {}, TIMES),
]


def mean_gain(y, reference):
    """Least-squares gain of ``y`` against ``reference``."""
    return float((y * reference).sum() / (reference * reference).sum())


@pytest.mark.parametrize("model, hardware, times", DRIFT_ONLY + [("measured", {}, [])])
@pytest.mark.parametrize("mapping", ["offset", "diffpair"])
@pytest.mark.parametrize("converters", [NOISE_FREE, dict(vnoise=0.0, rdac=None, radc=2**14,
                                                          adc_range="batch-oracle")])
def test_global_compensation_restores_the_mean_gain(model, hardware, times, mapping, converters,
                                                    tmp_path):
    if model == "measured":  # a table whose means fall 10 % per two decades
        table = Measured(drifting_table(tmp_path / "drift.csv"), extrapolate=True)
        model, hardware, times = table, dict(table.hardware(), g_level=4), [0.0, 10.0, 1e4, 1e6]
        widths = (1, 1, 1)
    else:
        widths = (1, 1, 2, 4)
    plain = DPETensor(device_model=model, mapping=mapping, seed=2, **hardware, **converters)
    fixed = DPETensor(device_model=model, mapping=mapping, seed=2, drift_compensation="global",
                      **hardware, **converters)
    x, mat = operands(plain, m=64, k=256, n=64, widths=widths)
    exact = x.quantized_data @ mat.quantized_data
    for t in times:
        drifted = mean_gain(plain.at_time(t)(x, mat), exact)
        compensated = mean_gain(fixed.at_time(t)(x, mat), exact)
        assert abs(compensated - 1) < 0.01, (t, drifted, compensated)
        if t >= 86400:
            assert drifted < 0.9  # there was drift to undo
        if converters is NOISE_FREE:  # the gains are part of the weights the arrays hold
            torch.testing.assert_close(fixed(x, mat), x.quantized_data @ fixed.effective_weights(
                mat), rtol=1e-9, atol=1e-9)


def test_compensation_gain_is_one_per_array_and_one_at_programming():
    engine = DPETensor(device_model={"name": "pcm", "prog_noise_scale": 0.0,
                                     "read_noise_scale": 0.0}, drift_compensation="global",
                       mapping="diffpair", seed=0, **NOISE_FREE)
    x, mat = operands(engine, k=128, n=96, tile=(32, 32))  # 4 row-blocks, 3 column-blocks
    gain = engine.drift_gain(mat, torch.float64)
    assert torch.equal(gain, torch.ones_like(gain))  # t = 0: nothing drifted yet
    gain = engine.at_time(YEAR).drift_gain(mat, torch.float64)
    n_a = len(engine.programmed(mat).slice_index)
    per_column = gain.view(4, n_a, 96)
    per_array = per_column.view(4, n_a, 3, 32)
    assert torch.equal(per_array, per_array[..., :1].expand_as(per_array))  # one per array
    assert per_column.unique().numel() == 4 * n_a * 3 and (gain > 1.5).all()


# ---------------------------------------------------------------------------------------------
# layers, wires, energy


def test_converted_model_reads_at_a_time_without_reprogramming():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 5))
    engine = DPETensor(device_model="pcm", vnoise=0.0, seed=1)
    hw = mnn.convert(net, engine, seed=2).eval()
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y0 = hw(images)
    mats = [layer._mats for _, layer in mnn.mem_layers(hw)]
    assert mnn.set_time(hw, 10 * YEAR) is hw and engine.t_inference == 10 * YEAR
    y_late = hw(images)
    assert [layer._mats for _, layer in mnn.mem_layers(hw)] == mats  # not re-programmed
    assert (y_late - y0).abs().max() > 0.05 * y0.abs().max()
    assert torch.equal(mnn.set_time(hw, 0)(images), y0)
    with pytest.raises(ValueError, match="t_inference"):
        mnn.set_time(hw, -1)
    with pytest.raises(ValueError, match="no memristive layers"):
        mnn.set_time(net, 1.0)


def test_drifted_arrays_with_wires_and_their_energy():
    """With wires the drifted (and reference) conductances go through the circuit solver; the
    physics array energy follows the conductances at the time read."""
    settings = dict(device_model="pcm", seed=4, technology={"array_energy_per_cell": None},
                    **NOISE_FREE)
    ideal = DPETensor(**settings)
    tiny_wires = DPETensor(wire_resistance=1e-6, **settings)
    x, mat = operands(ideal)
    power = {}
    for t in (0.0, YEAR):
        y_ideal = ideal.at_time(t)(x, mat)
        torch.testing.assert_close(tiny_wires.at_time(t)(x, mat), y_ideal, rtol=1e-6, atol=1e-6)
        power[t] = ideal.last_schedule.array_power
    # the same codes on every word line at both times: the power ratio is a weighted mean of
    # the word lines' ratios of driven conductance, drifted over programmed
    drive0 = read_matrix(ideal.programmed(mat), ideal.config, admittance=True)[1]
    drive1 = read_matrix(ideal.read_arrays(mat), ideal.config, admittance=True)[1]
    line_ratio = drive1 / drive0
    ratio = power[YEAR] / power[0.0]
    assert float(line_ratio.min()) <= ratio <= float(line_ratio.max()) and ratio < 0.8
    assert read_power(torch.ones(*drive1.shape, 1, 1, dtype=torch.float64), drive1,
                      torch.ones(1, dtype=torch.float64)) == pytest.approx(float(drive1.sum()))


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_noise_free_device_models_compute_the_exact_quantized_product(mapping, tmp_path):
    """Every model without its noise, read when nothing has drifted, is the ideal crossbar."""
    exact_table = write_table(tmp_path / "exact.csv", [
        f"{level},{(1 + 2 * level) * 1e-7:.6e},0" for level in range(16)], "level,mean_S,sd_S")
    models = [({"name": "pcm", "prog_noise_scale": 0.0, "read_noise_scale": 0.0}, {}, [0.0]),
              ({"name": "rram", "prog_sigma": 0.0, "relax_sigma": 0.0}, {}, [0.0, YEAR]),
              (Measured(exact_table), dict(LGS=1e-7, HGS=3.1e-6), [0.0, YEAR])]
    for model, hardware, times in models:
        engine = DPETensor(device_model=model, mapping=mapping, seed=0, **hardware, **NOISE_FREE)
        widths = (1, 1, 2, 4) if MAPPINGS[mapping].sign_slice else (2, 2, 2, 2)
        x, mat = operands(engine, widths=widths, x_widths=(1, 1, 2, 4))
        exact = x.quantized_data @ mat.quantized_data
        for t in times:
            torch.testing.assert_close(engine.at_time(t)(x, mat), exact, rtol=1e-9, atol=1e-9)

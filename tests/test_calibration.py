"""Calibration as a stage (issue #28): ADC ranges set once from calibration data and frozen on
the programmed weights, so that a chip's answer for one input never depends on its batch."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch

from mpimpy import DPETensor, SlicedData
from mpimpy.calibration import AdcRanges, CalibrationRule
from mpimpy.mapping import MAPPINGS
from mpimpy.slicing import ENCODINGS

#: every ADC mode a chip can have (the batch oracles excepted)
CHIP_MODES = ("calibrated", "calibrated-symmetric", "full", 0.5)
K, N, M = 150, 40, 12


def _data(seed=0, m=M):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(m, K, generator=gen, dtype=torch.float64),
            torch.randn(K, N, generator=gen, dtype=torch.float64))


def _operands(engine, x, w, mapping="offset", bw_e=None):
    """``x`` scaled per vector (one block per vector and row-block), ``w`` per array tile."""
    xs = SlicedData((1, 1, 2, 4), bw_e=bw_e, paral_size=(32, 16), quant_gran=(32, 1))
    mblk = (1, 1, 2, 4) if MAPPINGS[mapping].sign_slice else (2, 2, 2, 2)
    ws = SlicedData(mblk, bw_e=bw_e, paral_size=(32, 16), is_weight=True)
    return xs.slice_data_imp(engine, x, transpose=True), ws.slice_data_imp(engine, w)


def _engine(adc_range, **kwargs):
    return DPETensor(var=0.05, radc=2**6, adc_range=adc_range, seed=4, **kwargs)


def _sliced(engine, x, bw_e=None):
    xs = SlicedData((1, 1, 2, 4), bw_e=bw_e, paral_size=(32, 16), quant_gran=(32, 1))
    return xs.slice_data_imp(engine, x, transpose=True)


def _one_at_a_time(engine, x, ws, bw_e=None):
    return torch.cat([engine(_sliced(engine, x[i:i + 1], bw_e), ws) for i in range(len(x))])


@pytest.mark.parametrize("adc_range", CHIP_MODES)
@pytest.mark.parametrize("bw_e", [None, 8], ids=["INT", "FP"])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("mapping", MAPPINGS)
def test_a_batch_is_its_vectors_one_at_a_time(mapping, encoding, bw_e, adc_range):
    """On one programmed, calibrated chip (per-read noise off), a batch's outputs equal its
    vectors multiplied one at a time, to round-off; so does a batch with one vector 1e3 times
    louder and one holding a 1e30 outlier, for every other vector."""
    engine = _engine(adc_range, mapping=mapping, input_encoding=encoding)
    x, w = _data()
    calibration, _ = _data(seed=1, m=32)
    xs, ws = _operands(engine, x, w, mapping, bw_e)
    if isinstance(adc_range, str) and adc_range.startswith("calibrated"):
        engine.calibrate(_sliced(engine, calibration, bw_e), ws)
    y = engine(xs, ws)
    torch.testing.assert_close(y, _one_at_a_time(engine, x, ws, bw_e), rtol=1e-12, atol=1e-12)
    loud = x.clone()
    loud[3] *= 1e3
    loud[5, 7] = 1e30
    y_loud = engine(_sliced(engine, loud, bw_e), ws)
    others = [i for i in range(M) if i not in (3, 5)]
    torch.testing.assert_close(y_loud[others], y[others], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("oracle", ["batch-oracle", "batch-oracle-symmetric"])
@pytest.mark.parametrize("kwargs", [
    dict(), dict(mapping="diffpair"), dict(var=0.0), dict(chunk_elements=300),
    dict(mapping="bias", unit_column=True), dict(input_encoding="sign_magnitude"),
    dict(device_model="pcm", var=None, t_inference=3600.0, drift_compensation="global"),
], ids=["offset", "diffpair", "exact", "chunked", "unit_column", "sign_magnitude", "drift"])
def test_minmax_calibration_on_the_data_reproduces_the_batch_oracle(oracle, kwargs):
    """Calibrated with the minmax rule on a batch and then multiplying that same batch gives
    exactly the numbers of the batch oracle (the per-product calibration of mPimPy before
    #28), and nothing clips."""
    frozen = oracle.replace("batch-oracle", "calibrated")
    kwargs = {"var": 0.05, **kwargs}
    mapping = kwargs.get("mapping", "offset")
    x, w = _data()
    reference = DPETensor(radc=2**6, adc_range=oracle, seed=4, **kwargs)
    expected = reference(*_operands(reference, x, w, mapping))
    engine = DPETensor(radc=2**6, adc_range=frozen, seed=4, **kwargs)
    xs, ws = _operands(engine, x, w, mapping)
    ranges = engine.calibrate(xs, ws, rule="minmax")
    assert isinstance(ranges, AdcRanges) and ranges.vectors == M
    y = engine(xs, ws)
    assert torch.equal(y, expected)
    if frozen == "calibrated" or engine.config.bipolar_adc:
        assert engine.last_clipped_fraction == 0.0


def _pair_major(mode, **kwargs):
    """A product whose row-blocks hold more than PAIR_MAJOR_CURRENTS currents: read slice pair
    by slice pair, one column block at a time (float32, 8 one-bit slices a side)."""
    x = torch.randn(520, 40, generator=torch.Generator().manual_seed(0))
    w = torch.randn(40, 128, generator=torch.Generator().manual_seed(1))
    engine = DPETensor(var=0.05, radc=2**6, adc_range=mode, seed=4, **kwargs)
    xs = SlicedData((1,) * 8, paral_size=(64, 32)).slice_data_imp(engine, x, True)
    ws = SlicedData((1,) * 8, paral_size=(64, 32), is_weight=True).slice_data_imp(engine, w)
    return engine, xs, ws


@pytest.mark.parametrize("chunking", [{}, dict(chunk_elements=50000)])
def test_pair_major_layout_reproduces_the_batch_oracle(chunking):
    oracle, xs, ws = _pair_major("batch-oracle", **chunking)
    expected = oracle(xs, ws)
    engine, xs, ws = _pair_major("calibrated", **chunking)
    engine.calibrate(xs, ws)
    assert torch.equal(engine(xs, ws), expected)
    assert engine.last_read_kernel == "float32"


def test_frozen_ranges_clip_and_say_how_much():
    """Inputs beyond what the calibration data held saturate at the ends of the frozen ranges,
    and the engine reports the fraction of conversions that did."""
    engine = _engine("calibrated")
    x, w = _data()
    xs, ws = _operands(engine, x * 0.25, w)
    ranges = engine.calibrate(xs, ws)
    frozen = ranges.low.clone(), ranges.high.clone()
    engine(_sliced(engine, x * 0.25), ws)
    assert engine.last_clipped_fraction == 0.0
    engine(_operands(engine, x, w)[0], ws)  # per-vector scaled: same codes, no clip
    assert engine.last_clipped_fraction == 0.0
    louder = SlicedData((1, 1, 2, 4), paral_size=(32, 16)).slice_data_imp(engine, x, True)
    engine(louder, ws)  # one scale for the tile: louder codes for most vectors
    assert 0.0 <= engine.last_clipped_fraction < 1.0
    # products never change the frozen ranges
    assert torch.equal(ranges.low, frozen[0]) and torch.equal(ranges.high, frozen[1])


def test_percentile_rule_clips_more_than_minmax_and_narrows_the_ranges():
    x, w = _data(m=64)
    engine = _engine("calibrated")
    xs, ws = _operands(engine, x, w)
    wide = engine.calibrate(xs, ws, rule="minmax")
    narrow = engine.calibrate(xs, ws, rule="percentile", percentile=99.0)
    assert bool((narrow.high <= wide.high).all()) and bool((narrow.low >= wide.low).all())
    assert bool((narrow.high - narrow.low < wide.high - wide.low).any())
    engine(xs, ws)
    assert 0.0 < engine.last_clipped_fraction < 0.05


def test_several_batches_add_up():
    """Calibrating on two batches (an iterable, or accumulate=True) takes the ranges of both."""
    x, w = _data(m=40)
    engine = _engine("calibrated")
    xs, ws = _operands(engine, x, w)
    whole = engine.calibrate(xs, ws)
    halves = [_sliced(engine, x[:20]), _sliced(engine, x[20:])]
    # (row-blocks and arrays see the same codes however the vectors are grouped)
    both = engine.calibrate(halves, ws)
    assert torch.equal(both.low, whole.low) and torch.equal(both.high, whole.high)
    engine.calibrate(halves[0], ws)
    again = engine.calibrate(halves[1], ws, accumulate=True)
    assert torch.equal(again.low, whole.low) and again.vectors == 40


def test_uncalibrated_weights_calibrate_on_the_first_product_and_warn():
    """The documented choice: a calibrated mode on weights never calibrated calibrates on the
    first product's inputs (the batch oracle's numbers), warns naming calibrate, and freezes."""
    x, w = _data()
    oracle = DPETensor(var=0.05, radc=2**6, adc_range="batch-oracle", seed=4)
    expected = oracle(*_operands(oracle, x, w))
    engine = _engine("calibrated")
    xs, ws = _operands(engine, x, w)
    with pytest.warns(UserWarning, match="calibrate"):
        y = engine(xs, ws)
    assert torch.equal(y, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine(_sliced(engine, x[:3]), ws)  # frozen now: no second warning
    engine.program(ws)  # reprogramming clears the ranges
    with pytest.warns(UserWarning, match="calibrate"):
        engine(xs, ws)


def test_ranges_pickle_with_the_engine():
    x, w = _data()
    engine = _engine("calibrated")
    xs, ws = _operands(engine, x, w)
    engine.calibrate(_sliced(engine, x[:5]), ws)
    y = engine(xs, ws)
    copy, xs2, ws2 = pickle.loads(pickle.dumps((engine, xs, ws)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(copy(xs2, ws2), y)


def test_a_calibration_is_scheduled_like_a_product():
    x, w = _data()
    engine = _engine("calibrated")
    xs, ws = _operands(engine, x, w)
    engine.calibrate(xs, ws)
    calibration = engine.last_schedule
    engine(xs, ws)
    assert calibration == engine.last_schedule and calibration.vectors == M


def test_bad_calibration_is_refused_clearly():
    x, w = _data()
    engine = _engine("calibrated")
    xs, ws = _operands(engine, x, w)
    with pytest.raises(ValueError, match="rule must be one of"):
        engine.calibrate(xs, ws, rule="mean")
    with pytest.raises(ValueError, match=r"percentile must be .*50"):
        engine.calibrate(xs, ws, rule="percentile", percentile=20)
    with pytest.raises(ValueError, match=r"percentile must be .*100"):
        CalibrationRule("percentile", 100.5)
    with pytest.raises(ValueError, match="no batch"):
        engine.calibrate([], ws)
    short = SlicedData((1, 1, 2, 4), paral_size=(32, 16)).slice_data_imp(
        engine, torch.randn(4, K - 1, dtype=torch.float64), transpose=True)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        engine.calibrate(short, ws)
    engine.calibrate(xs, ws)
    other = SlicedData((1, 3, 4), paral_size=(32, 16)).slice_data_imp(engine, x, True)
    with pytest.raises(ValueError, match="slice the inputs as the calibration data was"):
        engine(other, ws)
    full = _engine("full")
    with pytest.raises(ValueError, match="adc_range"):
        full.calibrate(*_operands(full, x, w))
    assert DPETensor(adc_range="calibrated", radc=None).calibrate(
        *_operands(full, x, w)) is None


# -- input ranges and mpimpy.dot ----------------------------------------------------------------
def test_dot_answers_each_row_as_if_alone():
    """mpimpy.dot's defaults: inputs scaled per vector, the chip calibrated on a synthetic set
    drawn from the seed: a row's answer is the same alone, in its batch, beside a 30x louder
    row, and beside values of 1e3, 1e6 and 1e30; and no warning."""
    from mpimpy import dot

    rng = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 256, generator=rng, dtype=torch.float64), \
        torch.randn(256, 64, generator=rng, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = dot(a, b, seed=0)
    assert torch.equal(dot(a[:1], b, seed=0)[0], y[0])
    loud = a.clone()
    loud[5] *= 30
    others = [i for i in range(32) if i != 5]
    assert torch.equal(dot(loud, b, seed=0)[others], y[others])
    for value in (1e3, 1e6, 1e30):
        outlier = a.clone()
        outlier[5, 3] = value
        assert torch.equal(dot(outlier, b, seed=0)[others], y[others])
    exact = a @ b
    assert float((y - exact).norm() / exact.norm()) < 0.05


def test_dot_keeps_the_batch_oracles_by_name():
    from mpimpy import dot

    rng = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 64, generator=rng, dtype=torch.float64), \
        torch.randn(64, 16, generator=rng, dtype=torch.float64)
    loud = a.clone()
    loud[5] *= 30
    oracle = dict(x_quant_gran="batch-oracle", adc_range="batch-oracle", seed=0)
    assert not torch.equal(dot(loud, b, **oracle)[0], dot(a, b, **oracle)[0])


def test_crossbar_matmul_scales_per_vector_and_calibrates_once():
    from mpimpy import CrossbarMatmul

    x, w = _data(m=16)
    matmul = CrossbarMatmul(w, var=0.05, radc=2**6, adc_range="calibrated", seed=1,
                            paral_size=(32, 16))
    assert matmul.x_quant_gran == "per-vector"
    matmul.calibrate([x[:8], x[8:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = matmul(x)
        alone = torch.cat([matmul(x[i:i + 1]) for i in range(16)])
    torch.testing.assert_close(y, alone, rtol=1e-12, atol=1e-12)
    loud = x.clone()
    loud[2] *= 1e3
    loud[4, 0] = 1e30
    others = [i for i in range(16) if i not in (2, 4)]
    matmul(x)
    assert matmul.engine.last_clipped_fraction == 0.0  # the calibration data itself
    torch.testing.assert_close(matmul(loud)[others], y[others], rtol=1e-12, atol=1e-12)
    # the outlier vector's currents lie beyond what calibration saw: they saturate
    assert 0.0 < matmul.engine.last_clipped_fraction < 2 / 16
    with pytest.raises(ValueError, match="no batch"):
        matmul.calibrate([])
    with pytest.raises(ValueError, match="K = 150"):
        matmul.calibrate(torch.randn(4, 3))
    with pytest.raises(ValueError, match="no vector"):
        matmul.calibrate(torch.zeros(0, K))


def test_static_input_range_is_calibrated_frozen_and_saturates():
    """A static input range (input_range="calibrated"): set once from calibration data, the
    same scale for every vector; values beyond it saturate at the DAC's full scale, counted,
    and only their own vector's answer changes; no max-finder in the schedule."""
    from mpimpy import CrossbarMatmul

    x, w = _data(m=16)
    matmul = CrossbarMatmul(w, var=0.0, radc=2**6, adc_range="calibrated", seed=1,
                            paral_size=(32, 16), input_range="calibrated")
    with pytest.raises(RuntimeError, match="calibrate"):
        matmul(x)
    matmul.calibrate(x)
    assert matmul.static_range == float(x.abs().max())
    y = matmul(x)
    assert matmul.x.clipped_fraction == 0.0
    assert not matmul.engine.last_schedule.input_max_finder
    loud = x.clone()
    loud[2] *= 1e3
    assert torch.equal(matmul(loud)[[0, 1, 3]], y[[0, 1, 3]])
    assert matmul.x.clipped_fraction == pytest.approx(
        float((loud.abs() > matmul.static_range).sum()) / loud.numel())
    with pytest.raises(ValueError, match="input_range"):
        CrossbarMatmul(w, input_range=-1.0)
    narrow = CrossbarMatmul(w, seed=1, paral_size=(32, 16), input_range="calibrated")
    narrow.calibrate(x, rule="percentile", percentile=90.0)
    assert narrow.static_range < matmul.static_range


def test_the_max_finder_is_counted():
    from mpimpy import cost

    x, w = _data()
    engine = _engine("full")
    xs, ws = _operands(engine, x, w)
    engine(xs, ws)
    dynamic = cost.report(engine.last_schedule)
    static = SlicedData((1, 1, 2, 4), paral_size=(32, 16), static_range=5.0).slice_data_imp(
        engine, x, transpose=True)
    engine(static, ws)
    assert dynamic.accumulations - cost.report(engine.last_schedule).accumulations == M * K


# -- converted layers ---------------------------------------------------------------------------
def _network(adc_range="calibrated", read_noise=0.0):
    from mpimpy import nn as mnn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10))
    engine = DPETensor(var=0.05, radc=2**6, adc_range=adc_range, seed=3, read_noise=read_noise)
    return mnn.convert(model, engine, xblk=[1, 1, 2, 4], mblk=[1, 1, 2, 4], seed=11,
                       paral_size=(32, 32)).eval()


def test_a_calibrated_network_answers_each_sample_as_if_alone():
    from mpimpy import nn as mnn

    images = torch.randn(12, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    calibration = torch.randn(40, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    for adc_range in ("calibrated", "calibrated-symmetric"):
        hw = mnn.calibrate(_network(adc_range), [calibration[:20], calibration[20:]])
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")
            logits = hw(images)
            alone = torch.cat([hw(images[i:i + 1]) for i in range(12)])
            loud = images.clone()
            loud[3] *= 1e3
            torch.testing.assert_close(hw(loud)[[0, 1, 2, 4]], logits[[0, 1, 2, 4]],
                                       rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits, alone, rtol=1e-5, atol=1e-5)
        clipped = [layer.last_clipped_fraction for _, layer in mnn.mem_layers(hw)]
        assert all(0.0 <= c < 1.0 for c in clipped)


def test_calibration_is_saved_with_the_model():
    from mpimpy import nn as mnn

    images = torch.randn(8, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    hw = mnn.calibrate(_network(), images, rule="percentile", percentile=99.9)
    with torch.no_grad():
        logits = hw(images)
    state = hw.state_dict()
    assert state["0.adc_low"].numel() > 0 and state["3.adc_high"].numel() > 0
    fresh = _network()
    fresh.load_state_dict(state)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(fresh(images), logits)
    mnn.program(fresh, seed=5)  # a new chip: its ranges are gone, the next pass calibrates
    assert fresh[0].adc_low.numel() == 0
    with torch.no_grad(), pytest.warns(UserWarning, match="calibrate"):
        fresh(images)


def test_network_calibration_is_refused_clearly():
    from mpimpy import nn as mnn

    with pytest.raises(ValueError, match="no batch"):
        mnn.calibrate(_network(), [])
    with pytest.raises(ValueError, match="adc_range"):
        mnn.calibrate(_network("full"), torch.randn(2, 2, 6, 6))
    with pytest.raises(ValueError, match="percentile"):
        mnn.calibrate(_network(), torch.randn(2, 2, 6, 6), rule="percentile", percentile=101)
    with pytest.raises(ValueError, match="input channels"):
        mnn.calibrate(_network(), torch.randn(2, 3, 6, 6))
    with pytest.raises(ValueError, match="memristive"):
        mnn.calibrate(torch.nn.Linear(2, 2), torch.randn(2, 2))


def test_percentile_in_every_layout():
    """The percentile rule in the pair-major layout (large row-blocks) and with one range per
    slice pair: within the minmax ranges, and some calibration currents clip."""
    for mode in ("calibrated", "calibrated-symmetric"):
        engine, xs, ws = _pair_major(mode)
        wide = engine.calibrate(xs, ws)
        narrow = engine.calibrate(xs, ws, rule="percentile", percentile=99.0)
        assert bool((narrow.high <= wide.high).all()) and bool((narrow.low >= wide.low).all())
        engine(xs, ws)
        assert 0.0 < engine.last_clipped_fraction < 0.05


def test_a_fixed_range_has_nothing_to_calibrate():
    from mpimpy import CrossbarMatmul

    x, w = _data()
    with pytest.raises(ValueError, match="adc_range"):
        CrossbarMatmul(w, radc=2**6, adc_range="full").calibrate(x)
    static = CrossbarMatmul(w, radc=2**6, adc_range="full", input_range="calibrated")
    assert static.calibrate(x).static_range == float(x.abs().max())

"""Non-idealities behave as the model says, and randomness is reproducible by seed."""

import math

import numpy as np
import pytest
import torch

from mpimpy import RE, DPETensor, SlicedData, execution, release_buffers
from mpimpy.config import CrossbarConfig
from mpimpy.crossbar import read_currents


def sliced_pair(engine, x_data, w_data, widths=(1, 1, 2, 4), bw_e=None, mapping_tile=(64, 64)):
    x = SlicedData(list(widths), bw_e=bw_e, paral_size=mapping_tile)
    mat = SlicedData(list(widths), bw_e=bw_e, paral_size=mapping_tile)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, w_data)
    return x, mat


def constant_weights(engine, value, shape=(256, 256)):
    """A weight operand whose every cell of every slice sits at one known level."""
    mat = SlicedData([1, 1, 2, 4], quant_gran="per-matrix")
    mat.slice_data_imp(engine, torch.full(shape, float(value), dtype=torch.float64))
    return engine.program(mat)


def test_variation_is_lognormal_with_sigma_var():
    var = 0.1
    engine = DPETensor(var=var, g_level=16, seed=11)
    arrays = constant_weights(engine, 1.0)  # q = 127: slices 0, 1, 3, 15 -> levels 0, 15, 15, 15
    nominal = DPETensor(var=0.0, g_level=16, seed=11)
    reference = constant_weights(nominal, 1.0)
    ratio = (arrays.positive / reference.positive).flatten()
    log_ratio = torch.log(ratio)
    n = log_ratio.numel()
    # mean and sigma of log G, and the lognormal mean of G, within 5 standard errors
    assert abs(float(log_ratio.mean())) < 5 * var / math.sqrt(n)
    assert abs(float(log_ratio.std()) - var) < 5 * var / math.sqrt(2 * n)
    se_mean = math.sqrt((math.exp(var**2) - 1) * math.exp(var**2)) / math.sqrt(n)
    assert abs(float(ratio.mean()) - math.exp(var**2 / 2)) < 5 * se_mean


@pytest.mark.parametrize("stuck_value", [0, 1])
def test_stuck_at_faults(stuck_value):
    ratio = 0.2
    cfg = CrossbarConfig(var=0.0, stuck_fault_ratio=ratio, stuck_fault_value=stuck_value)
    engine = DPETensor(**cfg.as_dict(), seed=5)
    arrays = constant_weights(engine, 0.3)
    clean = constant_weights(DPETensor(var=0.0, seed=5), 0.3)
    stuck_at = cfg.HGS if stuck_value == 1 else cfg.LGS
    changed = arrays.positive != clean.positive
    at_state = arrays.positive == stuck_at
    assert torch.all(arrays.positive[changed] == stuck_at)
    # cells already at the stuck state can't be told apart; the rest are stuck at the rate
    n = at_state.numel()
    fraction = float(at_state.double().mean())
    already = float((clean.positive == stuck_at).double().mean())
    expected = already + (1 - already) * ratio
    assert abs(fraction - expected) < 5 * math.sqrt(ratio * (1 - ratio) / n)


def test_read_noise_variance_matches_per_cell_model():
    """The one-Gaussian-per-output shortcut has the variance of independent per-cell noise."""
    gen = torch.Generator().manual_seed(0)
    rows, cols, trials, sigma = 16, 3, 20000, 0.1
    codes = torch.randint(0, 16, (1, 1, rows), generator=gen).double()
    levels = torch.rand(1, rows, cols, generator=gen, dtype=torch.float64) * 15
    absolute = levels + 0.15  # cells above the offset, in level units
    # per-cell model, brute force
    cell_noise = torch.randn(trials, rows, cols, generator=gen, dtype=torch.float64)
    brute = (codes[0, 0].view(1, rows, 1) * absolute * (1 + sigma * cell_noise)).sum(1)
    brute = brute - (codes[0, 0].view(1, rows, 1) * 0.15).sum(1)
    fast = read_currents(
        codes.expand(1, trials, rows).contiguous().unsqueeze(1), levels.unsqueeze(1),
        (absolute**2).unsqueeze(1), sigma, gen
    )[0, 0, 0]
    var_brute, var_fast = brute.var(0), fast.var(0)
    expected = sigma**2 * ((codes[0, 0] ** 2).view(rows, 1) * absolute[0] ** 2).sum(0)
    # sample variance of n Gaussians has relative sd sqrt(2/n)
    tolerance = 5 * math.sqrt(2 / trials)
    assert torch.all((var_brute / expected - 1).abs() < tolerance)
    assert torch.all((var_fast / expected - 1).abs() < tolerance)
    assert torch.allclose(fast.mean(0), brute.mean(0), rtol=0.01)


def test_vnoise_relative_std():
    engine = DPETensor(var=0, vnoise=0.05, rdac=None, radc=None, g_level=128, seed=3)
    x = torch.ones(4000, 1, dtype=torch.float64)
    w = torch.ones(1, 1, dtype=torch.float64)
    xs, ws = sliced_pair(engine, x, w, widths=(1, 7))
    y = engine(xs, ws).flatten()
    ideal = float((xs.quantized_data @ ws.quantized_data)[0, 0])
    # only the 7-bit slice is non-zero for x = +1, so the output's relative sd is vnoise
    rel = y / ideal - 1
    assert abs(float(rel.mean())) < 5 * 0.05 / math.sqrt(len(y))
    assert abs(float(rel.std()) - 0.05) < 5 * 0.05 / math.sqrt(2 * len(y))


def noisy_engine(seed, **kw):
    return DPETensor(
        var=0.05, vnoise=0.05, read_noise=0.02, stuck_fault_ratio=0.01, seed=seed, **kw
    )


def data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(50, 100, generator=gen), torch.randn(100, 30, generator=gen)


@pytest.mark.parametrize("adc_range", ["full", "batch-oracle"])
def test_same_seed_same_bits_different_seed_differs(adc_range):
    x_data, w_data = data()

    def run(seed):
        engine = noisy_engine(seed, adc_range=adc_range, chunk_elements=5000)
        return engine(*sliced_pair(engine, x_data, w_data))

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_seed_drives_default_engine():
    x_data, w_data = data()

    def run():
        torch.manual_seed(42)
        engine = noisy_engine(None)
        return engine(*sliced_pair(engine, x_data, w_data))

    assert torch.equal(run(), run())


def test_programmed_conductances_kept_until_reprogrammed():
    x_data, w_data = data()
    engine = DPETensor(var=0.1, vnoise=0.0, read_noise=0.0, seed=4)
    x, mat = sliced_pair(engine, x_data, w_data)
    first, second = engine(x, mat), engine(x, mat)
    assert torch.equal(first, second)  # variation drawn once, at programming
    engine.program(mat)
    assert not torch.equal(engine(x, mat), first)
    mat.slice_data_imp(engine, w_data)  # new weights: programmed anew on next use
    assert not torch.equal(engine(x, mat), first)


@pytest.mark.parametrize("pair_major_currents", [2**62, 0], ids=["whole", "pair-major"])
def test_chunking_does_not_change_results(pair_major_currents, monkeypatch):
    """Chunks bound memory only: a calibrated product read in any chunks gives the same numbers,
    whichever layout its row-blocks are read in (the layout is chosen by their size alone)."""
    monkeypatch.setattr(execution, "PAIR_MAJOR_CURRENTS", pair_major_currents)
    x_data, w_data = data()
    results = []
    for chunk in (10**9, 20000, 700):
        engine = DPETensor(
            var=0.05,
            vnoise=0.0,
            read_noise=0.0,
            adc_range="batch-oracle",
            seed=9,
            chunk_elements=chunk,
        )
        results.append(engine(*sliced_pair(engine, x_data, w_data, mapping_tile=(16, 8))))
    for r in results[1:]:
        assert torch.allclose(r, results[0], rtol=1e-5, atol=1e-5)


def original_readme_case(radc, bw_e=None):
    torch.manual_seed(42)
    x_data, mat_data = torch.randn(400, 100), torch.randn(100, 120)
    xblk, mblk = torch.tensor([1, 1, 4, 4]), torch.tensor([1, 1, 4, 4])
    mat, x = SlicedData(mblk, bw_e=bw_e), SlicedData(xblk, bw_e=bw_e)
    engine = DPETensor(var=0.0, radc=radc)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, mat_data)
    return RE(torch.matmul(x_data, mat_data).numpy(), engine(x, mat).numpy())


@pytest.mark.parametrize("bw_e", [None, 8])
def test_original_example_error_falls_with_adc_bits(bw_e):
    errors = [original_readme_case(2**bits, bw_e) for bits in (4, 6, 8, 10, 12, 14)]
    assert all(np.isfinite(errors))
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False))
    # at 14 bits the ADC's own error has faded into the quantization floor of an ideal ADC
    floor = original_readme_case(None, bw_e)
    assert errors[-1] < 1.25 * floor < errors[0] / 2


def test_calibrated_adc_beats_full_range_at_8_bits():
    x_data, w_data = data(1)
    errors = {}
    for mode in ("full", "batch-oracle"):
        engine = DPETensor(var=0, vnoise=0, radc=2**8, adc_range=mode, seed=0)
        errors[mode] = RE(x_data @ w_data, engine(*sliced_pair(engine, x_data, w_data)))
    assert errors["batch-oracle"] < errors["full"]


def test_all_zero_operands_give_zero_not_nan():
    engine = DPETensor(var=0.05, seed=0, adc_range="batch-oracle")
    for bw_e in (None, 8):
        x, mat = sliced_pair(engine, torch.zeros(3, 70), torch.zeros(70, 5), bw_e=bw_e)
        y = engine(x, mat)
        assert torch.isfinite(y).all()
        x, mat = sliced_pair(engine, torch.randn(3, 70), torch.zeros(70, 5), bw_e=bw_e)
        assert torch.isfinite(engine(x, mat)).all()


def test_program_with_own_generator_is_reproducible():
    engine = DPETensor(var=0.1, stuck_fault_ratio=0.05, seed=0)
    mat = SlicedData([1, 1, 2, 4]).slice_data_imp(engine, torch.randn(70, 20))
    first = engine.program(mat, generator=torch.Generator().manual_seed(5)).positive.clone()
    engine.program(mat)  # the engine's own generator: different draws
    assert not torch.equal(engine.programmed(mat).positive, first)
    again = engine.program(mat, generator=torch.Generator().manual_seed(5)).positive
    assert torch.equal(again, first)


def test_all_zero_int_block_adds_nothing_despite_variation():
    """A block of zero weights reads some current (its LGS cells vary), but its scale is 0: the
    inputs that meet only that block cannot change the result."""
    engine = DPETensor(var=0.2, vnoise=0.0, seed=0, radc=None)
    w_data = torch.randn(128, 8)
    w_data[64:] = 0.0  # the second row-block of arrays holds only zeros
    x_data = torch.randn(5, 128)
    x, mat = sliced_pair(engine, x_data, w_data)
    y = engine(x, mat)
    x_other = x_data.clone()
    x_other[:, 64:] = torch.randn(5, 64) * 10  # different inputs on the zero block only
    x.slice_data_imp(engine, x_other, transpose=True)
    assert torch.equal(engine(x, mat), y)
    assert not torch.equal(y, torch.zeros_like(y))


def test_calibrated_adc_same_whether_currents_are_kept_or_read_twice():
    """Reading the arrays twice (large products) rewinds the generator: same read noise, same
    result as keeping the currents between calibration and conversion."""
    x_data, w_data = data(3)
    results = []
    for calibration_elements in (2**30, 0):
        engine = DPETensor(var=0.05, vnoise=0.02, read_noise=0.05, adc_range="batch-oracle",
                           seed=8, chunk_elements=3000,
                           calibration_elements=calibration_elements)
        results.append(engine(*sliced_pair(engine, x_data, w_data, mapping_tile=(32, 16))))
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("mapping", ["offset", "diffpair"])
@pytest.mark.parametrize("wire_resistance", [0.0, 2.93])
@pytest.mark.parametrize("bw_e", [None, 8])
def test_effective_weights_are_what_an_ideal_read_multiplies_by(mapping, wire_resistance, bw_e):
    """Noise-free arrays hold the quantized weights (up to IR drop); with variation and faults
    an ideal-converter product is the quantized input times the effective weights."""
    w_data = torch.randn(100, 70, dtype=torch.float64)
    x_data = torch.randn(5, 100, dtype=torch.float64)
    ideal = DPETensor(var=0.0, vnoise=0.0, radc=None, rdac=None, mapping=mapping, seed=0)
    x, mat = sliced_pair(ideal, x_data, w_data, bw_e=bw_e, mapping_tile=(32, 32))
    assert torch.allclose(ideal.effective_weights(mat), mat.quantized_data, rtol=0,
                          atol=1e-12)
    engine = DPETensor(var=0.3, stuck_fault_ratio=0.02, vnoise=0.0, radc=None, rdac=None,
                       mapping=mapping, wire_resistance=wire_resistance, seed=1)
    x, mat = sliced_pair(engine, x_data, w_data, bw_e=bw_e, mapping_tile=(32, 32))
    effective = engine.effective_weights(mat)
    assert effective.shape == (100, 70)
    assert (effective - mat.quantized_data).abs().max() > 0.1
    assert torch.allclose(engine(x, mat), x.quantized_data @ effective, rtol=0, atol=1e-10)
    assert torch.equal(engine.effective_weights(mat, torch.float32),
                       engine.effective_weights(mat, torch.float32))  # cached, not re-drawn


def test_effective_weights_of_a_vector_and_of_an_unprogrammed_operand():
    engine = DPETensor(var=0.0, vnoise=0.0, seed=0)
    mat = SlicedData([1, 1, 2, 4]).slice_data_imp(engine, torch.randn(90, dtype=torch.float64))
    effective = engine.effective_weights(mat)  # programs it first
    assert effective.shape == (90,)
    assert torch.allclose(effective, mat.quantized_data, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="mat must be 1-D or 2-D"):
        engine.effective_weights(SlicedData([1, 1, 2, 4]).slice_data_imp(
            engine, torch.randn(2, 3, 4)))


def test_release_buffers_gives_the_memory_back_and_leaves_the_numbers_alone():
    """After a large product the thread keeps its DAC codes and their noise (about 100 MB
    each, under the retention limit): release_buffers() hands them back to the OS (resident
    memory falls), and the same seeded product afterwards, in fresh buffers, is the same."""
    import psutil

    x_data = torch.randn(12500, 512, generator=torch.Generator().manual_seed(2))
    w_data = torch.randn(512, 8, generator=torch.Generator().manual_seed(3))

    def product():
        engine = DPETensor(var=0.05, vnoise=0.05, seed=4)
        return engine(*sliced_pair(engine, x_data, w_data))

    codes_bytes = 8 * 64 * 12500 * 4 * 4  # (Tk, rows, M, n_x) float32
    assert codes_bytes <= execution.RETAINED_BUFFER_BYTES  # so kept after the product
    before = product()
    resident = psutil.Process().memory_info().rss
    released = release_buffers()
    freed = resident - psutil.Process().memory_info().rss
    assert released >= 2 * codes_bytes
    assert freed >= 1.5 * codes_bytes  # the buffers over 32 MB are unmapped at once
    assert release_buffers() == 0  # nothing left to free
    assert torch.equal(product(), before)


def test_products_after_a_larger_one_equal_those_with_fresh_buffers():
    """The drive stage's buffers kept from product to product (per thread) never change a
    result: products run after a larger one, in reused buffers with its stale contents, equal
    the same products in a fresh thread, which allocates its own; a buffer over the retention
    limit is not kept."""
    import threading

    from mpimpy import execution

    x_data, w_data = data()
    big_x = torch.randn(400, 100, generator=torch.Generator().manual_seed(1))

    def products(results, after_big):
        if after_big:  # another engine's, so that this one's generator is where it starts
            other = noisy_engine(8)
            other(*sliced_pair(other, big_x, w_data))
        engine = noisy_engine(3, adc_range="batch-oracle")
        x, mat = sliced_pair(engine, x_data, w_data)
        results.append([engine(x, mat) for _ in range(2)])

    fresh, reused = [], []
    worker = threading.Thread(target=products, args=(fresh, False))
    worker.start()
    worker.join()
    products(reused, after_big=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh[0], reused[0], strict=True))
    assert not torch.equal(reused[0][0], reused[0][1])  # the noise is drawn anew each time

    retained = execution._retained.buffers
    assert retained["codes"].numel() >= 2 * 64 * 400 * 4  # the big product's, still held
    limit = execution.RETAINED_BUFFER_BYTES // 4
    too_big = execution.retained_buffer("codes", limit + 1, torch.float32,
                                            torch.device("cpu"))
    assert too_big.numel() == limit + 1 and "codes" not in retained
    kept = execution.retained_buffer("codes", 10, torch.float32, torch.device("cpu"))
    assert execution.retained_buffer("codes", 10, torch.float32,
                                         torch.device("cpu")) is kept

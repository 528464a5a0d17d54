"""``DPETensor(compile=True)``: the ADC and shift-add of each chunk as one compiled kernel.

The compiled kernel is the same torch function as the uncompiled passes (``mpimpy.jit``), so
the products agree to float32 round-off (a fused sum may add the slice pairs in another order);
an ADC that rounded one current differently would be off by a whole ADC step, thousands of
times more. Both read kernels (int8 and float) go through the same compiled kernel, so they
still agree element for element. Where compiling fails, the engine warns and runs uncompiled.
The compiled products are computed in a fresh process: this one never starts the compiler.
"""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from mpimpy import DPETensor, SlicedData
from mpimpy.peripherals import convert_shift_add


def product(x_data, w_data, bw_e=None, widths=(1, 1, 2, 4), **settings):
    engine = DPETensor(seed=0, **settings)
    x, mat = SlicedData(list(widths), bw_e=bw_e), SlicedData(list(widths), bw_e=bw_e)
    mat.slice_data_imp(engine, w_data)
    x.slice_data_imp(engine, x_data, transpose=True)
    return engine(x, mat), engine


# every variant of the passes: fixed, fractional, per-array and whole-product calibrated ranges,
# bipolar ADCs (differential pairs, sign-magnitude inputs), bias mappings, drift gains, read
# noise, no ADC; small chunks so that a product's last chunk has fewer vectors than the others
CASES = {
    "INT full": dict(var=0.0),
    "FP calibrated": dict(var=0.0, adc_range="batch-oracle", bw_e=8),
    "fraction, read noise": dict(var=0.02, read_noise=0.02, adc_range=0.25),
    "symmetric, diffpair": dict(var=0.05, vnoise=0.05, mapping="diffpair",
                                adc_range="batch-oracle-symmetric"),
    "bias, sign-magnitude": dict(var=0.0, mapping="bias", input_encoding="sign_magnitude",
                                 adc_range="batch-oracle", chunk_elements=5000),
    "unit column, drift gain": dict(var=0.0, mapping="bias", unit_column=True,
                                    device_model="pcm", drift_compensation="global",
                                    t_inference=3600.0, adc_range="batch-oracle"),
    "no ADC, read noise": dict(var=0.0, radc=None, read_noise=0.05),
}


def case_operands():
    gen = torch.Generator().manual_seed(11)
    return torch.randn(2, 29, 150, generator=gen), torch.randn(150, 70, generator=gen)


def kernel_operands():
    gen = torch.Generator().manual_seed(12)
    return torch.randn(300, 150, generator=gen), torch.randn(150, 45, generator=gen)


def float64_operands():
    gen = torch.Generator().manual_seed(13)
    return (torch.randn(20, 70, generator=gen, dtype=torch.float64),
            torch.randn(70, 9, generator=gen, dtype=torch.float64))


def compiled_results() -> dict:
    """Every compiled product the tests check, with the kernel that ran; computed in a fresh
    process (the ``compiled`` fixture), so that the test process never starts the compiler,
    whose worker processes and threads would outlive these tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        convert_shift_add(torch.ones(1, 2, 1, 1, 3), torch.ones(1), 16, False, compile=True)
    if not convert_shift_add.runs_compiled(torch.device("cpu")):
        return {"unavailable": convert_shift_add.failures["cpu"]}
    results = {}
    for name, settings in CASES.items():
        y, engine = product(*case_operands(), compile=True, **settings)
        results[name] = (y, engine.last_convert_kernel)
    for adc_range in ("full", "batch-oracle"):
        results["read kernels", adc_range] = [
            product(*kernel_operands(), var=0.0, adc_range=adc_range, compile=True,
                    read_kernel=kernel, chunk_elements=2**14)[0] for kernel in ("auto", "float")]
    results["float64"] = product(*float64_operands(), var=0.05, adc_range="batch-oracle",
                                 compile=True)[0]
    return results


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """:func:`compiled_results`, from a fresh process; skips where torch.compile cannot build a
    CPU kernel (no C++ compiler)."""
    out = tmp_path_factory.mktemp("compiled") / "results.pt"
    script = (f"import sys, torch; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
              f"import test_compiled; torch.save(test_compiled.compiled_results(), {str(out)!r})")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr
    results = torch.load(out)
    if "unavailable" in results:
        pytest.skip(f"torch.compile unavailable: {results['unavailable']}")
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_passes_give_the_uncompiled_numbers(compiled, name):
    eager, engine = product(*case_operands(), **CASES[name])
    assert engine.last_convert_kernel == "eager"
    fused, kernel = compiled[name]
    assert kernel == "compiled"
    assert fused.dtype == eager.dtype == torch.float32
    # float32 round-off of the shift-add's sums (eps 1.2e-7, a few dozen terms per output)
    assert (fused - eager).abs().max() <= 1e-5 * eager.abs().max()


@pytest.mark.parametrize("adc_range", ["full", "batch-oracle"])
def test_both_read_kernels_agree_element_for_element_when_compiled(compiled, adc_range):
    int8_read, float_read = compiled["read kernels", adc_range]
    assert torch.equal(int8_read, float_read)


def test_a_float64_product_stays_float64_when_compiled(compiled):
    eager, _ = product(*float64_operands(), var=0.05, adc_range="batch-oracle")
    fused = compiled["float64"]
    assert fused.dtype == torch.float64
    assert (fused - eager).abs().max() <= 1e-13 * eager.abs().max()


def test_compile_is_validated():
    with pytest.raises(ValueError, match="compile must be True or False"):
        DPETensor(compile="yes")


def test_without_a_compiler_the_engine_warns_and_runs_uncompiled(tmp_path):
    """A real failure: a fresh process whose C++ compiler does not exist (and an empty kernel
    cache, so nothing compiled before is loaded)."""
    script = textwrap.dedent("""
        import warnings, torch
        from mpimpy import DPETensor, SlicedData
        gen = torch.Generator().manual_seed(14)
        x_data, w_data = torch.randn(30, 70, generator=gen), torch.randn(70, 9, generator=gen)
        results = []
        for compile in (False, True):
            engine = DPETensor(seed=0, var=0.0, adc_range="batch-oracle", compile=compile)
            x, mat = SlicedData([1, 1, 2, 4]), SlicedData([1, 1, 2, 4])
            mat.slice_data_imp(engine, w_data)
            x.slice_data_imp(engine, x_data, transpose=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                results.append(engine(x, mat))
            print(engine.last_convert_kernel, [str(w.message) for w in caught])
        assert torch.equal(*results)
    """)
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    eager, failed = run.stdout.strip().splitlines()
    assert eager == "eager []"
    assert failed.startswith("eager [") and "could not be compiled on cpu" in failed

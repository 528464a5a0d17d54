"""Code written for the original mPimPy runs: its README examples (the seed torch version and
the latest, PimTorch), its quantization blocks, and the names its users call."""

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from mpimpy import DPETensor, SlicedData, dot_high_dim
from mpimpy.slicing import bit_slices, slice_weights

EXAMPLES = Path(__file__).parents[1] / "examples"


def run_example(name, tb_mode):
    env = dict(os.environ, MPIMPY_TB_MODE=tb_mode, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, capture_output=True,
                          text=True, check=True, timeout=900)


@pytest.mark.parametrize("tb_mode", ["0", "1"])
def test_pimtorch_readme_examples_run(tb_mode):
    """Both examples of PimTorch's README (tb_mode 0: FP8 on a batch of two 1000 x 1000 inputs,
    var 0.05; tb_mode 1: INT6 with quant_gran=(1, 64), var 0, a 12-bit ADC)."""
    done = run_example("pimtorch_readme_example.py", tb_mode)
    snr = float(done.stdout.split("SNR(dB)")[1].split()[0])
    assert math.isfinite(snr)
    if tb_mode == "0":
        assert 5 < snr < 40  # 5 % variation and an 8-bit full-range ADC
    else:
        assert snr > 20  # no variation, a 12-bit ADC
        # the weights' (1, 64) blocks are one row along K: rounded up to whole arrays
        assert "rounded up to 64, as the original mPimPy does" in done.stderr


def test_quant_gran_rows_round_up_to_whole_arrays_as_in_the_original():
    """A weight block of one row along K (refused by an array, which sums all its rows) means
    64-row bands, as the original rounds its blocks up to whole arrays."""
    engine = DPETensor(var=0.0, rdac=None, radc=None, seed=0)
    gen = torch.Generator().manual_seed(0)
    x_data = torch.randn(5, 128, generator=gen, dtype=torch.float64)
    w_data = torch.randn(128, 70, generator=gen, dtype=torch.float64)
    x = SlicedData([1, 1, 2, 4]).slice_data_imp(engine, x_data, transpose=True)
    with pytest.warns(UserWarning, match="rounded up to 64"):
        rounded = SlicedData([1, 1, 2, 4], is_weight=True, quant_gran=(1, 64)).slice_data_imp(
            engine, w_data)
    bands = SlicedData([1, 1, 2, 4], is_weight=True, quant_gran=(64, 64)).slice_data_imp(
        engine, w_data)
    assert torch.equal(rounded.q, bands.q) and torch.equal(rounded.block_step, bands.block_step)
    torch.testing.assert_close(engine(x, rounded), engine(x, bands), rtol=0, atol=0)
    with pytest.warns(UserWarning, match="rounded up to 64"):
        SlicedData([1, 3], is_weight=True, quant_gran="per-row").slice_data_imp(engine, w_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # blocks that span whole arrays: no warning
        SlicedData([1, 3], is_weight=True, quant_gran=(128, 1)).slice_data_imp(engine, w_data)


def test_sliced_data_names_the_original_reads():
    engine = DPETensor(seed=0)
    data = torch.randn(70, 130, dtype=torch.float64)
    mat = SlicedData(torch.tensor([1, 1, 2, 4]), is_weight=True, paral_size=(64, 32),
                     quant_gran=(64, 32)).slice_data_imp(engine, data)
    assert len(mat) == 4 and mat.size() == torch.Size([70, 130])
    # the original's tiled layout: (row tiles, col tiles, slices, tile rows, tile cols)
    tiles = mat.sliced_data
    assert tiles.shape == (2, 5, 4, 64, 32)
    assert torch.equal(tiles[1, 2, :, :6, :], mat.slices[:, 64:70, 64:96])
    assert int(tiles[1, :, :, 6:].abs().sum()) == 0  # padding
    # max_data: the largest |value| of each tile's quantization block
    assert mat.max_data.shape == (2, 5, 1, 1)
    assert float(mat.max_data[1, 4]) == float(data[64:, 128:].abs().max())
    assert float(mat.max_data[0, 0]) == float(data[:64, :32].abs().max())
    # t(): the same integers, transposed, not programmed
    engine(SlicedData([1, 3]).slice_data_imp(engine, torch.randn(3, 70), transpose=True), mat)
    transposed = mat.t()
    assert torch.equal(transposed.q, mat.q.t()) and transposed.size() == torch.Size([130, 70])
    torch.testing.assert_close(transposed.quantized_data, mat.quantized_data.t())
    assert not engine.holds(transposed) and engine.holds(mat)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        SlicedData([1, 3]).slice_data_imp(engine, torch.randn(2, 3, 4)).t()


def test_dot_high_dim_is_every_slice_pairs_tile_product():
    """Summed over contraction tiles and shift-added, the tiled slice products are the product
    of the two integer matrices."""
    engine = DPETensor(seed=0)
    gen = torch.Generator().manual_seed(1)
    widths = [1, 1, 2, 4]
    x = SlicedData(widths, paral_size=(16, 16)).slice_data_imp(
        engine, torch.randn(20, 40, generator=gen, dtype=torch.float64), transpose=True)
    w = SlicedData(widths, is_weight=True, paral_size=(16, 16)).slice_data_imp(
        engine, torch.randn(40, 24, generator=gen, dtype=torch.float64))
    pairs = dot_high_dim(x.sliced_data.double(), w.sliced_data.double())
    assert pairs.shape == (2, 3, 2, 4, 4, 16, 16)
    weights = torch.tensor(slice_weights(widths), dtype=torch.float64)
    shift_added = torch.einsum("nmpisjl,i,s->npjl", pairs, weights, weights)
    product = shift_added.permute(0, 2, 1, 3).reshape(32, 32)[:20, :24]
    assert torch.equal(product, x.q.double() @ w.q.double())
    batched = dot_high_dim(x.sliced_data.double().unsqueeze(0).expand(3, -1, -1, -1, -1, -1),
                           w.sliced_data.double())
    assert batched.shape == (3, *pairs.shape) and torch.equal(batched[2], pairs)
    with pytest.raises(ValueError, match="x must be"):
        dot_high_dim(torch.zeros(2, 2), w.sliced_data)
    assert bit_slices(torch.tensor([5]), [1, 3]).tolist() == [[0], [5]]

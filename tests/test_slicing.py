"""Quantization and bit slicing, against exact integer arithmetic."""

import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mpimpy import DPETensor, SlicedData
from mpimpy.slicing import ENCODINGS, bit_slices, encoding_bias, quantize, slice_weights

ENGINE = DPETensor()


@given(
    st.integers(2, 20).flatmap(
        lambda bits: st.tuples(
            st.just(bits),
            st.lists(
                st.integers(-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1), min_size=1, max_size=50
            ),
        )
    ),
    st.data(),
)
def test_slices_reassemble_exactly(bits_and_values, data):
    bits, values = bits_and_values
    # the sign slice takes the top bit; the other bits are cut at random places
    cuts = sorted(data.draw(st.sets(st.integers(2, max(bits - 1, 2)), max_size=bits - 2)))
    edges = [1, *(c for c in cuts if c < bits), bits]
    widths = [1] + [b - a for a, b in zip(edges, edges[1:], strict=False) if b > a]
    assert sum(widths) == bits
    q = torch.tensor(values)
    for encoding in ENCODINGS:
        slices = bit_slices(q, widths, encoding)
        weights = slice_weights(widths, encoding)
        rebuilt = sum(int(w) * s for w, s in zip(weights, slices, strict=True))
        assert torch.equal(rebuilt, q + encoding_bias(widths, encoding))
        for w, s in zip(widths, slices, strict=True):
            assert int(s.abs().max()) <= 2**w - 1
        if encoding != "sign_magnitude":
            assert int(slices.min()) >= 0


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.data())
def test_offset_binary_slices_any_widths(widths, data):
    """Offset binary has no sign slice: any widths cut q + 2**(bits-1) exactly."""
    bits = sum(widths)
    values = data.draw(st.lists(st.integers(-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1),
                                min_size=1, max_size=20))
    q = torch.tensor(values)
    slices = bit_slices(q, widths, "offset_binary")
    rebuilt = sum(int(w) * s for w, s in zip(slice_weights(widths, "offset_binary"), slices,
                                              strict=True))
    assert torch.equal(rebuilt, q + 2 ** (bits - 1))
    assert int(slices.min()) >= 0
    assert all(int(s.max()) <= 2**w - 1 for w, s in zip(widths, slices, strict=True))


def test_int_quantization_scale_is_block_max():
    data = torch.tensor([[1.0, -2.0, 0.5, 0.25], [4.0, 0.0, 0.0, -1.0]], dtype=torch.float64)
    q, step = quantize(data, bits=8, bw_e=None, block=(1, 2))
    assert step.shape == (2, 2)
    assert torch.allclose(
        step, torch.tensor([[2 / 127, 0.5 / 127], [4 / 127, 1 / 127]], dtype=torch.float64)
    )
    assert torch.equal(q[:, 1], torch.tensor([-127, 0]))
    assert int(q.abs().max()) == 127


@pytest.mark.parametrize("bw_e, bits", [(5, 12), (8, 9), (8, 25)])  # FP16, BF16, FP32
def test_fp_formats_represent_their_own_values_exactly(bw_e, bits):
    mantissa_bits = bits - 2
    gen = torch.Generator().manual_seed(bw_e + bits)
    exponent = 3
    mantissas = torch.randint(
        -(2 ** (mantissa_bits + 1)) + 1, 2 ** (mantissa_bits + 1), (50,), generator=gen
    )
    mantissas[0] = 2 ** (mantissa_bits + 1) - 1  # the block's largest value: 1.11..1 * 2**3
    values = (mantissas.double() * 2.0 ** (exponent - mantissa_bits)).view(1, -1)
    q, step = quantize(values, bits, bw_e, block=(1, 50))
    assert float(step) == 2.0 ** (exponent - mantissa_bits)
    assert torch.equal(q.double() * step, values)


def test_fp_underflow_to_zero_and_exponent_floor():
    data = torch.tensor([[1.0, 2.0**-20]], dtype=torch.float64)
    q, _ = quantize(data, bits=9, bw_e=8, block=(1, 2))  # BF16-like: 7 fraction bits
    assert q[0, 1] == 0  # far below the block's exponent
    tiny = torch.tensor([[2.0**-30]], dtype=torch.float64)
    q, step = quantize(tiny, bits=9, bw_e=4, block=(1, 1))  # exponent clipped up to -8
    assert float(step) == 2.0 ** (-8 - 7) and q[0, 0] == 0


def test_zero_block_gives_zero_and_finite_scale():
    for bw_e in (None, 8):
        q, step = quantize(torch.zeros(4, 4, dtype=torch.float64), 8, bw_e, (2, 2))
        assert torch.all(q == 0) and torch.isfinite(step).all()


@pytest.mark.parametrize(
    "gran, n_blocks, rounded",
    [("per-matrix", 1, False), ("per-row", 6, False), (None, 1 * 2, False),
     # blocks shorter than an array along K are rounded up to whole arrays (64 of the 70)
     ("per-col", 2, True), ((32, 16), 1 * 2, True), ((64, 16), 1 * 2, False)],
)
def test_quant_gran_block_counts(gran, n_blocks, rounded):
    data = torch.randn(6, 70, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = SlicedData([1, 7], quant_gran=gran).slice_data_imp(ENGINE, data, transpose=True)
    assert x.block_step.numel() == n_blocks
    assert bool(caught) == rounded
    if rounded:
        assert "rounded up to 64, as the original mPimPy does" in str(caught[0].message)


def test_quantized_data_error_within_half_step():
    data = torch.randn(30, 40, dtype=torch.float64)
    for bw_e in (None, 6):
        x = SlicedData([1, 1, 2, 4], bw_e=bw_e).slice_data_imp(ENGINE, data)
        err = (x.quantized_data - data).abs()
        assert torch.all(err <= 0.5 * x.step() + 1e-15)
        assert x.slices.shape == (4, 30, 40)


def test_fp_exponent_range_of_bw_e():
    bw_e = 5
    top = 2.0 ** (2 ** (bw_e - 1) - 1)  # the largest exponent, 15
    SlicedData([1, 11], bw_e=bw_e).slice_data_imp(ENGINE, torch.tensor([[top * 1.9]]))
    with pytest.raises(ValueError, match="exponent range"):
        SlicedData([1, 11], bw_e=bw_e).slice_data_imp(ENGINE, torch.tensor([[top * 2]]))
    assert math.isfinite(top)


def test_float32_data_with_steps_below_float32_range():
    """A tiny FP block exponent gives a step float32 cannot hold; quantization stays exact."""
    data = torch.tensor([[3.0e-38, -1.5e-38, 0.0, 2.0e-39]], dtype=torch.float32)
    x = SlicedData([1, 1, 2, 4], bw_e=8, quant_gran="per-matrix")
    x.slice_data_imp(ENGINE, data)
    assert float(x.block_step) == 2.0 ** (-125 - 6)  # 3e-38 = 1.28 * 2**-125
    assert torch.isfinite(x.quantized_data).all()
    err = (x.quantized_data - data.double()).abs()
    assert torch.all(err <= 0.5 * x.step())


@pytest.mark.parametrize("widths", [[1, 1, 2, 4], [1, 3], [1, 5, 5, 5], [1, 4, 4, 4, 4, 4]])
@pytest.mark.parametrize("rdac, level_mapping", [(16, "integer"), (16, "spread"), (None, None)])
@pytest.mark.parametrize("k", [5, 64, 150])
def test_drive_codes_every_slice_of_every_element(widths, rdac, level_mapping, k):
    """The DAC codes (a table lookup up to CODE_TABLE_BITS, sliced element-wise beyond) against
    Python integers: two's complement, cut, scaled to the DAC (a 3-bit value u becomes 2u on
    16 codes with the integer mapping, round(15u / 7) with the spread; 5-bit values on 16 codes
    round either way), laid out per row-block."""
    from mpimpy.config import TileShape
    from mpimpy.peripherals import CODE_TABLE_BITS, drive

    bits = sum(widths)
    assert (bits <= CODE_TABLE_BITS) == (bits < 21)  # both paths are covered
    limit = 2 ** (bits - 1) - 1
    gen = torch.Generator().manual_seed(k)
    q = torch.randint(-limit, limit + 1, (3, k), generator=gen, dtype=torch.int32)
    q[0, :2] = torch.tensor([-limit, limit])
    rows = 64
    codes = drive(q, widths, rdac, 0.0, TileShape(rows, 8), gen, torch.float64,
                  level_mapping=level_mapping or "integer")
    rows_used = min(k, rows)
    assert codes.shape == (math.ceil(k / rows), rows_used, 3, len(widths))
    for t in range(codes.shape[0]):
        for m in range(3):
            for r in range(rows_used):
                col = t * rows + r
                value = int(q[m, col]) % 2**bits if col < k else 0  # padding drives nothing
                shift = bits
                for s, w in enumerate(widths):
                    shift -= w
                    part = (value >> shift) & (2**w - 1)
                    if rdac is None:
                        expected = part
                    elif level_mapping == "integer" and rdac - 1 >= 2**w - 1:
                        expected = part * ((rdac - 1) // (2**w - 1))
                    else:
                        expected = round(part / (2**w - 1) * (rdac - 1))
                    assert codes[t, r, m, s] == expected, (t, m, s, r)


@pytest.mark.parametrize("widths", [(1, 1, 2, 4), (4, 4, 4, 4, 4)])  # table lookup, element-wise
@pytest.mark.parametrize("vnoise", [0.0, 0.05])
def test_drive_into_reused_buffers_gives_the_fresh_codes_and_noise(widths, vnoise):
    """Buffers handed back from an earlier, larger drive (stale contents, more elements than
    needed) hold exactly the codes, sums and noise a fresh drive returns from the same seed."""
    from mpimpy.config import TileShape
    from mpimpy.peripherals import drive, driven_shape

    limit = 2 ** (sum(widths) - 1) - 1
    q = torch.randint(-limit, limit + 1, (7, 150), generator=torch.Generator().manual_seed(0))
    tile = TileShape(64, 8)
    size = math.prod(driven_shape(q.shape, widths, tile))
    out, scratch = torch.full((size + 99,), 7.0), torch.full((size + 99,), -3.0)

    def run(**buffers):
        gen = torch.Generator().manual_seed(5)
        return drive(q, widths, 16, vnoise, tile, gen, torch.float32, return_sums=True,
                     **buffers)

    (codes, sums), (fresh, fresh_sums) = run(out=out, scratch=scratch), run()
    assert codes.shape == fresh.shape == driven_shape(q.shape, widths, tile)
    assert torch.equal(codes, fresh) and torch.equal(sums, fresh_sums)
    assert codes.data_ptr() == out.data_ptr()  # written in place, no fresh tensor


def test_drive_rejects_a_buffer_that_cannot_hold_the_codes():
    from mpimpy.config import TileShape
    from mpimpy.peripherals import drive

    q = torch.zeros(3, 70, dtype=torch.int64)
    gen = torch.Generator().manual_seed(0)
    needed = 2 * 64 * 3 * 4  # two row-blocks of 64 word lines, 3 vectors, 4 slices
    expected = f"must be a contiguous torch.float32 tensor of at least {needed} elements, got"
    for name, buffer, got in (
            ("out", torch.empty(needed - 1), f"torch.float32 of {needed - 1}"),
            ("out", torch.empty(needed, dtype=torch.float64), f"torch.float64 of {needed}"),
            ("scratch", torch.empty(2 * needed)[::2], f"torch.float32 of {needed}")):
        with pytest.raises(ValueError, match=f"^{name} {expected} {got}$"):
            drive(q, (1, 1, 2, 4), 16, 0.05, TileShape(64, 8), gen, torch.float32,
                  **{name: buffer})

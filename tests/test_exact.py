"""Noise-free simulation equals the exact product of the quantized operands.

With no variation, noise or faults, a DAC and ADC that lose nothing, the crossbar computes
integer dot products of slices exactly, so the whole pipeline must reproduce
``x.quantized_data @ mat.quantized_data`` (float64) to round-off, whatever the format, shape,
block size, slicing, array size or mapping.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mpimpy import DPETensor, SlicedData, execution
from mpimpy.config import INPUT_ENCODINGS
from mpimpy.mapping import MAPPINGS as MAPPING_CLASSES


def compositions(total_bits, max_width):
    """All lists of widths <= max_width adding up to total_bits, most significant first."""
    if total_bits == 0:
        return [[]]
    return [[w, *tail] for w in range(1, min(total_bits, max_width) + 1)
            for tail in compositions(total_bits - w, max_width)]


def splits(total_bits, max_width):
    """All slice methods [1, ...] (a sign slice first) with the given total and widths <=
    max_width."""
    return [[1, *rest] for rest in compositions(total_bits - 1, max_width)]


def any_splits(total_bits, max_width):
    """Slice methods whose first width is free too (offset-binary weights have no sign slice)."""
    return compositions(total_bits, max_width)


#: every mapping, and those that store a bias with unit columns ("bias+unit")
MAPPINGS = [*MAPPING_CLASSES, *(f"{name}+unit" for name, mapping in MAPPING_CLASSES.items()
                                if mapping.stores_bias)]


def exact_g_level(widths):
    """Smallest g_level whose levels hold every slice value of these widths exactly."""
    return math.lcm(*(2**w - 1 for w in widths)) + 1


def noise_free_engine(widths_w, mapping="offset", **kwargs):
    """``mapping`` is an engine mapping, or ``"bias+unit"`` for the bias mapping with unit
    columns."""
    kwargs.setdefault("rdac", None)
    kwargs.setdefault("radc", None)
    kwargs.setdefault("g_level", exact_g_level(widths_w))
    if mapping.endswith("+unit"):
        mapping, kwargs["unit_column"] = mapping.removesuffix("+unit"), True
    return DPETensor(var=0.0, vnoise=0.0, read_noise=0.0, mapping=mapping, seed=0, **kwargs)


def simulate(engine, x_data, w_data, x_widths, w_widths, bw_e, tile, gran_x, gran_w):
    x = SlicedData(x_widths, bw_e=bw_e, paral_size=tile, quant_gran=gran_x)
    mat = SlicedData(w_widths, bw_e=bw_e, paral_size=tile, quant_gran=gran_w)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, w_data)
    return engine(x, mat), x.quantized_data @ mat.quantized_data


@st.composite
def products(draw):
    rows = draw(st.integers(1, 9))
    cols = draw(st.integers(1, 9))
    k = draw(st.integers(1, 3 * rows + 2))
    n = draw(st.integers(1, 3 * cols + 2))
    m = draw(st.integers(1, 7))
    x_dims = draw(st.sampled_from(["1d", "2d", "3d"]))
    w_dims = draw(st.sampled_from(["1d", "2d"]))
    bits_x, bits_w = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    x_widths = draw(st.sampled_from(splits(bits_x, 4)))
    w_widths = draw(st.sampled_from(splits(bits_w, 4)))
    bw_e = draw(st.sampled_from([None, None, 3, 5, 8]))
    # blocks along K must cover whole arrays: a multiple of rows, or the whole axis
    gran_x = draw(st.sampled_from([None, "per-matrix", "per-row", (rows * 2, 3)]))
    gran_w = draw(st.sampled_from([None, "per-matrix", "per-col", (rows, 2)]))
    mapping = draw(st.sampled_from(MAPPINGS))
    if not MAPPING_CLASSES[mapping.removesuffix("+unit")].sign_slice:
        w_widths = draw(st.sampled_from(any_splits(bits_w, 4)))
    input_encoding = draw(st.sampled_from(INPUT_ENCODINGS))
    if input_encoding == "offset_binary":
        x_widths = draw(st.sampled_from(any_splits(bits_x, 4)))
    # the integer level mapping is exact on any device that holds every slice value, whether
    # or not g_level - 1 is a multiple of 2**w - 1 (e.g. 3-bit slices on 16 levels)
    # (a sign slice without an array of its own needs no levels)
    sign_array = MAPPING_CLASSES[mapping.removesuffix("+unit")].sign_array
    fewest = 2 ** max(w_widths[1:] if not sign_array and len(w_widths) > 1 else w_widths)
    g_level = draw(st.sampled_from([exact_g_level(w_widths), fewest, fewest + 3, 64]))
    seed = draw(st.integers(0, 2**31))
    return dict(
        rows=rows,
        cols=cols,
        k=k,
        n=n,
        m=m,
        x_dims=x_dims,
        w_dims=w_dims,
        x_widths=x_widths,
        w_widths=w_widths,
        bw_e=bw_e,
        gran_x=gran_x,
        gran_w=gran_w,
        mapping=mapping,
        input_encoding=input_encoding,
        g_level=g_level,
        seed=seed,
    )


def make_data(p):
    gen = torch.Generator().manual_seed(p["seed"])

    # a wide dynamic range exercises block scales and FP exponents
    def draw(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * torch.exp2(
            torch.randint(-6, 6, shape, generator=gen).double()
        )

    x_shape = {"1d": (p["k"],), "2d": (p["m"], p["k"]), "3d": (2, p["m"], p["k"])}[p["x_dims"]]
    w_shape = (p["k"],) if p["w_dims"] == "1d" else (p["k"], p["n"])
    return draw(*x_shape), draw(*w_shape)


@given(products())
def test_noise_free_equals_quantized_product(p):
    x_data, w_data = make_data(p)
    if p["bw_e"] is not None:  # keep data inside a small exponent range
        limit = 2.0 ** (2 ** (p["bw_e"] - 1) - 1)
        x_data, w_data = x_data.clamp(-limit, limit), w_data.clamp(-limit, limit)
    engine = noise_free_engine(p["w_widths"], p["mapping"], g_level=p["g_level"],
                               input_encoding=p["input_encoding"])
    y, ref = simulate(
        engine,
        x_data,
        w_data,
        p["x_widths"],
        p["w_widths"],
        p["bw_e"],
        (p["rows"], p["cols"]),
        p["gran_x"],
        p["gran_w"],
    )
    assert y.shape == torch.matmul(x_data, w_data).shape
    assert y.dtype == torch.float64
    tol = 1e-12 * max(float(ref.abs().max()), 1e-300)
    assert float((y - ref).abs().max()) <= tol


@pytest.mark.parametrize("input_encoding", INPUT_ENCODINGS)
@pytest.mark.parametrize("mapping", ["offset", "diffpair"])
@pytest.mark.parametrize("bw_e", [None, 8])
def test_adc_of_one_code_unit_is_exact(mapping, bw_e, input_encoding):
    """The slice-pair path (ADC on): an ADC whose level is one code unit and whose range holds
    every current loses nothing, and a real DAC of 2**w levels is exact for w-bit slices, for
    every input encoding (sign-magnitude inputs drive both polarities: a bipolar ADC)."""
    rows, widths = 8, [1, 1, 2, 4]
    rdac, g_level = 16, 16  # 15 is a multiple of 2**w - 1 for w in (1, 2, 4)
    full = rows * (rdac - 1) * (g_level - 1)  # worst-case current in code units
    bipolar = mapping == "diffpair" or input_encoding == "sign_magnitude"
    radc = 2 * full + 1 if bipolar else full + 1
    engine = DPETensor(var=0, vnoise=0, rdac=rdac, radc=radc, g_level=g_level, mapping=mapping,
                       input_encoding=input_encoding, adc_range="full", seed=1)
    gen = torch.Generator().manual_seed(3)
    x_data = torch.randn(13, 30, generator=gen, dtype=torch.float64)
    w_data = torch.randn(30, 11, generator=gen, dtype=torch.float64)
    y, ref = simulate(engine, x_data, w_data, widths, widths, bw_e, (rows, 4), None, None)
    assert float((y - ref).abs().max()) <= 1e-12 * float(ref.abs().max())


@pytest.mark.parametrize("rdac", [None, 16])
def test_slices_that_do_not_divide_the_levels_are_exact(rdac):
    """[1, 3, 4] on 16 levels: 15 is no multiple of 7, yet with the integer level mapping every
    3-bit value sits on a level that is the value times 2 (and a 16-code DAC drives it as the
    value times 2): exact. The original's spread mapping rounds 3-bit values onto 15/7 levels
    per unit, about 5 % off (8.6 % with the 16-code DAC rounding them too)."""
    gen = torch.Generator().manual_seed(11)
    x_data = torch.randn(50, 64, generator=gen, dtype=torch.float64)
    w_data = torch.randn(64, 40, generator=gen, dtype=torch.float64)
    widths = [1, 3, 4]
    errors = {}
    for level_mapping in ("integer", "spread"):
        engine = noise_free_engine(widths, g_level=16, rdac=rdac, level_mapping=level_mapping)
        y, ref = simulate(engine, x_data, w_data, widths, widths, None, (64, 64), None, None)
        errors[level_mapping] = float(torch.linalg.norm(y - ref) / torch.linalg.norm(ref))
    assert errors["integer"] < 1e-14
    assert 0.03 < errors["spread"] < 0.12


def test_same_total_bits_any_split_same_result():
    gen = torch.Generator().manual_seed(7)
    x_data = torch.randn(5, 40, generator=gen, dtype=torch.float64)
    w_data = torch.randn(40, 9, generator=gen, dtype=torch.float64)
    results = []
    for widths in ([1, 7], [1, 1, 2, 4], [1, 3, 3, 1], [1, 1, 1, 1, 1, 1, 1, 1]):
        engine = noise_free_engine(widths)
        y, _ = simulate(engine, x_data, w_data, widths, widths, None, (16, 16), None, None)
        results.append(y)
    for y in results[1:]:
        np.testing.assert_allclose(y.numpy(), results[0].numpy(), rtol=0, atol=1e-12)


def test_float32_inputs_give_float32_exact_integers():
    """float32 data: integer slice products stay exact in float32 arithmetic."""
    gen = torch.Generator().manual_seed(2)
    x_data = torch.randint(-127, 128, (20, 64), generator=gen).float()
    w_data = torch.randint(-127, 128, (64, 10), generator=gen).float()
    engine = noise_free_engine([1, 1, 2, 4])
    y, ref = simulate(
        engine,
        x_data,
        w_data,
        [1, 1, 2, 4],
        [1, 1, 2, 4],
        None,
        (64, 64),
        "per-matrix",
        "per-matrix",
    )
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.double().numpy(), ref.numpy(), rtol=1e-6)


def python_slices(value: int, widths, signed_magnitude: bool) -> list[int]:
    """Slices of one integer with Python arithmetic, most significant first."""
    bits = sum(widths)
    magnitude = abs(value) if signed_magnitude else value % 2**bits
    out, shift = [], bits
    for w in widths:
        shift -= w
        out.append((magnitude >> shift) & (2**w - 1))
    if signed_magnitude:
        out = [part if value >= 0 else -part for part in out]
    return out


# (chunk_elements, calibration_elements): one chunk; chunks of a few vectors x 1 row-block (with
# per-array ranges, x 1 column block: a group of 2 chunks) whose currents are kept between
# calibrating and converting; the same chunks read twice; chunks of every vector x 2
# row-blocks (of 3: the last chunk holds one); with per-array ranges, groups of one chunk,
# every vector x 1 column block (of 2: 4 columns, then 2, whose chunks hold 2 row-blocks)
CHUNKINGS = [(2**22, 2**27), (200, 2**27), (200, 0), (960, 2**27), (320, 0)]


@pytest.mark.parametrize("chunking", CHUNKINGS,
                         ids=["one-chunk", "kept", "read-twice", "row-block-pairs",
                              "column-blocks"])
@pytest.mark.parametrize("adc_range, layout", [
    ("batch-oracle", "whole row-blocks"), ("batch-oracle", "pair-major"),
    ("batch-oracle-symmetric", "whole row-blocks")])
@pytest.mark.parametrize("mapping", ["offset", "diffpair"])
def test_calibrated_adc_against_a_slice_pair_reference(mapping, adc_range, layout, chunking,
                                                       monkeypatch):
    """A coarse calibrated ADC, rebuilt pair by pair: every (input slice, weight slice) pair's
    currents are integer dot products. ``"batch-oracle"``: each array's ADC (one row-block, one
    column block of 4, one slice pair) has the range [min, max] of the currents it converts over
    the whole product, with all radc levels; ``"batch-oracle-symmetric"``: one range per pair,
    its largest current (|current| for the bipolar ADC, (radc - 1) // 2 levels a side), zero
    at code 0. Each current is rounded to its range's levels. Whatever the chunks the engine
    reads the currents in, and whether it reads whole row-blocks or (as it does for large ones)
    slice pair by slice pair and column block by column block, each range is the one of all the
    currents it converts. (float64 operands: the float read, whose integer sums are exact.)"""
    monkeypatch.setattr(execution, "PAIR_MAJOR_CURRENTS",
                        0 if layout == "pair-major" else 2**62)
    widths, rows, radc, g_level = [1, 1, 2, 4], 8, 16, 16
    # Conductances that are sums of powers of two, so the engine's currents are the exact
    # integers below (integer currents often sit exactly half-way between two ADC levels, and
    # the round-off of LGS + level * step would decide those ties at random)
    lgs, step = 2.0**-17, 2.0**-14
    engine = DPETensor(var=0.0, vnoise=0.0, rdac=None, radc=radc, g_level=g_level,
                       LGS=lgs, HGS=lgs + (g_level - 1) * step, mapping=mapping,
                       adc_range=adc_range, seed=0, chunk_elements=chunking[0],
                       calibration_elements=chunking[1])
    gen = torch.Generator().manual_seed(7)
    x = SlicedData(widths, paral_size=(rows, 4), quant_gran="per-matrix")
    mat = SlicedData(widths, paral_size=(rows, 4), quant_gran="per-matrix")
    x.slice_data_imp(engine, torch.randn(5, 20, generator=gen, dtype=torch.float64),
                     transpose=True)
    mat.slice_data_imp(engine, torch.randn(20, 6, generator=gen, dtype=torch.float64))
    y = engine(x, mat)

    diffpair = mapping == "diffpair"
    qx, qw = x.q.tolist(), mat.q.tolist()
    xs = [[python_slices(v, widths, False) for v in row] for row in qx]  # [m][k][s]
    ws = [[python_slices(v, widths, diffpair) for v in row] for row in qw]  # [k][n][a]
    position = [sum(widths[i + 1:]) for i in range(len(widths))]
    x_weight = [(-1 if s == 0 else 1) * 2 ** position[s] for s in range(len(widths))]
    arrays = range(1, len(widths)) if diffpair else range(len(widths))
    w_weight = {a: (1 if diffpair or a else -1) * 2 ** position[a] for a in arrays}
    # conductance levels (integers: g_level - 1 = 15 is a multiple of every 2**w - 1)
    level = {a: (g_level - 1) // (2 ** widths[a] - 1) for a in arrays}
    m, k, n = len(qx), len(qw), len(qw[0])
    blocks = [range(t, min(t + rows, k)) for t in range(0, k, rows)]
    currents = {(s, a): [[[sum(xs[i][kk][s] * ws[kk][j][a] * level[a] for kk in block)
                           for j in range(n)] for i in range(m)] for block in blocks]
                for s in range(len(widths)) for a in arrays}
    top = (radc - 1) // 2 if diffpair else radc - 1
    expected = torch.zeros(m, n, dtype=torch.float64)
    for (s, a), per_block in currents.items():
        values = torch.tensor(per_block, dtype=torch.float64)  # (blocks, m, n)
        if adc_range == "batch-oracle":
            read = torch.empty_like(values)
            for t in range(len(blocks)):
                for c0 in range(0, n, 4):  # the columns of one array
                    array = values[t, :, c0:c0 + 4]
                    low, high = float(array.min()), float(array.max())
                    step = (high - low) / (radc - 1) if high > low else 1.0
                    read[t, :, c0:c0 + 4] = low + step * torch.round(
                        (array - low) / step).clamp(0, radc - 1)
        else:
            peak = float(values.abs().max() if diffpair else values.max().clamp_min(0))
            step = peak / top if peak > 0 else 1.0
            read = step * torch.round(values / step).clamp(-top if diffpair else 0, top)
        expected += x_weight[s] * w_weight[a] / level[a] * read.sum(0)
    expected *= float(x.block_step.max()) * float(mat.block_step.max())
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("adc_range", ["full", 0.5])
@pytest.mark.parametrize("mapping", ["offset", "diffpair"])
def test_fixed_range_adc_at_the_ends_of_its_range_against_a_slice_pair_reference(mapping,
                                                                                 adc_range):
    """Inputs and weights at their extremes (every DAC code and level at the top, of both
    signs), rebuilt pair by pair with a coarse fixed-range ADC: with the full range the largest
    currents land exactly on the top code and none passes it (the engine then skips the ADC's
    saturation, which cannot act); with half the range they saturate, and the engine must clip
    them at the end codes."""
    widths, rows, radc, g_level, rdac = [1, 1, 2, 4], 8, 16, 16, 16
    lgs, level_step = 2.0**-17, 2.0**-14  # powers of two: exact integer currents
    engine = DPETensor(var=0.0, vnoise=0.0, rdac=rdac, radc=radc, g_level=g_level, LGS=lgs,
                       HGS=lgs + (g_level - 1) * level_step, mapping=mapping,
                       adc_range=adc_range, seed=0)
    top_value = 2 ** (sum(widths) - 1) - 1
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0])
    x_data = torch.stack([torch.ones(24), -torch.ones(24), signs.repeat(6),
                          signs.repeat_interleave(6)]).double()
    w_data = torch.stack([torch.ones(24), -torch.ones(24), signs.repeat(6),
                          -signs.repeat_interleave(6), torch.ones(24)], dim=1).double()
    x = SlicedData(widths, paral_size=(rows, 4), quant_gran="per-matrix")
    mat = SlicedData(widths, paral_size=(rows, 4), quant_gran="per-matrix")
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, w_data)
    assert x.q.abs().max() == top_value and mat.q.abs().max() == top_value
    y = engine(x, mat)

    diffpair = mapping == "diffpair"
    xs = [[python_slices(v, widths, False) for v in row] for row in x.q.tolist()]
    ws = [[python_slices(v, widths, diffpair) for v in row] for row in mat.q.tolist()]
    position = [sum(widths[i + 1:]) for i in range(len(widths))]
    x_weight = [(-1 if s == 0 else 1) * 2 ** position[s] for s in range(len(widths))]
    arrays = range(1, len(widths)) if diffpair else range(len(widths))
    w_weight = {a: (1 if diffpair or a else -1) * 2 ** position[a] for a in arrays}
    code = [(rdac - 1) // (2**w - 1) for w in widths]  # DAC codes per slice unit
    level = [(g_level - 1) // (2**w - 1) for w in widths]  # levels per slice unit
    top = (radc - 1) // 2 if diffpair else radc - 1
    step = (rdac - 1) * rows * (g_level - 1) * (1.0 if adc_range == "full" else 0.5) / top
    m, k, n = len(xs), len(ws), len(ws[0])
    expected = torch.zeros(m, n, dtype=torch.float64)
    clipped = 0
    for s in range(len(widths)):
        for a in arrays:
            for t in range(0, k, rows):
                currents = torch.tensor([[sum(xs[i][kk][s] * code[s] * ws[kk][j][a] * level[a]
                                              for kk in range(t, t + rows))
                                          for j in range(n)] for i in range(m)],
                                        dtype=torch.float64)
                codes = torch.round(currents / step)
                clipped += int((codes.abs() > top).sum())
                codes = codes.clamp(-top if diffpair else 0, top)
                expected += x_weight[s] * w_weight[a] / (code[s] * level[a]) * step * codes
    expected *= float(x.block_step.max()) * float(mat.block_step.max())
    assert (clipped > 0) == (adc_range != "full")  # the case touches what it is meant to
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


KERNEL_CASES = [  # engine settings, operand format, tile, whether the read is of integers
    (dict(), None, (64, 64), True),
    (dict(adc_range="batch-oracle"), None, (64, 64), True),
    (dict(adc_range="batch-oracle-symmetric", mapping="diffpair"), None, (32, 16), True),
    (dict(adc_range=0.5, mapping="diffpair", radc=2**5), 8, (64, 64), True),
    (dict(adc_range="batch-oracle", input_encoding="offset_binary", chunk_elements=5000), 8,
     (16, 16), True),
    (dict(input_encoding="sign_magnitude", mapping="diffpair", adc_range="batch-oracle"), None,
     (32, 32), True),
    # every cell's LGS current rides on a bias-mapped read: levels + LGS / step, not integers
    (dict(mapping="bias", unit_column=True), None, (32, 32), False),
    (dict(rdac=2**8), None, (64, 64), False),  # 8-bit DAC codes (up to 255) exceed int8
]


@pytest.mark.parametrize("settings, bw_e, tile, integers", KERNEL_CASES)
def test_the_integer_read_gives_the_float_reads_numbers(settings, bw_e, tile, integers):
    """A noise-free float32 read of integer codes on integer levels runs on the integer matrix
    units (int8 in, exact int32 sums) where the CPU has them, and its products are the float
    read's, element for element: currents, ADC rounding, shift-add and all (K not a multiple of
    the array, a partly filled last row-block, 1-D and batched inputs)."""
    from mpimpy.crossbar import int8_matmul_fits

    gen = torch.Generator().manual_seed(3)
    x_data = torch.randn(2, 37, 150, generator=gen)
    w_data = torch.randn(150, 45, generator=gen)
    kernels, results = [], []
    for read_kernel in ("auto", "float"):
        engine = DPETensor(var=0.0, vnoise=0.0, seed=0, read_kernel=read_kernel, **settings)
        x = SlicedData([1, 1, 2, 4], bw_e=bw_e, paral_size=tile)
        mat = SlicedData([1, 1, 2, 4], bw_e=bw_e, paral_size=tile)
        mat.slice_data_imp(engine, w_data)
        outputs = []
        for data in (x_data, x_data[0, 0]):
            x.slice_data_imp(engine, data, transpose=True)
            outputs.append(engine(x, mat))
            kernels.append(engine.last_read_kernel)
        results.append(outputs)
    for auto, float_read in zip(*results, strict=True):
        assert auto.dtype == torch.float32 and torch.equal(auto, float_read)
    integer_units = integers and int8_matmul_fits(torch.device("cpu"), 37, 64, 64)
    assert kernels == ["int8" if integer_units else "float32"] * 2 + ["float32"] * 2


@pytest.mark.parametrize("settings", [dict(var=0.05), dict(vnoise=0.05),
                                      dict(read_noise=0.05), dict(wire_resistance=2.93)])
def test_reads_with_noise_or_wires_stay_float(settings):
    """Variation, input or read noise and wires make the currents non-integer: the read stays in
    the operands' float dtype, and a float64 product stays in float64 even when exact."""
    gen = torch.Generator().manual_seed(4)
    for dtype, extra in ((torch.float32, settings), (torch.float64, {})):
        engine = DPETensor(seed=0, **{"var": 0.0, "vnoise": 0.0, **extra})
        x, mat = SlicedData([1, 1, 2, 4]), SlicedData([1, 1, 2, 4])
        mat.slice_data_imp(engine, torch.randn(64, 8, generator=gen, dtype=dtype))
        x.slice_data_imp(engine, torch.randn(20, 64, generator=gen, dtype=dtype),
                         transpose=True)
        assert engine(x, mat).dtype == dtype
        assert engine.last_read_kernel == str(dtype).removeprefix("torch.")


def test_read_kernel_is_validated():
    with pytest.raises(ValueError, match="read_kernel must be 'auto' or 'float'"):
        DPETensor(read_kernel="int4")


@pytest.mark.parametrize("adc_range", ["full", "batch-oracle"])
def test_the_integer_read_gives_the_float_reads_numbers_on_many_chunks(adc_range):
    """A product large enough for several chunks of several row-blocks each (default chunk
    sizes): the int8 read and the float read still add the same currents in the same order."""
    gen = torch.Generator().manual_seed(5)
    x_data = torch.randn(1500, 150, generator=gen)
    w_data = torch.randn(150, 45, generator=gen)
    results = []
    for read_kernel in ("auto", "float"):
        engine = DPETensor(var=0.0, vnoise=0.0, seed=0, read_kernel=read_kernel,
                           adc_range=adc_range)
        x, mat = SlicedData([1, 1, 2, 4]), SlicedData([1, 1, 2, 4])
        mat.slice_data_imp(engine, w_data)
        x.slice_data_imp(engine, x_data, transpose=True)
        results.append(engine(x, mat))
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8])
def test_read_currents_in_pairs_are_the_one_products_currents(dtype):
    """Read slice pair by slice pair (input slices as groups of vectors, arrays as groups of
    columns), every pair's currents are those of the one product of all slices on all arrays,
    exactly: integer codes on integer levels, float32 or int8 (exact int32 sums)."""
    from mpimpy.crossbar import int8_matmul_fits, read_currents

    if dtype == torch.int8 and not int8_matmul_fits(torch.device("cpu"), 5, 16, 8):
        pytest.skip("no integer matrix units on this CPU: the engine reads in float")
    gen = torch.Generator().manual_seed(11)
    tk, n_x, n_a, m, rows, cols = 2, 3, 4, 5, 16, 8
    codes = torch.randint(0, 16, (tk, n_x, m, rows), generator=gen)
    levels = torch.randint(-15, 16, (tk, n_a, rows, cols), generator=gen)
    # one group: (Tk, 1, M * n_x, rows) vector-major, every array's columns side by side
    one_codes = codes.permute(0, 2, 1, 3).reshape(tk, 1, m * n_x, rows)
    one_matrix = levels.permute(0, 2, 1, 3).reshape(tk, 1, rows, n_a * cols)
    one = read_currents(one_codes.to(dtype).contiguous(), one_matrix.to(dtype).contiguous(),
                        None, 0.0, gen)
    pairs = read_currents(codes.to(dtype).contiguous(), levels.to(dtype).contiguous(),
                          None, 0.0, gen)
    assert one.shape == (tk, 1, 1, m * n_x, n_a * cols)
    assert pairs.shape == (tk, n_x, n_a, m, cols)
    expected = torch.einsum("txmr,targ->txamg", codes, levels)  # int64: exact
    assert torch.equal(pairs.long(), expected)
    one_as_pairs = one.view(tk, m, n_x, n_a, cols).permute(0, 2, 3, 1, 4)
    assert torch.equal(one_as_pairs.long(), expected)


def test_read_noise_in_pairs_has_the_per_output_variance():
    """Read slice pair by slice pair, each output's read noise is still one Gaussian of variance
    ``read_noise**2 * sum_k V_k**2 G_k**2`` of its own pair's codes and cells."""
    from mpimpy.crossbar import read_currents

    gen = torch.Generator().manual_seed(12)
    tk, n_x, n_a, m, rows, cols, sigma = 2, 3, 4, 2000, 16, 8, 0.05
    codes = torch.randint(0, 16, (tk, n_x, m, rows), generator=gen).double()
    levels = torch.randint(1, 16, (tk, n_a, rows, cols), generator=gen).double()
    noisy = read_currents(codes, levels, levels**2, sigma, gen)
    exact = torch.einsum("txmr,targ->txamg", codes, levels)
    std = torch.einsum("txmr,targ->txamg", codes**2, levels**2).sqrt() * sigma
    z = ((noisy - exact) / std).flatten()
    n = z.numel()
    # mean of n standard normals has sd 1/sqrt(n), their sample variance relative sd sqrt(2/n)
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)

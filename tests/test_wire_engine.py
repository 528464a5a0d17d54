"""Wire resistance inside the engine: every array read goes through the circuit."""

import pytest
import torch

from mpimpy import RE, DPETensor, SlicedData
from mpimpy.crossbar import solve
from mpimpy.slicing import slice_weights

WIDTHS = [1, 1, 2, 4]


def operands(engine, m=6, k=20, n=7, tile=(8, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_data = torch.randn(m, k, generator=gen, dtype=torch.float64)
    w_data = torch.randn(k, n, generator=gen, dtype=torch.float64)
    x = SlicedData(WIDTHS, paral_size=tile).slice_data_imp(engine, x_data, transpose=True)
    mat = SlicedData(WIDTHS, paral_size=tile).slice_data_imp(engine, w_data)
    return x, mat


def reference_product(engine, x, mat):
    """The simulated product rebuilt array by array with crossbar.solve (ideal DAC and ADC):
    each array's currents, minus its reference column's, decoded and shifted-and-added."""
    cfg = engine.config
    arrays = engine.programmed(mat)
    rows, cols = arrays.tile.rows, arrays.tile.cols
    qx, scale_x, _ = x.role_matrix("input", rows)
    q_w, scale_w, _ = mat.role_matrix("weight", rows)
    m, k = qx.shape
    n = q_w.shape[1]
    x_slices = torch.stack([(torch.remainder(qx, 2**8) >> s) & (2**w - 1) for s, w in
                            zip([7, 6, 4, 0], WIDTHS, strict=True)]).double()
    x_weights, w_weights = slice_weights(WIDTHS), slice_weights(WIDTHS)
    y = torch.zeros(m, n, dtype=torch.float64)
    for tk in range(arrays.positive.shape[1]):
        k0, k1 = tk * rows, min((tk + 1) * rows, k)
        for tn in range(arrays.positive.shape[2]):
            n0, n1 = tn * cols, min((tn + 1) * cols, n)
            for i, xw in enumerate(x_weights):
                volts = torch.zeros(m, rows, dtype=torch.float64)
                volts[:, : k1 - k0] = x_slices[i, :, k0:k1] / (2 ** WIDTHS[i] - 1) * cfg.vread
                for a, j in enumerate(arrays.slice_index):
                    g = arrays.positive[a, tk, tn]
                    g = torch.cat([g, torch.full((rows, 1), cfg.LGS, dtype=torch.float64)], 1)
                    currents = solve(volts, g, cfg.wire_resistance)
                    signal = currents[:, :-1] - currents[:, -1:]
                    # amperes -> product of slice values
                    value = signal / (cfg.vread * (cfg.HGS - cfg.LGS)) * (2 ** WIDTHS[j] - 1) \
                        * (2 ** WIDTHS[i] - 1)
                    value = value[:, : n1 - n0] * xw * w_weights[j]
                    y[:, n0:n1] += value * scale_x[:, tk:tk + 1] * scale_w[tk:tk + 1, n0:n1]
    return y


@pytest.mark.parametrize("r", [2.93, (5.0, 0.5), (0.0, 3.0)])
def test_engine_matches_array_by_array_circuit_solves(r):
    engine = DPETensor(var=0.1, vnoise=0, rdac=None, radc=None, g_level=16, HGS=1e-4,
                       wire_resistance=r, seed=3)
    x, mat = operands(engine)
    y = engine(x, mat)
    ref = reference_product(engine, x, mat)
    assert float((y - ref).abs().max()) <= 1e-9 * float(ref.abs().max())


def test_ir_drop_grows_with_resistance_and_vanishes_at_zero():
    errors = []
    for r in (0.0, 1e-6, 1.0, 10.0, 100.0):
        engine = DPETensor(var=0, vnoise=0, rdac=None, radc=None, HGS=1e-4, wire_resistance=r,
                           seed=0)
        x, mat = operands(engine, m=20, k=64, n=32, tile=(32, 32))
        errors.append(RE(x.quantized_data @ mat.quantized_data, engine(x, mat)))
    assert errors[0] < 1e-12 and errors[1] < 1e-6
    assert errors[1] < errors[2] < errors[3] < errors[4]


def test_ir_drop_shrinks_positive_currents():
    engine = DPETensor(var=0, vnoise=0, rdac=None, radc=None, HGS=1e-3, wire_resistance=5.0,
                       seed=0, mapping="diffpair")
    x_data, w_data = torch.rand(4, 64, dtype=torch.float64), torch.rand(64, 8, dtype=torch.float64)
    x = SlicedData(WIDTHS).slice_data_imp(engine, x_data, transpose=True)
    mat = SlicedData(WIDTHS).slice_data_imp(engine, w_data)
    y, ideal = engine(x, mat), x.quantized_data @ mat.quantized_data
    assert torch.all(y < ideal) and torch.all(y > 0)


def test_wire_resistance_programmed_once_and_reproducible():
    engine = DPETensor(var=0.05, vnoise=0, wire_resistance=2.93, seed=1)
    x, mat = operands(engine)
    first = engine(x, mat)
    assert torch.equal(first, engine(x, mat))
    again = DPETensor(var=0.05, vnoise=0, wire_resistance=2.93, seed=1)
    assert torch.equal(first, again(*operands(again)))


@pytest.mark.parametrize("bad", [-1.0, (1.0, -0.1), float("nan"), (1.0, 2.0, 3.0)])
def test_bad_wire_resistance(bad):
    with pytest.raises(ValueError, match="wire_resistance"):
        DPETensor(wire_resistance=bad)


@pytest.mark.parametrize("mapping", ["offset", "diffpair"])
def test_float32_products_solve_circuits_in_float32_closely(mapping):
    """float32 data: the circuits are solved in float32, within 1e-4 of the float64 result."""
    results = {}
    for dtype in (torch.float32, torch.float64):
        engine = DPETensor(var=0.05, vnoise=0, rdac=None, radc=None, HGS=1e-4,
                           wire_resistance=2.93, mapping=mapping, seed=2)
        gen = torch.Generator().manual_seed(0)
        x_data = torch.randn(6, 100, generator=gen).to(dtype)
        w_data = torch.randn(100, 40, generator=gen).to(dtype)
        x = SlicedData(WIDTHS).slice_data_imp(engine, x_data, transpose=True)
        mat = SlicedData(WIDTHS).slice_data_imp(engine, w_data)
        results[dtype] = engine(x, mat).double()
    scale = float(results[torch.float64].abs().max())
    assert float((results[torch.float32] - results[torch.float64]).abs().max()) <= 1e-4 * scale

"""Tests of the wire-resistance crossbar solver in ``mpimpy.crossbar``.

The reference is an independent, plain nodal analysis written here: every word-line and
bit-line node is an unknown, every wire segment, cell and source is stamped into a sparse
conductance matrix, and scipy's sparse LU solves it. It shares no code with the solver.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpimpy.crossbar import CircuitSolution, solve, transfer_matrix

TOLERANCE = 1e-6  # max |I - I_ref| <= TOLERANCE * max |I_ref|


# ----------------------------------------------------------------------------------------
# Independent reference: sparse nodal analysis
# ----------------------------------------------------------------------------------------


def nodal_reference(V, G, r_row, r_col):
    """Solve the crossbar by nodal analysis; returns currents (n, cols), w and b (n, rows, cols).

    Nodes: word-line nodes w(i, j), bit-line nodes b(i, j), one source node per row (held at
    V[i]) and ground (the sense amplifiers). A wire with zero resistance is a short; its
    nodes are then known (word nodes at V[i], bit nodes at 0 V) instead of unknowns.
    """
    V = np.atleast_2d(np.asarray(V, dtype=np.float64))
    G = np.asarray(G, dtype=np.float64)
    rows, cols = G.shape
    n = V.shape[0]
    word = np.arange(rows * cols).reshape(rows, cols)
    bit = rows * cols + word
    source = 2 * rows * cols + np.arange(rows)
    ground = 2 * rows * cols + rows
    total = ground + 1

    # Branches (p, q, conductance).
    p = [word.ravel()]
    q = [bit.ravel()]
    g = [G.ravel()]
    if r_row > 0:
        p += [source, word[:, :-1].ravel()]
        q += [word[:, 0], word[:, 1:].ravel()]
        g += [np.full(rows, 1 / r_row), np.full(rows * (cols - 1), 1 / r_row)]
    if r_col > 0:
        p += [bit[:-1, :].ravel(), bit[-1, :]]
        q += [bit[1:, :].ravel(), np.full(cols, ground)]
        g += [np.full((rows - 1) * cols, 1 / r_col), np.full(cols, 1 / r_col)]
    p, q, g = np.concatenate(p), np.concatenate(q), np.concatenate(g)

    known = np.zeros(total, dtype=bool)
    value = np.zeros((total, n))
    known[source] = True
    value[source] = V.T
    known[ground] = True
    if r_row == 0:
        known[word.ravel()] = True
        value[word.ravel()] = np.repeat(V.T, cols, axis=0)
    if r_col == 0:
        known[bit.ravel()] = True

    unknown_ids = np.flatnonzero(~known)
    index = np.full(total, -1)
    index[unknown_ids] = np.arange(unknown_ids.size)
    mat_rows, mat_cols, mat_vals = [], [], []
    rhs = np.zeros((unknown_ids.size, n))
    for a, b in ((p, q), (q, p)):  # each branch stamps both of its ends
        own = ~known[a]
        mat_rows.append(index[a[own]])
        mat_cols.append(index[a[own]])
        mat_vals.append(g[own])
        both = own & ~known[b]
        mat_rows.append(index[a[both]])
        mat_cols.append(index[b[both]])
        mat_vals.append(-g[both])
        fixed = own & known[b]
        np.add.at(rhs, index[a[fixed]], g[fixed, None] * value[b[fixed]])
    A = sp.csc_matrix(
        (np.concatenate(mat_vals), (np.concatenate(mat_rows), np.concatenate(mat_cols))),
        shape=(unknown_ids.size, unknown_ids.size),
    )
    potential = value.copy()
    if unknown_ids.size:
        potential[unknown_ids] = spla.splu(A).solve(rhs)

    w = potential[word].transpose(2, 0, 1)  # (n, rows, cols)
    b = potential[bit].transpose(2, 0, 1)
    if r_col > 0:
        currents = b[:, -1, :] / r_col
    else:  # shorted bit line: the sense amp takes every cell current of its column
        currents = (G * (w - b)).sum(axis=1)
    return currents, w, b


def relative_error(currents, I_ref):
    return float(np.abs(np.asarray(currents) - I_ref).max() / np.abs(I_ref).max())


def random_case(rows, cols, g_low, g_high, n=4, seed=0):
    rng = np.random.default_rng(seed)
    G = rng.uniform(g_low, g_high, size=(rows, cols))
    V = rng.uniform(0.0, 0.2, size=(n, rows))
    return V, G


# ----------------------------------------------------------------------------------------
# Accuracy against the reference
# ----------------------------------------------------------------------------------------

CASES = [
    # rows, cols, G low, G high (S), r_row, r_col (ohm)
    (1, 1, 1e-5, 1e-5, 2.93, 2.93),
    (1, 9, 1e-7, 1e-5, 2.93, 2.93),
    (9, 1, 1e-7, 1e-5, 2.93, 2.93),
    (2, 3, 1e-4, 1e-3, 5.0, 1.0),
    (16, 16, 1e-7, 1e-5, 2.93, 2.93),
    (37, 11, 1e-6, 1e-3, 1.0, 10.0),
    (11, 37, 1e-6, 1e-3, 10.0, 1.0),
    (64, 128, 1e-7, 1e-5, 2.93, 2.93),
    (128, 64, 1e-7, 1e-5, 0.5, 4.0),
    (128, 128, 1e-7, 1e-5, 2.93, 2.93),  # typical device window
    (128, 128, 1e-3, 1e-3, 2.93, 2.93),  # every cell at HGS = 1e-3 S: very strong IR drop
    (128, 100, 1e-5, 1e-3, 2.93, 2.93),
    (32, 32, 1e-4, 1e-3, 1e4, 1e4),  # wires far more resistive than cells
    (32, 32, 1e-7, 1e-5, 1e-4, 1e-4),  # nearly ideal wires
    (64, 64, 1e-7, 1e-3, 1e-3, 1e3),
]


@pytest.mark.parametrize(("rows", "cols", "g_low", "g_high", "r_row", "r_col"), CASES)
def test_currents_match_nodal_analysis(rows, cols, g_low, g_high, r_row, r_col):
    V, G = random_case(rows, cols, g_low, g_high, seed=rows * 1000 + cols)
    I_ref, _, _ = nodal_reference(V, G, r_row, r_col)
    currents = solve(V, G, (r_row, r_col))
    assert relative_error(currents, I_ref) <= TOLERANCE
    # the same through the transfer matrix
    assert relative_error(V @ transfer_matrix(G, (r_row, r_col)), I_ref) <= TOLERANCE


def test_strong_ir_drop_is_strong_and_still_exact():
    V, G = random_case(128, 128, 1e-3, 1e-3, n=2, seed=1)
    I_ref, _, _ = nodal_reference(V, G, 2.93, 2.93)
    # the ideal product overestimates the currents several times ...
    assert np.abs(V @ G).max() > 3 * np.abs(I_ref).max()
    # ... and the solver still matches the circuit
    assert relative_error(solve(V, G, 2.93), I_ref) <= TOLERANCE


@pytest.mark.parametrize(("r_row", "r_col"), [(0.0, 2.93), (2.93, 0.0), (0.0, 50.0), (7.0, 0.0)])
def test_one_ideal_wire_kind(r_row, r_col):
    V, G = random_case(20, 13, 1e-5, 1e-3, seed=3)
    I_ref, w_ref, b_ref = nodal_reference(V, G, r_row, r_col)
    sol = solve(V, G, (r_row, r_col), return_voltages=True)
    assert relative_error(sol.currents, I_ref) <= TOLERANCE
    assert np.abs(sol.word_line_voltages - w_ref).max() <= TOLERANCE * np.abs(V).max()
    assert np.abs(sol.bit_line_voltages - b_ref).max() <= TOLERANCE * np.abs(V).max()


@pytest.mark.parametrize(("rows", "cols", "r"), [(1, 1, 2.93), (12, 7, (2.0, 9.0)), (40, 50, 2.93)])
def test_node_voltages_match_nodal_analysis(rows, cols, r):
    V, G = random_case(rows, cols, 1e-5, 1e-3, seed=5)
    r_row, r_col = r if isinstance(r, tuple) else (r, r)
    I_ref, w_ref, b_ref = nodal_reference(V, G, r_row, r_col)
    sol = solve(V, G, r, return_voltages=True)
    assert relative_error(sol.currents, I_ref) <= TOLERANCE
    assert np.abs(sol.word_line_voltages - w_ref).max() <= TOLERANCE * np.abs(V).max()
    assert np.abs(sol.bit_line_voltages - b_ref).max() <= TOLERANCE * np.abs(V).max()


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    log_g=st.floats(-7, -3),
    spread=st.floats(0, 2),
    r_row=st.sampled_from([0.0, 0.01, 2.93, 100.0]),
    r_col=st.sampled_from([0.0, 0.01, 2.93, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_small_random_circuits(rows, cols, log_g, spread, r_row, r_col, seed):
    rng = np.random.default_rng(seed)
    G = 10.0 ** (log_g + spread * rng.uniform(-1, 0, size=(rows, cols)))
    V = rng.uniform(-0.3, 0.3, size=(3, rows))
    I_ref, _, _ = nodal_reference(V, G, r_row, r_col)
    currents = solve(V, G, (r_row, r_col))
    if np.abs(I_ref).max() == 0:
        assert np.abs(currents).max() == 0
    else:
        assert relative_error(currents, I_ref) <= TOLERANCE


# ----------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------


def test_zero_resistance_is_exactly_the_ideal_product():
    V, G = random_case(17, 9, 1e-7, 1e-5, seed=7)
    assert np.array_equal(solve(V, G, 0.0), V @ G)
    assert np.array_equal(solve(V, G, (0.0, 0.0)), V @ G)
    Gt, Vt = torch.from_numpy(G), torch.from_numpy(V)
    assert torch.equal(solve(Vt, Gt, 0), Vt @ Gt)
    assert torch.equal(transfer_matrix(Gt, 0.0), Gt)


def test_batched_transfer_matrix_equals_per_tile():
    rng = np.random.default_rng(11)
    G = torch.from_numpy(rng.uniform(1e-7, 1e-4, size=(2, 3, 24, 16)))
    for r in (2.93, (1.0, 6.0), (0.0, 3.0), (3.0, 0.0)):
        T = transfer_matrix(G, r)
        assert T.shape == G.shape
        for a in range(2):
            for b in range(3):
                torch.testing.assert_close(T[a, b], transfer_matrix(G[a, b], r), rtol=1e-12, atol=0)


def test_solve_is_input_times_transfer_matrix():
    V, G = random_case(30, 20, 1e-6, 1e-4, n=5, seed=12)
    T = transfer_matrix(G, 2.93)
    np.testing.assert_allclose(solve(V, G, 2.93), V @ T, rtol=1e-12, atol=0)


def test_types_shapes_and_dtypes():
    V, G = random_case(8, 5, 1e-6, 1e-4, n=3, seed=13)
    out = solve(V, G, 2.93)
    assert isinstance(out, np.ndarray) and out.shape == (3, 5) and out.dtype == np.float64
    out1 = solve(V[0], G, 2.93)
    assert isinstance(out1, np.ndarray) and out1.shape == (5,)
    np.testing.assert_allclose(out1, out[0], rtol=1e-13, atol=0)

    Vt, Gt = torch.from_numpy(V).float(), torch.from_numpy(G).float()
    out_t = solve(Vt, Gt, 2.93)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    assert out_t.shape == (3, 5)
    assert solve(Vt, Gt, 2.93, dtype=torch.float32).dtype == torch.float32
    assert solve(V, G, 2.93, dtype=np.float32).dtype == np.float32
    assert solve(Vt[0], Gt, 2.93).shape == (5,)

    T = transfer_matrix(G, 2.93)
    assert isinstance(T, np.ndarray) and T.shape == G.shape and T.dtype == np.float64
    assert transfer_matrix(Gt, 2.93).dtype == torch.float64
    assert transfer_matrix(Gt, 2.93, dtype=torch.float32).dtype == torch.float32

    sol = solve(V, G, (1.0, 2.0), return_voltages=True)
    assert isinstance(sol, CircuitSolution)
    assert sol.word_line_voltages.shape == sol.bit_line_voltages.shape == (3, 8, 5)
    sol1 = solve(Vt[0], Gt, (1.0, 2.0), return_voltages=True)
    assert isinstance(sol1.word_line_voltages, torch.Tensor)
    assert sol1.currents.shape == (5,) and sol1.bit_line_voltages.shape == (8, 5)


def test_kirchhoff_laws_hold_at_every_node():
    rows, cols, r_row, r_col = 24, 18, 2.0, 3.5
    V, G = random_case(rows, cols, 1e-5, 1e-3, n=3, seed=17)
    sol = solve(V, G, (r_row, r_col), return_voltages=True)
    w, b, current = sol.word_line_voltages, sol.bit_line_voltages, sol.currents
    scale = np.abs(current).max()
    cell = G * (w - b)  # current from each word node down through its cell

    # Currents delivered by the sources equal the currents collected by the sense amps.
    source_current = ((V - w[:, :, 0]) / r_row).sum(axis=1)
    np.testing.assert_allclose(source_current, current.sum(axis=1), rtol=1e-9)
    # Each sense-amp current is the current in the last bit-line segment ...
    np.testing.assert_allclose(b[:, -1, :] / r_col, current, rtol=1e-9)
    # ... and the sum of that column's cell currents.
    np.testing.assert_allclose(cell.sum(axis=1), current, rtol=1e-9)

    # KCL at every word-line node: in from the left = out to the right + into the cell.
    left = np.concatenate([V[:, :, None], w[:, :, :-1]], axis=2)
    right = np.concatenate([w[:, :, 1:], w[:, :, -1:]], axis=2)  # far end open
    word_residual = (left - w) / r_row - (w - right) / r_row - cell
    assert np.abs(word_residual).max() <= 1e-9 * scale
    # KCL at every bit-line node: cell current + from above = out below.
    above = np.concatenate([b[:, :1, :], b[:, :-1, :]], axis=1)  # top end open
    below = np.concatenate([b[:, 1:, :], np.zeros_like(b[:, :1, :])], axis=1)  # sense amp
    bit_residual = cell + (above - b) / r_col - (b - below) / r_col
    assert np.abs(bit_residual).max() <= 1e-9 * scale


@pytest.mark.parametrize("which", ["both", "row", "col"])
def test_currents_decrease_as_wire_resistance_grows(which):
    V, G = random_case(32, 24, 1e-6, 1e-3, n=3, seed=19)
    previous = None
    for r in (0.0, 0.1, 1.0, 2.93, 10.0, 100.0, 1e4):
        pair = {"both": (r, r), "row": (r, 0.0), "col": (0.0, r)}[which]
        currents = solve(V, G, pair)
        assert (currents > 0).all()
        if previous is not None:
            assert (currents < previous).all()
        previous = currents


def test_integer_and_list_inputs_are_accepted():
    G = [[1e-5, 2e-5], [3e-5, 4e-5], [5e-5, 6e-5]]
    V = [1, 0, 1]
    I_ref, _, _ = nodal_reference(np.array([V], float), np.array(G), 2.0, 2.0)
    np.testing.assert_allclose(solve(V, G, 2), I_ref[0], rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    V, G = random_case(64, 48, 1e-7, 1e-5, seed=23)
    Gc = torch.from_numpy(G).cuda()
    T = transfer_matrix(Gc, 2.93)
    assert T.device == Gc.device
    torch.testing.assert_close(T.cpu(), transfer_matrix(torch.from_numpy(G), 2.93))


# ----------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------

V_OK, G_OK = random_case(4, 3, 1e-6, 1e-5, n=2, seed=29)


@pytest.mark.parametrize(
    ("r", "error", "match"),
    [
        (-1.0, ValueError, "wire_resistance"),
        ((1.0, -0.5), ValueError, "r_col"),
        ((-1.0, 0.5), ValueError, "r_row"),
        (float("nan"), ValueError, "wire_resistance"),
        (float("inf"), ValueError, "wire_resistance"),
        ((1.0, float("inf")), ValueError, "r_col"),
        ((1.0, 2.0, 3.0), ValueError, "wire_resistance"),
        ("2.93", TypeError, "wire_resistance"),
        (True, TypeError, "wire_resistance"),
    ],
)
def test_bad_wire_resistance(r, error, match):
    with pytest.raises(error, match=match):
        solve(V_OK, G_OK, r)
    with pytest.raises(error, match=match):
        transfer_matrix(G_OK, r)


@pytest.mark.parametrize("bad", [0.0, -1e-6, float("nan"), float("inf")])
def test_bad_conductances(bad):
    G = G_OK.copy()
    G[1, 2] = bad
    with pytest.raises(ValueError, match="G"):
        solve(V_OK, G, 2.93)
    with pytest.raises(ValueError, match="G"):
        transfer_matrix(torch.from_numpy(G), 2.93)
    with pytest.raises(ValueError, match="G"):
        solve(V_OK, G, 0.0)  # also with ideal wires


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_bad_voltages(bad):
    V = V_OK.copy()
    V[0, 1] = bad
    with pytest.raises(ValueError, match="V"):
        solve(V, G_OK, 2.93)


def test_bad_shapes():
    with pytest.raises(ValueError, match="V"):
        solve(np.ones((2, 5)), G_OK, 2.93)  # G has 4 rows
    with pytest.raises(ValueError, match="V"):
        solve(np.ones(3), G_OK, 2.93)
    with pytest.raises(ValueError, match="V"):
        solve(np.ones((1, 2, 4)), G_OK, 2.93)
    with pytest.raises(ValueError, match="G"):
        solve(V_OK, G_OK[None], 2.93)  # solve takes one array
    with pytest.raises(ValueError, match="G"):
        transfer_matrix(np.ones(4) * 1e-5, 2.93)
    with pytest.raises(ValueError, match="G"):
        transfer_matrix(np.ones((0, 3)), 2.93)
    with pytest.raises(TypeError, match="G"):
        transfer_matrix(torch.ones(3, 3, dtype=torch.complex128), 2.93)


@pytest.mark.parametrize("high, r, size", [(1e-5, 2.93, 64), (1e-3, 2.93, 128), (1e-5, 1e4, 32)])
def test_float32_elimination_is_close_to_float64(high, r, size):
    gen = torch.Generator().manual_seed(4)
    G = 1e-7 + torch.rand(3, size, size + 1, generator=gen, dtype=torch.float64) * high
    exact = transfer_matrix(G, r)
    fast = transfer_matrix(G, r, compute_dtype=torch.float32)
    assert fast.dtype == torch.float64
    assert float((fast - exact).abs().max()) <= 1e-4 * float(exact.abs().max())
    with pytest.raises(ValueError, match="compute_dtype"):
        transfer_matrix(G, r, compute_dtype=torch.float16)

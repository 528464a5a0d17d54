"""Exact DC solver for a memristor crossbar whose wires have resistance (IR drop).

Circuit (units: V in volts, G in siemens, r in ohms, currents in amperes)
-----------------------------------------------------------------------
``G`` has shape ``(rows, cols)``. Row ``i`` is a word line driven by the input voltage
``V[i]``; column ``j`` is a bit line read by a sense amplifier that holds it at virtual
ground (0 V). Cell ``(i, j)`` is the conductance ``G[i, j]`` between the word-line node
``w(i, j)`` and the bit-line node ``b(i, j)``. Every wire segment has resistance ``r``::

    word line i:  V[i] -r_row- w(i,0) -r_row- w(i,1) - ... - w(i,cols-1)     (far end open)
    bit line j:   b(0,j) -r_col- b(1,j) - ... - b(rows-1,j) -r_col- sense amp (0 V)

The output current ``I[j]`` is the current through the last bit-line segment into the
sense amplifier. ``r`` is one resistance for both kinds of wire or a pair
``(r_row, r_col)``; ``r = 0`` is an ideal crossbar, ``I = V @ G``.

The circuit is linear, so for a programmed array the outputs are ``I = V @ T`` with a fixed
``(rows, cols)`` *transfer matrix* ``T`` (``T = G`` for ideal wires).
:func:`transfer_matrix` computes ``T`` for any batch of arrays; :func:`solve` applies it to
input vectors and can also return every node voltage (for IR-drop maps).

Method (exact, direct; no iteration)
------------------------------------
1. *Eliminate each bit line.* Bit line ``j`` only touches the word-line nodes of column
   ``j``, through the cells. Its nodes obey ``(L + D) b = D w`` where ``D = diag(G[:, j])``
   and ``L`` is the tridiagonal conductance matrix of the grounded bit-line chain. The
   current the word-line nodes push into column ``j`` is therefore ``S_j @ w[:, j]`` with
   the dense, symmetric ``rows x rows`` admittance ``S_j = D (L + D)^-1 L`` (the cells in
   series with the bit line). ``(L + D)^-1`` of a tridiagonal matrix has a closed form
   built from series-parallel reductions along the line (:func:`_bit_line_pivots`), so
   ``S_j`` costs O(rows^2) and has no cancellation. All current entering the bit line
   leaves through its sense amplifier, so ``I[j] = 1^T S_j w[:, j]``.
2. *Sweep the word lines from the open far end back to the drivers.* ``Y_j``, the
   admittance seen from the word-line nodes of column ``j`` looking right, obeys
   ``Y_{cols-1} = S_{cols-1}`` and ``Y_{j-1} = S_{j-1} + Y_j M_j`` with
   ``M_j = a (a I + Y_j)^-1``, ``a = 1 / r_row``; ``M_j`` maps the word-line voltages of
   column ``j-1`` (the drivers for ``j = 0``) to those of column ``j``. This is block
   Gaussian elimination (block Thomas) of the block-tridiagonal nodal system. The only
   matrices inverted, ``a I + Y_j``, are symmetric positive definite with eigenvalues
   ``>= a``, hence well conditioned (LAPACK raises rather than return garbage).
3. *Transfer matrix.* ``w[:, j] = M_j ... M_0 V`` gives
   ``T[:, j] = M_0^T ... M_j^T (S_j 1)``. The products are accumulated during the same
   backward sweep, so nothing per column has to be stored.

Cost per array is ``O(rows^3 * cols)`` in a loop over the ``cols`` columns; all arrays of
a batch are processed together by batched LAPACK calls.

Accuracy: against an independent sparse nodal analysis (``tests/test_crossbar_solver.py``:
all 2 * rows * cols node equations, scipy ``splu``), the worst error over the test cases
(1 to 128 rows and columns, square and not, r from 1e-4 to 1e4 ohm, G from 1e-7 to 1e-3 S,
including every cell at 1e-3 S with r = 2.93 ohm on 128 x 128, where ``V @ G`` is 7 times
too large) is max |I - I_ref| = 4e-13 * max |I_ref| in float64 (the test demands 1e-6).

Speed (2-core CPU, float64): ``transfer_matrix`` of one 128 x 128 array takes ~50 ms;
1024 tiles of 64 x 64 take ~8 s and ~0.6 GiB; then each input vector costs one
``rows x cols`` matrix-vector product. See ``benchmarks/bench_wire_solver.py``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from .config import parse_wire_resistance
from .tiling import arrays_to_columns

if TYPE_CHECKING:
    from .config import CrossbarConfig
    from .devices import ProgrammedArrays

__all__ = [
    "ChunkReader",
    "CircuitSolution",
    "exact_read",
    "input_admittance",
    "int8_matmul_fits",
    "read_currents",
    "read_power",
    "read_matrix",
    "read_noise_matrix",
    "small_integer_peak",
    "solve",
    "transfer_matrix",
]


class CircuitSolution(NamedTuple):
    """Result of :func:`solve` with ``return_voltages=True``.

    currents : (n, cols) or (cols,)
        Currents into the sense amplifiers, amperes.
    word_line_voltages : (n, rows, cols) or (rows, cols)
        Voltage of the word-line node ``w(i, j)`` (at cell ``(i, j)``), volts.
    bit_line_voltages : (n, rows, cols) or (rows, cols)
        Voltage of the bit-line node ``b(i, j)`` (at cell ``(i, j)``), volts.
    """

    currents: torch.Tensor | np.ndarray
    word_line_voltages: torch.Tensor | np.ndarray
    bit_line_voltages: torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------


def _as_float64_tensor(name: str, x, device=None) -> torch.Tensor:
    """Convert a numpy array / tensor / nested list to a float64 tensor, rejecting NaN/Inf."""
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        t = x.detach().to(dtype=torch.float64, device=device)
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
        t = torch.as_tensor(a.astype(np.float64, copy=False), device=device)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return t


def _check_conductances(G: torch.Tensor) -> None:
    if G.ndim < 2:
        raise ValueError(f"G must have shape (..., rows, cols), got shape {tuple(G.shape)}")
    if G.shape[-1] == 0 or G.shape[-2] == 0:
        raise ValueError(f"G must have at least one row and one column, got {tuple(G.shape)}")
    if not bool((G > 0).all()):
        raise ValueError(
            f"G (conductances, siemens) must all be > 0, got minimum {G.min().item()!r}"
        )


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.from_numpy(np.empty(0, dtype=np.dtype(dtype))).dtype


# ----------------------------------------------------------------------------------------
# The circuit
# ----------------------------------------------------------------------------------------


def _bit_line_pivots(Gt: torch.Tensor, c: float):
    """Closed-form description of ``K^-1 = (L + D)^-1`` for every bit line at once.

    ``Gt`` (B, cols, rows) holds the cells of each column; ``c = 1 / r_col``. ``K`` is the
    nodal matrix of one bit line with the word-line end of every cell grounded: node
    ``b(k)`` has its cell ``g_k`` to ground, ``c`` to each neighbour, and the last node also
    ``c`` to the sense amplifier. ``K`` is tridiagonal, so ``K^-1`` follows from
    ``rows``-long vectors:

    * ``up_k`` / ``down_k``: conductance from node ``k`` to ground through the part of the
      line above / below it, by series-parallel reduction. Only positive terms are ever
      added, so there is no cancellation at any resistance or conductance.
    * ``K^-1[k, k] = 1 / (g_k + up_k + down_k)``.
    * Column ``k`` of ``K^-1`` shrinks by ``rho_m = c / (c + g_m + up_m)`` per node going up
      (forward elimination), so ``K^-1[i, k] = K^-1[k, k] * exp(log_up[k] - log_up[i])``
      for ``i <= k`` with ``log_up[k] = sum_{m<k} log rho_m``; ``K^-1`` is symmetric.
      Logarithms keep long products from underflowing into 0/0 on long, loaded lines.

    Returns ``diag`` (the ``K^-1[k, k]``), ``log_up`` and ``up + down``, each (B, cols, rows).
    """
    rows = Gt.shape[-1]
    up = torch.zeros_like(Gt)
    down = torch.empty_like(Gt)
    down[..., rows - 1] = c  # the last node reaches the sense amplifier through one segment
    for k in range(1, rows):
        load = Gt[..., k - 1] + up[..., k - 1]
        up[..., k] = c * load / (c + load)  # one segment in series with everything above
    for k in range(rows - 2, -1, -1):
        load = Gt[..., k + 1] + down[..., k + 1]
        down[..., k] = c * load / (c + load)
    diag = 1.0 / (Gt + up + down)
    log_rho = torch.log(c / (c + Gt + up))
    log_up = torch.zeros_like(Gt)
    log_up[..., 1:] = torch.cumsum(log_rho[..., :-1], dim=-1)
    return diag, log_up, up + down


def _mirrored_upper(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Symmetric (..., rows, rows) matrix equal to ``exp(alpha[k] - beta[i])`` for ``i <= k``.

    Only that upper triangle is meaningful; below the diagonal the same expression may
    overflow to inf, and those entries are replaced by their mirror images.
    """
    rows = alpha.shape[-1]
    upper = torch.ones(rows, rows, dtype=torch.bool, device=alpha.device).triu()
    E = torch.exp(alpha.unsqueeze(-2) - beta.unsqueeze(-1))  # E[..., i, k]
    return torch.where(upper, E, E.mT)


def _sweep(G: torch.Tensor, r_row: float, r_col: float, keep_factors: bool = False,
           admittance: bool = False):
    """Transfer matrices of the float64 batch ``G`` (B, rows, cols); r_row or r_col is > 0.

    Returns ``T`` (B, rows, cols), the input admittance ``A`` (B, rows, rows) when
    ``admittance`` (the drivers deliver the currents ``A V``, so a read dissipates
    ``V^T A V`` watts, wires included; else None) and, when ``keep_factors``, two per-column
    lists: ``M_j``
    (B, rows, rows), with ``w_j = M_j w_{j-1}`` from the word-line voltages of column j-1
    (the drivers for j = 0) to those of column j (None for ideal word lines), and the
    bit-line inverse ``K_j^-1 = (L + D_j)^-1``, with ``b_j = K_j^-1 D_j w_j`` (None for
    ideal bit lines).
    """
    Gt = G.mT.contiguous()  # (B, cols, rows): the cells of column j are Gt[:, j], contiguous
    batch, cols, rows = Gt.shape
    Ms: list = [None] * cols
    bit_inverses: list = [None] * cols

    if r_col > 0:
        c = 1.0 / r_col
        diag, log_up, line = _bit_line_pivots(Gt, c)
        # Column admittance S = D K^-1 L = D (I - K^-1 D), entry by entry without
        # cancellation: S[k, k] = g_k (up_k + down_k) K^-1[k, k] and, for i != k,
        # S[i, k] = -g_i g_k K^-1[i, k] = -exp(alpha[k] - beta[i]) (i < k).
        S_diagonal = Gt * line * diag
        alpha = log_up + torch.log(Gt * diag)
        beta = log_up - torch.log(Gt)
        # Row sums s = S 1 give the sense-amp current I[j] = s_j . w_j. As L 1 is c at the
        # last node and 0 elsewhere, s = D K^-1 L 1 = c D K^-1[:, last]: no summation needed.
        row_sums = c * Gt * diag[..., -1:] * torch.exp(log_up[..., -1:] - log_up)
    else:
        row_sums = Gt.clone()  # ideal bit lines: each cell's current goes straight to its amp
    if r_col > 0 and keep_factors:
        for j in range(cols):
            bit_inverses[j] = _mirrored_upper(log_up[:, j] + torch.log(diag[:, j]), log_up[:, j])
    if r_row == 0.0:  # ideal word lines: w_j = V for every column, so T[:, j] = s_j
        A = None
        if admittance:  # every column's admittance S_j sees the drivers directly
            A = torch.zeros(batch, rows, rows, dtype=G.dtype, device=G.device)
            for j in range(cols):
                minus_S = _mirrored_upper(alpha[:, j], beta[:, j])
                minus_S.diagonal(dim1=-2, dim2=-1).copy_(-S_diagonal[:, j])
                A.sub_(minus_S)
        return row_sums.mT, A, Ms, bit_inverses

    a = 1.0 / r_row
    eye = torch.eye(rows, dtype=G.dtype, device=G.device)
    Tt = row_sums  # T transposed (B, cols, rows); row j ends up as T[:, j]
    Y = inv_A = None
    for j in range(cols - 1, -1, -1):
        if r_col > 0:
            minus_S = _mirrored_upper(alpha[:, j], beta[:, j])
            minus_S.diagonal(dim1=-2, dim2=-1).copy_(-S_diagonal[:, j])
        else:
            minus_S = torch.diag_embed(-Gt[:, j])
        # Y_j, the admittance seen from the word-line nodes of column j looking right:
        # the column itself plus Y_{j+1} M_{j+1}, everything further right seen through
        # one segment. (Y M rather than the equal a (I - M), which cancels when Y << a.)
        if Y is None:
            Y = -minus_S
        else:
            Y = torch.baddbmm(minus_S, Y, inv_A, beta=-1.0, alpha=a)
        # M_j = a (a I + Y_j)^-1. a I + Y_j is symmetric positive definite with eigenvalues
        # >= a, so the inverse is well conditioned.
        inv_A = torch.linalg.inv(torch.add(Y, eye, alpha=a))
        # T[:, k] = M_0^T ... M_k^T s_k: apply M_j^T to every column k >= j (rows of T^T).
        Tt[:, j:] = torch.baddbmm(Tt[:, j:], Tt[:, j:], inv_A, beta=0.0, alpha=a)
        if keep_factors:
            Ms[j] = a * inv_A
    # The drivers push a (V - w_0) = a (I - M_0) V = a (a I + Y_0)^-1 Y_0 V: the last form has
    # no cancellation when the cells' admittance is far below the wire's
    A = a * torch.bmm(inv_A, Y) if admittance else None
    return Tt.mT, A, Ms, bit_inverses


def transfer_matrix(G, r, *, dtype=torch.float64, compute_dtype=torch.float64,
                    return_admittance: bool = False):
    """Transfer matrix ``T`` of crossbars with wire resistance: outputs are ``I = V @ T``.

    Parameters
    ----------
    G : torch.Tensor or numpy.ndarray, shape (..., rows, cols)
        Cell conductances in siemens, all > 0. Any leading dimensions are a batch of
        independent arrays (tiles, weight slices, ...), all solved together.
    r : float or (float, float)
        Resistance in ohms of one wire segment: one value for word and bit lines, or a pair
        ``(r_row, r_col)``. Must be finite and >= 0; ``r = 0`` returns a copy of ``G``.
    dtype : torch.dtype or numpy dtype, default float64
        Dtype of the result.
    compute_dtype : torch.float64 (default) or torch.float32
        Precision of the elimination. float32 is about 1.8 times faster and accurate to about
        3e-5 of the largest entry of ``T`` (measured up to 128 x 128 arrays, weak and strong
        drop); the engine uses it for float32 products, whose other errors are far larger.
    return_admittance : bool
        Also return the input admittance (see :func:`input_admittance`), from the same
        elimination.

    Returns
    -------
    T : same type (torch/numpy), device and shape as ``G``
        For input voltages ``V`` (volts, shape (..., rows)) the sense-amplifier currents in
        amperes are ``V @ T`` exactly (up to float64 rounding; see the module docstring for
        the topology and the measured accuracy, 4e-13 relative at worst).
    A : (..., rows, rows), with ``return_admittance``
    """
    if compute_dtype not in (torch.float64, torch.float32):
        raise ValueError(f"compute_dtype must be torch.float64 or torch.float32, got "
                         f"{compute_dtype!r}")
    r_row, r_col = parse_wire_resistance(r)
    out_dtype = _torch_dtype(dtype)
    G64 = _as_float64_tensor("G", G)
    _check_conductances(G64)
    rows = G64.shape[-2]
    if r_row == 0.0 and r_col == 0.0:
        T = G64.clone()  # ideal wires; a copy, so the result never aliases the input
        A = torch.diag_embed(G64.sum(-1)) if return_admittance else None
    else:
        batch_shape = G64.shape[:-2]
        flat = G64.reshape(-1, *G64.shape[-2:]).to(compute_dtype)
        T, A, _, _ = _sweep(flat, r_row, r_col, admittance=return_admittance)
        T = T.reshape(*batch_shape, *G64.shape[-2:]).contiguous()
        if A is not None:
            A = A.reshape(*batch_shape, rows, rows)
    outputs = [T.to(out_dtype)] + ([A.to(out_dtype)] if return_admittance else [])
    if not isinstance(G, torch.Tensor):
        outputs = [o.cpu().numpy() for o in outputs]
    return tuple(outputs) if return_admittance else outputs[0]


def input_admittance(G, r, *, dtype=torch.float64):
    """Input admittance ``A`` of crossbars with wire resistance, in siemens.

    With the word lines driven by ``V`` (volts, shape (..., rows)) and the bit lines held at
    virtual ground, the drivers deliver the currents ``A @ V`` and a read dissipates
    ``V @ A @ V`` watts in the cells and the wires together. ``A`` is symmetric positive
    definite; for ideal wires it is ``diag(G.sum(-1))``. Shape ``(..., rows, rows)``, same
    type (torch/numpy) as ``G``. Computed in float64 by the same elimination as
    :func:`transfer_matrix`.
    """
    return transfer_matrix(G, r, dtype=dtype, return_admittance=True)[1]


def solve(V, G, r, return_voltages: bool = False, *, dtype=torch.float64):
    """Output currents (and optionally node voltages) of one crossbar with wire resistance.

    Parameters
    ----------
    V : shape (n, rows) or (rows,)
        Input (word-line driver) voltages in volts, finite.
    G : shape (rows, cols)
        Cell conductances in siemens, all > 0.
    r : float or (float, float)
        Wire segment resistance in ohms, one value or ``(r_row, r_col)``; finite, >= 0.
    return_voltages : bool
        Also return the voltage of every word-line and bit-line node.
    dtype : torch.dtype or numpy dtype, default float64
        Dtype of the results; the computation is always float64.

    Returns
    -------
    currents : shape (n, cols) or (cols,)
        Sense-amplifier currents in amperes. Torch tensors if ``V`` or ``G`` is a tensor,
        numpy arrays otherwise.
    or, with ``return_voltages=True``, a :class:`CircuitSolution`
    ``(currents, word_line_voltages, bit_line_voltages)``, voltages shaped
    (n, rows, cols) or (rows, cols).

    The currents are ``V @ transfer_matrix(G, r)``: one transfer matrix (``O(rows^3 cols)``)
    and then a matrix product per batch of vectors. Node voltages are propagated column by
    column from the drivers with the same factors.
    """
    r_row, r_col = parse_wire_resistance(r)
    out_dtype = _torch_dtype(dtype)
    as_torch = isinstance(V, torch.Tensor) or isinstance(G, torch.Tensor)
    G64 = _as_float64_tensor("G", G)
    if G64.ndim != 2:
        raise ValueError(f"G must have shape (rows, cols), got shape {tuple(G64.shape)}")
    _check_conductances(G64)
    V64 = _as_float64_tensor("V", V, device=G64.device)
    rows, cols = G64.shape
    if V64.ndim not in (1, 2) or V64.shape[-1] != rows:
        raise ValueError(
            f"V must have shape (n, rows) or (rows,) with rows = G.shape[0] = {rows}, "
            f"got shape {tuple(V64.shape)}"
        )
    single = V64.ndim == 1
    Vn = V64.unsqueeze(0) if single else V64  # (n, rows)

    if r_row == 0.0 and r_col == 0.0:
        T, Ms, bit_inverses = G64, [None] * cols, [None] * cols
    else:
        T, _, Ms, bit_inverses = _sweep(G64.unsqueeze(0), r_row, r_col,
                                        keep_factors=return_voltages)
        T = T[0]
    if r_row == 0.0 and r_col == 0.0 and not as_torch:
        currents = torch.from_numpy(Vn.numpy() @ G64.numpy())  # bit-for-bit numpy's V @ G
    else:
        currents = Vn @ T

    def finish(x):
        x = (x[0] if single else x).to(out_dtype)
        return x if as_torch else x.cpu().numpy()

    if not return_voltages:
        return finish(currents)

    n = Vn.shape[0]
    word = torch.empty(n, rows, cols, dtype=torch.float64, device=G64.device)
    bit = torch.zeros_like(word)
    w = Vn  # (n, rows): voltages of the word-line nodes left of column j (the drivers)
    for j in range(cols):
        if Ms[j] is not None:
            w = w @ Ms[j][0].mT  # w_j = M_j w_{j-1}, with w as rows
        word[..., j] = w
        if bit_inverses[j] is not None:  # b_j = (L + D_j)^-1 D_j w_j (K^-1 is symmetric)
            bit[..., j] = (G64[:, j] * w) @ bit_inverses[j][0]
    return CircuitSolution(finish(currents), finish(word), finish(bit))


# ----------------------------------------------------------------------------------------
# Reading programmed arrays inside the engine (code units: DAC codes times levels)
# ----------------------------------------------------------------------------------------


def read_matrix(arrays: ProgrammedArrays, cfg: CrossbarConfig,
                dtype: torch.dtype = torch.float64, admittance: bool = False):
    """The matrix each read multiplies the DAC codes by, in conductance levels, in ``dtype``.

    Offset mapping: ``(G - G_ref) / level_step``; the offset is removed by subtracting the
    current of a reference column of LGS cells (``arrays.reference``, or exactly LGS when that
    is ``None``). Differential pair: ``(G+ - G-) / level_step``. Bias
    mapping: ``G / level_step`` (no reference column: the LGS offset goes with the bias, which
    is removed after the shift-add). Shape ``(Tk, rows, n_arrays * len(arrays.columns))``: the
    padding columns of the last column of arrays are left out (they are still part of each
    circuit).

    With wire resistance every array is solved as a circuit (:func:`transfer_matrix`): the
    reference column is one more bit line at the far end of each array's word lines, so it
    sees the same IR drop as a real one; the G+ and G- arrays of a pair are separate circuits.
    The columns' currents, and so the result, then differ from the ideal ``G - LGS``. The
    circuits are solved in ``dtype`` (float32 products get float32 solves, see
    :func:`transfer_matrix`).

    With ``admittance`` also returns what the word lines of each row-block drive, all its
    arrays together (reference columns and G- arrays included), in siemens, float64: for ideal
    wires the conductance on each word line ``(Tk, rows)``, else the summed input admittance
    ``(Tk, rows, rows)`` (:func:`input_admittance`), so a read with word-line voltages ``V``
    dissipates ``V^2 @ that`` or ``V @ that @ V`` watts.
    """
    r = cfg.wire_resistance
    physical = [arrays.positive] if arrays.negative is None else [arrays.positive,
                                                                  arrays.negative]
    drives = []
    reference = arrays.reference if arrays.reference is not None else \
        torch.full_like(arrays.positive[..., :1], cfg.LGS)
    if parse_wire_resistance(r) == (0.0, 0.0):
        # float64 before the cast, so noise-free levels stay exact integers in float32
        transfer = physical[0] - ((cfg.LGS if arrays.reference is None else reference)
                                  if arrays.reference_column else 0.0)
        if arrays.negative is not None:
            transfer = transfer - arrays.negative
        if admittance:  # each word line drives its cells (and the reference cell) directly
            drives = [g.sum(dim=(0, 2, 4)) for g in physical]  # (Tk, rows)
            if arrays.reference_column:
                drives.append(reference.sum(dim=(0, 2, 4)))
    else:
        if arrays.reference_column:  # one more bit line at the far end of every word line
            physical[0] = torch.cat([arrays.positive, reference], -1)
        solved = [transfer_matrix(g, r, compute_dtype=dtype, return_admittance=True)
                  if admittance else (transfer_matrix(g, r, compute_dtype=dtype), None)
                  for g in physical]
        transfers = [t for t, _ in solved]
        drives = [a.sum(dim=(0, 2)) for _, a in solved if a is not None]  # (Tk, rows, rows)
        if arrays.negative is not None:
            transfer = transfers[0] - transfers[1]
        elif arrays.reference_column:
            transfer = transfers[0][..., :-1] - transfers[0][..., -1:]
        else:
            transfer = transfers[0]
    matrix = arrays_to_columns(transfer / cfg.level_step, arrays.columns).to(dtype)
    if not admittance:
        return matrix
    return matrix, sum(drives[1:], drives[0]).to(torch.float64)


def read_noise_matrix(arrays: ProgrammedArrays, cfg: CrossbarConfig) -> torch.Tensor:
    """Sum of the squared conductances behind each output, in levels squared: the variance of a
    read's current is ``read_noise**2 * codes**2 @ this``. With wire resistance the noise of
    each cell is still taken as if its full read voltage reached it (the drop shrinks the signal
    and its fluctuation alike by a few percent in typical arrays; this keeps noise a cheap
    product)."""
    squared = (arrays.positive / cfg.level_step) ** 2
    if arrays.negative is not None:
        squared = squared + (arrays.negative / cfg.level_step) ** 2
    return arrays_to_columns(squared, arrays.columns)


def read_power(codes: torch.Tensor, drive: torch.Tensor, volts_per_code: torch.Tensor) -> float:
    """Power the arrays dissipate, summed over every read of a product, in watts.

    Args:
        codes: DAC codes ``(Tk, L, M, n_x)`` of the word lines of every row-block (``L`` word
            lines, at most ``rows``; those past ``L`` are at 0 V), noise included.
        drive: what the word lines of each row-block drive, all its arrays together (see
            :func:`read_matrix`): ``(Tk, rows)`` siemens per word line (ideal wires) or the
            summed input admittance ``(Tk, rows, rows)``.
        volts_per_code: word-line volts of one DAC code, per input slice ``(n_x,)``.

    Returns:
        ``sum over reads of V @ A @ V`` (``sum V**2 G`` for ideal wires): multiplied by the read
        time it is the arrays' energy, wires included.
    """
    lines = codes.shape[1]
    scale = volts_per_code.to(codes.device, torch.float64) ** 2
    if drive.dim() == 2:
        # sum over the vectors of each word line's squared code, then V^2 G
        squares = torch.linalg.vector_norm(codes, dim=2).double() ** 2  # (Tk, L, n_x)
        return float(torch.einsum("tls,tl,s->", squares, drive[:, :lines].to(squares), scale))
    by_slice = codes.permute(0, 3, 1, 2).to(torch.float64)  # (Tk, n_x, L, M)
    gram = by_slice @ by_slice.transpose(-1, -2)  # (Tk, n_x, L, L)
    return float(torch.einsum("tskl,tkl,s->", gram, drive[:, :lines, :lines].to(gram), scale))


def read_currents(codes, matrix, noise_matrix, read_noise, generator, out=None,
                  scratch=None):
    """Column currents of every (input group, array group) pair, in code units.

    Args:
        codes: DAC codes ``(Tk, X, M, rows)``: per row-block, ``X`` groups of ``M`` driven
            vectors (rows of word-line codes), float or int8 integer codes (see below).
        matrix: read matrix ``(Tk, A, rows, C)``: per row-block, ``A`` groups of ``C``
            columns, in the codes' dtype.
        noise_matrix: matching read-noise matrix, or ``None``.
        read_noise: relative standard deviation of every cell's conductance on every read.
        generator: random source of the read noise.

    Returns:
        ``(Tk, X, A, M, C)``: every input group's currents on every column group. With
        ``X = A = 1`` (the vectors' input slices as rows, every array's columns side by side)
        that is one product per row-block; with the input slices as ``X`` and the arrays as
        ``A``, one per (slice, array) pair, each pair's currents contiguous. The sums are the
        same either way. With read noise each cell's conductance on each read is
        ``G * (1 + read_noise * N(0, 1))``, independently per cell and input vector; the sum of
        those Gaussian terms is drawn exactly as one Gaussian per output, with variance
        ``read_noise**2 * sum_k V_k**2 G_k**2``, so noise costs one more product, not one per
        cell.

        ``out`` (the currents) and ``scratch`` (two more tensors of their shape, for the read
        noise) are reused contiguous buffers, so that a product read chunk by chunk does not
        allocate (and leave the allocator holding) a fresh buffer per chunk.

    int8 codes and matrix (a noise-free read of integer codes on integer conductance levels,
    see :func:`small_integer_peak`) are summed exactly in int32 on the CPU's or GPU's integer
    matrix units (``torch._int_mm``), into ``out`` (int32) if given: the same integers as the
    float read of the same codes, whose sums are exact too (at most ``2**24``).
    """
    tk, n_in, m = codes.shape[:3]
    n_arrays, n_cols = matrix.shape[1], matrix.shape[-1]
    shape = (tk, n_in, n_arrays, m, n_cols)
    if codes.dtype == torch.int8:
        sums = out if out is not None else torch.empty(shape, dtype=torch.int32,
                                                       device=codes.device)
        # torch._int_mm is 2-D; a chunk has few row-blocks and groups
        for t, x, a in itertools.product(range(tk), range(n_in), range(n_arrays)):
            torch._int_mm(codes[t, x], matrix[t, a], out=sums[t, x, a])
        return sums
    currents = out if out is not None else torch.empty(shape, dtype=codes.dtype,
                                                       device=codes.device)

    def product(left, right, result):
        if n_in == n_arrays == 1:  # one batched product over the row-blocks
            return torch.bmm(left[:, 0], right[:, 0], out=result[:, 0, 0])
        for t, x in itertools.product(range(tk), range(n_in)):  # every array group at once
            torch.matmul(left[t, x].unsqueeze(0), right[t], out=result[t, x])
        return result

    product(codes, matrix, currents)
    if noise_matrix is not None and read_noise > 0:
        std, noise = scratch if scratch is not None else (torch.empty_like(currents),
                                                          torch.empty_like(currents))
        product(codes * codes, noise_matrix, std).sqrt_()
        torch.randn(shape, generator=generator, device=currents.device, dtype=currents.dtype,
                    out=noise)
        currents.addcmul_(std, noise, value=read_noise)
    return currents


#: Devices (by type) whose torch has fast int8 matrix products (``torch._int_mm``), probed
#: once.
_INT8_MATMUL: dict[str, bool] = {}

#: CPU flags (Linux ``/proc/cpuinfo``) of integer dot-product units: without one, torch's
#: int8 products run on a generic kernel, slower than the float ones.
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def _cpu_has_int8_units() -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo
                          if line.startswith("flags")), [])
    except OSError:  # not Linux: no way to tell, so the float read
        return False
    return any(flag in flags for flag in INT8_CPU_FLAGS)


def int8_matmul_fits(device: torch.device, m: int, k: int, n: int) -> bool:
    """Whether fast int8 products (``torch._int_mm``) run on ``device`` for
    ``(m, k) @ (k, n)``: on a CPU with integer dot-product units (VNNI or AMX, see
    ``INT8_CPU_FLAGS``), any shape; on CUDA, more than 16 rows and ``k``, ``n`` multiples of 8.
    Probed once per device type."""
    if device.type not in _INT8_MATMUL:
        try:
            probe = torch.ones(32, 32, dtype=torch.int8, device=device)
            runs = bool(torch._int_mm(probe, probe)[0, 0].item() == 32)
        except (RuntimeError, AttributeError, NotImplementedError):
            runs = False
        _INT8_MATMUL[device.type] = runs and (device.type != "cpu" or _cpu_has_int8_units())
    if device.type == "cuda" and (m <= 16 or k % 8 or n % 8):
        return False
    return _INT8_MATMUL[device.type]


def small_integer_peak(values: torch.Tensor) -> float | None:
    """The largest ``|value|`` of float32 ``values`` if every one is an integer in
    [-127, 127] (so int8 holds them exactly), else ``None``.

    Noise-free DAC codes and the read matrix of integer conductance levels are such integers
    (no variation, drift, wires or input noise). Checked one slice of the first axis at a time:
    no temporary the size of ``values``.
    """
    if values.dtype != torch.float32:
        return None
    peak = max(float(values.amax()), -float(values.amin())) if values.numel() else 0.0
    if peak > 127 or not all(torch.equal(part, part.round()) for part in values):
        return None
    return peak


#: Sums of integer products up to this are exact in float32 (24-bit significand): a float read
#: of such integers then gives the int8 read's currents exactly.
EXACT_FLOAT32_SUM = 2**24


class ChunkReader:
    """Stage 5 of a product, chunk by chunk: the column currents of a chunk of vectors,
    row-blocks and columns (a chunk of :class:`mpimpy.execution.ChunkPlan`).

    Args:
        codes: DAC codes ``(Tk, rows, M, n_x)`` (float).
        matrix, noise_matrix: read matrices ``(Tk, rows, n_a * C)`` (:func:`read_matrix`,
            :func:`read_noise_matrix`; ``noise_matrix`` may be ``None``), ``C`` the columns
            read per array; for an int8 read, ``matrix`` in int8.
        n_a: arrays per row-block.
        plan: the product's :class:`~mpimpy.execution.ChunkPlan` (its layout and kernel).
        workspace: the product's :class:`~mpimpy.execution.Workspace`.
        read_noise, generator: each cell's relative read noise and its random source.
    """

    def __init__(self, codes, matrix, noise_matrix, n_a, plan, workspace, read_noise,
                 generator):
        self.tk, self.rows, self.m, self.n_x = codes.shape
        self.codes, self.matrix, self.noise_matrix = codes, matrix, noise_matrix
        self.n_a, self.n_cols = n_a, matrix.shape[-1] // n_a
        self.plan, self.workspace = plan, workspace
        self.read_noise, self.generator = read_noise, generator
        self.noisy = noise_matrix is not None and read_noise > 0
        if plan.int8_read:  # once per product, vector-major (Tk, M, n_x, rows): every chunk's
            # rows of codes are then a contiguous int8 matrix, as torch._int_mm takes them
            self.codes = torch.empty((self.tk, self.m, self.n_x, self.rows), dtype=torch.int8,
                                     device=codes.device)
            self.codes.copy_(codes.permute(0, 2, 3, 1))
        elif plan.pair_major:  # once per product, slice-major (Tk, n_x, M, rows): each
            # slice's codes of a chunk's vectors are a matrix with rows of unit stride
            self.codes = workspace.get("slice codes", (self.tk, self.n_x, self.m, self.rows))
            self.codes.copy_(codes.permute(0, 3, 2, 1))

    def _columns(self, read_matrix, ts, cs):
        """Row-blocks ``ts`` of a read matrix, only columns ``cs`` of every array
        ``(Tk', rows, n_a * C')``: a view if ``cs`` is every column, else a copy (small: a
        few arrays)."""
        block = read_matrix[ts]
        if cs.stop - cs.start == self.n_cols:
            return block
        t, word_lines = block.shape[:2]
        return block.view(t, word_lines, self.n_a, self.n_cols)[..., cs].reshape(
            t, word_lines, self.n_a * (cs.stop - cs.start))

    def read(self, chunk, out=None) -> torch.Tensor:
        """The chunk's currents ``(Tk', M', n_x, n_a, C')`` (pair-major:
        ``(Tk', n_x, n_a, M', C')``), into ``out`` (a contiguous tensor of as many elements)
        or else the reused chunk buffer; for an int8 read, their exact int32 sums, in a reused
        buffer of their own."""
        ms, ts, cs = chunk
        t, mc, cw = ts.stop - ts.start, ms.stop - ms.start, cs.stop - cs.start
        n_x, n_a, rows, workspace = self.n_x, self.n_a, self.rows, self.workspace
        if self.plan.pair_major:  # one input group per slice, one column group per array
            shape = (t, n_x, n_a, mc, cw)
            block = self.codes[ts, :, ms]

            def arrays_of(read_matrix):  # (Tk', n_a, rows, C'): a copy, a few arrays
                return read_matrix[ts].view(t, rows, n_a, self.n_cols)[..., cs].transpose(
                    1, 2).contiguous()
        else:  # one input group (every vector's slices), one column group
            shape = (t, 1, 1, mc * n_x, n_a * cw)
            if self.plan.int8_read:
                block = self.codes[ts, ms].reshape(t, 1, mc * n_x, rows)
                out = workspace.get("sums", shape, torch.int32)
            else:
                # (Tk', M' * n_x, rows) as a transposed view of (Tk', rows, M', n_x): the
                # float product reads it without a copy
                block = self.codes[ts, :, ms].reshape(t, rows, mc * n_x).transpose(1, 2)
                block = block.unsqueeze(1)

            def arrays_of(read_matrix):
                return self._columns(read_matrix, ts, cs).unsqueeze(1)
        if out is None:
            out = workspace.get("currents", shape)
        scratch = (workspace.get("std", shape), workspace.get("noise", shape)) \
            if self.noisy else None
        currents = read_currents(
            block, arrays_of(self.matrix),
            None if self.noise_matrix is None else arrays_of(self.noise_matrix),
            self.read_noise, self.generator, out=out.view(shape), scratch=scratch)
        return currents.view(shape if self.plan.pair_major else (t, mc, n_x, n_a, cw))


def exact_read(codes: torch.Tensor, integer_matrix) -> tuple[torch.Tensor, float] | None:
    """Whether reading DAC codes ``(Tk, rows, M, n_x)`` on a read matrix of small integers
    (``integer_matrix``: the matrix in int8 and its largest ``|entry|``, or ``None``) is exact:
    then ``(int8 matrix, largest |current|)``, else ``None``.

    Exact means every code is a small integer (:func:`small_integer_peak`) and no current can
    pass :data:`EXACT_FLOAT32_SUM`: the read may then run on the integer matrix units (int8 in,
    int32 sums) and gives the same currents as the float read.
    """
    if integer_matrix is None:
        return None
    code_peak = small_integer_peak(codes)
    if code_peak is None:
        return None
    peak = codes.shape[1] * code_peak * integer_matrix[1]
    return (integer_matrix[0], peak) if peak <= EXACT_FLOAT32_SUM else None

"""Speed of the wire-resistance crossbar solver (mpimpy.crossbar) against scipy's sparse LU.

Run: ``.venv/bin/python benchmarks/bench_wire_solver.py [--threads N] [--tiles 1024]``

1. A batch of 64 x 64 tiles through ``transfer_matrix`` (1024 tiles is what a 1000 x 1000
   INT8 product with 4 weight slices needs: 16 x 16 tiles x 4 slices), with the peak
   resident memory of the process. Run first, so the peak is not someone else's.
   scipy: one sparse LU per tile, solved for the 64 unit inputs; timed on a few tiles and
   scaled up.
2. One 128 x 128 array (G uniform in [1e-7, 1e-5] S, r = 2.93 ohm) solved for 1, 100 and
   10,000 input vectors: ``solve`` (transfer matrix + one matmul) against ``spsolve`` on
   the 2 * 128 * 128 node equations with the vectors as right-hand sides (1000 per call).

Times are wall-clock, best of a few repeats; on a shared machine they are only indicative.
When other processes keep a core busy, multi-threaded BLAS/OpenMP (torch and scipy alike)
can slow down many times over; ``--threads 1`` gives steadier numbers then.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from mpimpy.crossbar import solve, transfer_matrix

R_WIRE = 2.93  # ohm
G_LOW, G_HIGH = 1e-7, 1e-5  # siemens


def best_time(fn, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def nodal_system(G, r):
    """Sparse nodal matrix A (2*rows*cols unknowns) and the map from V to the right side."""
    rows, cols = G.shape
    word = np.arange(rows * cols).reshape(rows, cols)
    bit = rows * cols + word
    n = 2 * rows * cols
    g = 1.0 / r
    # branches between two unknown nodes: cells, word-line and bit-line segments
    p = np.concatenate([word.ravel(), word[:, :-1].ravel(), bit[:-1, :].ravel()])
    q = np.concatenate([bit.ravel(), word[:, 1:].ravel(), bit[1:, :].ravel()])
    c = np.concatenate([G.ravel(), np.full(rows * (cols - 1), g), np.full((rows - 1) * cols, g)])
    diagonal = np.zeros(n)
    np.add.at(diagonal, p, c)
    np.add.at(diagonal, q, c)
    diagonal[word[:, 0]] += g  # driver segment to the source
    diagonal[bit[-1, :]] += g  # last segment to the sense amplifier
    A = sp.coo_matrix((-c, (p, q)), shape=(n, n))
    A = (A + A.T + sp.diags(diagonal)).tocsc()
    return A, word[:, 0], bit[-1, :]


def scipy_currents(A, driven, sensed, V, r, chunk=1000):
    """Sense-amp currents for the input vectors V (n, rows) by spsolve, `chunk` at a time.

    Chunks keep the dense right-hand side (2 * rows * cols x chunk) near 250 MiB; each
    spsolve call factorises A again, which costs ~0.1 s per 1000 vectors.
    """
    out = []
    for start in range(0, V.shape[0], chunk):
        part = V[start : start + chunk]
        rhs = np.zeros((A.shape[0], part.shape[0]))
        rhs[driven] = part.T / r
        x = spla.spsolve(A, rhs).reshape(A.shape[0], -1)
        out.append((x[sensed] / r).T)
    return np.concatenate(out)


def bench_tiles(n_tiles, rng):
    print(f"== transfer_matrix: {n_tiles} tiles of 64 x 64, r = {R_WIRE} ohm ==")
    G = torch.from_numpy(rng.uniform(G_LOW, G_HIGH, size=(n_tiles, 64, 64)))
    rss_before = peak_rss_mib()
    seconds, T = best_time(lambda: transfer_matrix(G, R_WIRE), repeats=2)
    rss_after = peak_rss_mib()
    print(
        f"  mpimpy transfer_matrix      {seconds:9.3f} s  ({seconds / n_tiles * 1e3:.2f} ms/tile)"
    )
    print(
        f"  peak RSS {rss_after:.0f} MiB (was {rss_before:.0f} MiB before; "
        f"input + output {2 * G.numel() * 8 / 2**20:.0f} MiB)"
    )

    sample = min(16, n_tiles)
    eye = np.eye(64)

    def scipy_tiles():
        Ts = []
        for tile in G[:sample].numpy():
            A, driven, sensed = nodal_system(tile, R_WIRE)
            Ts.append(scipy_currents(A, driven, sensed, eye, R_WIRE))
        return np.stack(Ts)

    sample_seconds, T_scipy = best_time(scipy_tiles, repeats=2)
    scipy_seconds = sample_seconds * n_tiles / sample
    err = np.abs(T[:sample].numpy() - T_scipy).max() / np.abs(T_scipy).max()
    print(
        f"  scipy spsolve (per tile)    {scipy_seconds:9.3f} s  "
        f"(timed on {sample} tiles, scaled)   ratio scipy/mpimpy = {scipy_seconds / seconds:.1f}x"
    )
    print(f"  max |T - T_scipy| / max |T_scipy| = {err:.1e}")


def bench_single_array(rng, vector_counts):
    print(f"== one 128 x 128 array, G in [{G_LOW:g}, {G_HIGH:g}] S, r = {R_WIRE} ohm ==")
    G = rng.uniform(G_LOW, G_HIGH, size=(128, 128))
    Gt = torch.from_numpy(G)
    A, driven, sensed = nodal_system(G, R_WIRE)
    seconds_T, T = best_time(lambda: transfer_matrix(Gt, R_WIRE), repeats=3)
    print(f"  (transfer_matrix alone: {seconds_T * 1e3:.1f} ms)")
    header = ("vectors", "mpimpy solve", "scipy spsolve", "ratio", "rel. diff")
    print("  {:>8} {:>14} {:>14} {:>8} {:>10}".format(*header))
    for n in vector_counts:
        V = rng.uniform(0.0, 0.1, size=(n, 128))
        Vt = torch.from_numpy(V)
        t_ours, I_ours = best_time(lambda Vt=Vt: solve(Vt, Gt, R_WIRE), repeats=3)
        t_scipy, I_scipy = best_time(
            lambda V=V: scipy_currents(A, driven, sensed, V, R_WIRE), repeats=1 if n > 100 else 3
        )
        diff = np.abs(I_ours.numpy() - I_scipy).max() / np.abs(I_scipy).max()
        print(
            f"  {n:>8} {t_ours * 1e3:>11.1f} ms {t_scipy * 1e3:>11.1f} ms "
            f"{t_scipy / t_ours:>7.1f}x {diff:>10.1e}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch and scipy's BLAS"
    )
    parser.add_argument("--tiles", type=int, default=1024, help="64 x 64 tiles in the batch")
    parser.add_argument(
        "--vectors", type=int, nargs="+", default=[1, 100, 10_000], help="input vectors"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        try:  # scipy's BLAS too, so both sides run on the same number of cores
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, float64"
    )
    rng = np.random.default_rng(0)
    bench_tiles(args.tiles, rng)
    bench_single_array(rng, args.vectors)


if __name__ == "__main__":
    main()

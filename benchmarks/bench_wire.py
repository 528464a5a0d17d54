"""Wire resistance in the engine: the same product with and without IR drop, in one run.

A 1000x1000 by 1000x1000 INT8 product (slices [1, 1, 2, 4] on both, 64x64 arrays, var=0.05),
with wire resistance r = 2.93 ohm against r = 0. Programming (which, with wires, solves every
array's circuit once to get its transfer matrix) and the product itself are timed apart: a chip
is programmed once and then reads many input vectors.

Run: ``python benchmarks/bench_wire.py [--size 1000 --repeats 3]``. Each configuration runs in a
fresh subprocess so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(args) -> dict:
    import torch

    from mpimpy import RE, DPETensor, SlicedData

    torch.manual_seed(0)
    x_data = torch.randn(args.size, args.size)
    mat_data = torch.randn(args.size, args.size)
    engine = DPETensor(var=0.05, wire_resistance=args.r, seed=0)
    x = SlicedData([1, 1, 2, 4]).slice_data_imp(engine, x_data, transpose=True)
    mat = SlicedData([1, 1, 2, 4]).slice_data_imp(engine, mat_data)
    start = time.perf_counter()
    engine.program(mat)
    engine._read_matrices(mat, torch.float32)  # the transfer matrices, cached with the arrays
    program_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = engine(x, mat)
        times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"r": args.r, "program_s": program_s, "product_s": min(times), "peak_gb": peak_gb,
            "RE": RE(x_data @ mat_data, result)}


def solver_times() -> list[tuple[int, float]]:
    import torch

    from mpimpy.crossbar import solve

    gen = torch.Generator().manual_seed(0)
    g = 1e-7 + torch.rand(128, 128, generator=gen, dtype=torch.float64) * (1e-5 - 1e-7)
    out = []
    for n in (1, 100, 10_000):
        v = torch.rand(n, 128, generator=gen, dtype=torch.float64) * 0.1
        solve(v, g, 2.93)
        start = time.perf_counter()
        solve(v, g, 2.93)
        out.append((n, time.perf_counter() - start))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--r", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.r is not None:  # child process: one configuration
        print(json.dumps(measure(args)))
        return
    results = {}
    for r in (0.0, 2.93):
        child = [sys.executable, __file__, "--r", str(r), "--size", str(args.size),
                 "--repeats", str(args.repeats)]
        results[r] = json.loads(subprocess.run(child, check=True, capture_output=True,
                                               text=True).stdout)
    print(f"x ({args.size}, {args.size}) @ W ({args.size}, {args.size}), INT8 [1,1,2,4] x "
          f"[1,1,2,4], 64x64 arrays, var=0.05")
    print(f"{'r (ohm)':>8} {'program s':>10} {'product s':>10} {'total s':>8} {'peak GB':>8} "
          f"{'RE':>8}")
    for r, res in results.items():
        print(f"{r:8.2f} {res['program_s']:10.2f} {res['product_s']:10.2f} "
              f"{res['program_s'] + res['product_s']:8.2f} {res['peak_gb']:8.2f} "
              f"{res['RE']:8.4f}")
    wire, ideal = results[2.93], results[0.0]
    print(f"ratio, product alone (programmed once): {wire['product_s'] / ideal['product_s']:.2f}")
    total = (wire["program_s"] + wire["product_s"]) / (ideal["program_s"] + ideal["product_s"])
    print(f"ratio, programming + first product:      {total:.2f}")
    print("one 128x128 array, r = 2.93 ohm (mpimpy.crossbar.solve):")
    for n, seconds in solver_times():
        print(f"  {n:6d} vectors: {seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()

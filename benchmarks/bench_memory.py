"""Peak memory of a large product with a fixed and with a calibrated ADC range.

The case of issue 17: x (20000, 2048) @ W (2048, 2048), INT8 [1, 1, 2, 4] slices, 64 x 64 arrays,
an 8-bit ADC, var 0.05, float32. A row-block's currents of every vector (655 M values) are far
more than a chunk, so the calibrated range reads them column block by column block, slice pair
by slice pair (``mpimpy.execution.PAIR_MAJOR_CURRENTS``), each block once. Each configuration runs
in a fresh subprocess, so its peak resident memory (max RSS) is its own; chunk buffers are
reused, so the peak is the operands (the inputs' DAC codes, 655 MB here, the largest) plus a
few chunks, whatever the number of chunks (target <= 3 GB). The weights are programmed before
the product is timed, and the two configurations' processes alternate for ``--rounds`` rounds
(the best time and the largest peak of each are printed), so that the machine's load falls on
both alike.

Run: ``python benchmarks/bench_memory.py [--m 20000 --k 2048 --n 2048 --rounds 2]`` (about a
minute per product on 2 cores at the full size; ``--m 2000``, as ``make bench`` runs it, takes
seconds: ten times fewer inputs and chunks, a peak lower by the inputs' share only).
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

    from mpimpy import DPETensor, SlicedData

    torch.manual_seed(0)
    x_data, w_data = torch.randn(args.m, args.k), torch.randn(args.k, args.n)
    engine = DPETensor(var=0.05, seed=0, adc_range=args.adc_range)
    x = SlicedData([1, 1, 2, 4]).slice_data_imp(engine, x_data, transpose=True)
    mat = SlicedData([1, 1, 2, 4], is_weight=True).slice_data_imp(engine, w_data)
    engine.program(mat)  # once, as a chip is: the product alone is timed
    start = time.perf_counter()
    engine(x, mat)
    elapsed = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"adc_range": args.adc_range, "seconds": elapsed, "peak_gb": peak_gb}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=20000)
    parser.add_argument("--k", type=int, default=2048)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2,
                        help="fresh processes per configuration, alternating (default 2)")
    parser.add_argument("--adc-range", dest="adc_range", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.adc_range:  # the child: one configuration
        print(json.dumps(measure(args)))
        return
    print(f"x ({args.m}, {args.k}) @ W ({args.k}, {args.n}), INT8 [1,1,2,4], 64x64 arrays, "
          f"8-bit ADC")
    runs = {"full": [], "calibrated": []}
    for _ in range(args.rounds):
        for adc_range, done_runs in runs.items():
            done = subprocess.run([sys.executable, __file__, "--m", str(args.m), "--k",
                                   str(args.k), "--n", str(args.n), "--adc-range", adc_range],
                                  capture_output=True, text=True, check=True)
            done_runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = {}
    for adc_range, done_runs in runs.items():
        best[adc_range] = {"seconds": min(r["seconds"] for r in done_runs),
                           "peak_gb": max(r["peak_gb"] for r in done_runs)}
        r = best[adc_range]
        print(f"  adc_range={adc_range:11s} {r['seconds']:8.1f} s   peak {r['peak_gb']:.2f} GB"
              f"   (best time, largest peak of {args.rounds})")
    full, calibrated = best["full"], best["calibrated"]
    print(f"  calibrated / full: time {calibrated['seconds'] / full['seconds']:.2f}, "
          f"peak {calibrated['peak_gb'] / full['peak_gb']:.2f}")


if __name__ == "__main__":
    main()

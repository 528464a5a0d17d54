"""Speed and memory of the simulated product against the plain products it costs at minimum.

The original mPimPy README case: x (4000, 1000) @ W (1000, 1200), slices [1, 1, 4, 4] on both,
64x64 arrays, var=0, INT and FP (bw_e=8). Each slice pair costs at least one plain product of the
full shape, so the floor is n_x * n_w = 16 ``torch.matmul`` calls, timed in the same run.

Run: ``python benchmarks/bench_core.py [--m 4000 --k 1000 --n 1200 --repeats 3]``.
Each configuration runs in a fresh subprocess so its peak memory (max RSS) is its own.
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

    torch.manual_seed(42)
    x_data = torch.randn(args.m, args.k)
    mat_data = torch.randn(args.k, args.n)
    slices = [1, 1, 4, 4]
    bw_e = None if args.fmt == "INT" else 8
    engine = DPETensor(var=0.0, seed=0, adc_range=args.adc_range)
    x = SlicedData(torch.tensor(slices), bw_e=bw_e)
    mat = SlicedData(torch.tensor(slices), bw_e=bw_e)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, mat_data)
    engine(x, mat)  # warm-up (programs the weights once, as a real chip would)
    sim_times, plain_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        x.slice_data_imp(engine, x_data, transpose=True)  # inputs are sliced on every call
        result = engine(x, mat)
        sim_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(len(slices) * len(slices)):
            torch.matmul(x_data, mat_data)
        plain_times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"fmt": args.fmt, "adc_range": args.adc_range, "sim_s": min(sim_times),
            "plain_s": min(plain_times), "ratio": min(sim_times) / min(plain_times),
            "peak_gb": peak_gb, "RE": RE(x_data @ mat_data, result)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=4000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fmt", choices=["INT", "FP"], help=argparse.SUPPRESS)
    parser.add_argument("--adc-range", default="full", dest="adc_range")
    args = parser.parse_args()
    if args.fmt:  # child process: one configuration
        print(json.dumps(measure(args)))
        return
    print(f"x ({args.m}, {args.k}) @ W ({args.k}, {args.n}), slices [1,1,4,4] x [1,1,4,4], "
          f"64x64 arrays, var=0; plain = 16 torch.matmul of the same shape")
    print(f"{'format':6} {'ADC range':10} {'sim s':>8} {'plain s':>8} {'ratio':>6} "
          f"{'peak GB':>8} {'RE':>8}")
    for fmt in ("INT", "FP"):
        for adc_range in ("full", "calibrated"):
            child = [sys.executable, __file__, "--fmt", fmt, "--adc-range", adc_range,
                     "--m", str(args.m), "--k", str(args.k), "--n", str(args.n),
                     "--repeats", str(args.repeats)]
            r = json.loads(subprocess.run(child, check=True, capture_output=True,
                                          text=True).stdout)
            print(f"{r['fmt']:6} {r['adc_range']:10} {r['sim_s']:8.2f} {r['plain_s']:8.2f} "
                  f"{r['ratio']:6.2f} {r['peak_gb']:8.2f} {r['RE']:8.4f}")


if __name__ == "__main__":
    main()

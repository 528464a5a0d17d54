"""Speed and memory of the simulated product against the plain products it costs at minimum.

The original mPimPy README case: x (4000, 1000) @ W (1000, 1200), slices [1, 1, 4, 4] on both,
64x64 arrays, an 8-bit ADC, INT and FP (bw_e=8), noise-free (var=0, vnoise=0) and with the
defaults' noise (var=0.05, vnoise=0.05), each with a full-range ADC, the batch oracle (each
product's ranges found from its own batch, the ``"calibrated"`` of mPimPy before #28) and the
calibrated ADC (ranges calibrated once on the same data, then frozen: inference reads no
calibration).

Each slice pair costs at least one plain product of the full shape, so two floors are timed in
the same run: 16 float32 ``torch.matmul`` and, where the CPU has them, 16 int8 ``torch._int_mm``
of the same shape (slice values and DAC codes are small integers). A third line shows the bound
in force: the engine must read every row-block separately (its ADC converts each row-block's
currents), so its read is ``Tk`` products with an inner dimension of only 64; those alone,
``torch.bmm`` in float32 and ``torch._int_mm`` in int8, are timed too (each row-block whole: the
engine reads them chunk by chunk, where the int8 products are faster still). The last column
says which kernel the engine's read used: ``int8`` for the noise-free products (exact integers,
on the VNNI/AMX units where the CPU has them), ``float32`` otherwise.

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

SLICES = [1, 1, 4, 4]
CONFIGS = [  # (format, ADC range, var, vnoise)
    (fmt, adc_range, noise, noise) for fmt in ("INT", "FP") for noise in (0.0, 0.05)
    for adc_range in ("full", "batch-oracle", "calibrated")
]


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def floors(args) -> dict:
    """The plain floors of the case, timed side by side (best of ``repeats``)."""
    import torch

    pairs = len(SLICES) ** 2
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 16, (args.m, args.k), generator=gen)
    w = torch.randint(0, 16, (args.k, args.n), generator=gen)
    xf, wf = x.float(), w.float()
    out = {"fp32_s": best_time(lambda: [torch.matmul(xf, wf) for _ in range(pairs)],
                               args.repeats), "int8_s": None, "rows_int8_s": None}
    # the engine's read: per row-block, every (vector, input slice) against every array column
    tk, rows = -(-args.k // 64), 64
    codes = torch.randint(0, 16, (tk, args.m * len(SLICES), rows), generator=gen).float()
    cells = torch.randint(0, 16, (tk, rows, len(SLICES) * args.n), generator=gen).float()
    buffer = torch.empty(1, args.m * len(SLICES), len(SLICES) * args.n)
    out["rows_fp32_s"] = best_time(lambda: [torch.bmm(codes[t:t + 1], cells[t:t + 1],
                                                      out=buffer) for t in range(tk)],
                                   args.repeats)
    from mpimpy.crossbar import int8_matmul_fits

    if int8_matmul_fits(torch.device("cpu"), args.m, args.k, args.n):  # the engine's own test
        xi, wi = x.to(torch.int8), w.to(torch.int8)
        out["int8_s"] = best_time(lambda: [torch._int_mm(xi, wi) for _ in range(pairs)],
                                  args.repeats)
        ci, mi = codes.to(torch.int8), cells.to(torch.int8)
        out["rows_int8_s"] = best_time(lambda: [torch._int_mm(ci[t], mi[t]) for t in range(tk)],
                                       args.repeats)
        assert torch.equal(torch._int_mm(ci[0], mi[0]).float(), torch.mm(codes[0], cells[0]))
    return out


def measure(args) -> dict:
    import torch

    from mpimpy import RE, DPETensor, SlicedData

    torch.manual_seed(42)
    x_data = torch.randn(args.m, args.k)
    mat_data = torch.randn(args.k, args.n)
    bw_e = None if args.fmt == "INT" else 8
    engine = DPETensor(var=args.var, vnoise=args.vnoise, radc=2**8, seed=0,
                       adc_range=args.adc_range, compile=args.compile == "on")
    x = SlicedData(torch.tensor(SLICES), bw_e=bw_e)
    mat = SlicedData(torch.tensor(SLICES), bw_e=bw_e)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, mat_data)
    calibrate_s = None
    if args.adc_range == "calibrated":  # once, before inference, as a chip is trimmed
        start = time.perf_counter()
        engine.calibrate(x, mat)
        calibrate_s = time.perf_counter() - start
    engine(x, mat)  # warm-up: programs the weights once, as a real chip would (and compiles)
    sim_times, plain_times = [], []
    for _ in range(args.repeats):  # interleaved with the float floor: same load on both
        start = time.perf_counter()
        x.slice_data_imp(engine, x_data, transpose=True)  # inputs are sliced on every call
        result = engine(x, mat)
        sim_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(len(SLICES) ** 2):
            torch.matmul(x_data, mat_data)
        plain_times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"sim_s": min(sim_times), "plain_s": min(plain_times), "peak_gb": peak_gb,
            "RE": RE(x_data @ mat_data, result), "kernel": engine.last_read_kernel,
            "convert": engine.last_convert_kernel, "calibrate_s": calibrate_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=4000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", choices=["both", "off", "on"], default="both",
                        help="time the engine uncompiled, compiled (DPETensor(compile=True)) "
                             "or both (default)")
    parser.add_argument("--fmt", choices=["INT", "FP"], help=argparse.SUPPRESS)
    parser.add_argument("--adc-range", default="full", dest="adc_range", help=argparse.SUPPRESS)
    parser.add_argument("--var", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--vnoise", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--floors", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floors:
        print(json.dumps(floors(args)))
        return
    if args.fmt:  # child process: one configuration
        print(json.dumps(measure(args)))
        return
    shape = ["--m", str(args.m), "--k", str(args.k), "--n", str(args.n),
             "--repeats", str(args.repeats)]

    def child(*extra):
        return json.loads(subprocess.run([sys.executable, __file__, *shape, *extra], check=True,
                                         capture_output=True, text=True).stdout)

    import torch

    f = child("--floors")
    print(f"x ({args.m}, {args.k}) @ W ({args.k}, {args.n}), slices {SLICES} x {SLICES}, "
          f"64x64 arrays, 8-bit ADC; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    int8 = f["int8_s"] is not None
    print(f"floors: 16 float32 matmul {f['fp32_s']:.3f} s; 16 int8 _int_mm "
          + (f"{f['int8_s']:.3f} s" if int8 else "not timed: no fast int8 products on this CPU"))
    tk = -(-args.k // 64)
    print(f"the engine's read alone ({tk} row-blocks, inner dimension 64): float32 bmm "
          f"{f['rows_fp32_s']:.3f} s = {f['rows_fp32_s'] / f['fp32_s']:.2f} x the float "
          "floor; int8 _int_mm " + (f"{f['rows_int8_s']:.3f} s = "
                                    f"{f['rows_int8_s'] / f['fp32_s']:.2f} x" if int8 else "n/a"))
    print()
    print(f"{'format':6} {'ADC range':12} {'var':>5} {'vnoise':>6} {'sim s':>7} "
          f"{'x fp32':>7} {'x int8':>7} {'x full':>7} {'x oracle':>8} {'peak GB':>8} "
          f"{'RE':>8}  read, ADC + shift-add")
    full_ratio, oracle_ratio = {}, {}
    for fmt, adc_range, var, vnoise in CONFIGS:
        for compiled in ("off", "on") if args.compile == "both" else (args.compile,):
            r = child("--fmt", fmt, "--adc-range", adc_range, "--var", str(var),
                      "--vnoise", str(vnoise), "--compile", compiled)
            ratio = r["sim_s"] / r["plain_s"]  # against the float floor timed beside it
            if adc_range == "full":
                full_ratio[fmt, var, compiled] = ratio
            if adc_range == "batch-oracle":
                oracle_ratio[fmt, var, compiled] = ratio
            vs_full = "" if adc_range == "full" else \
                f"{ratio / full_ratio[fmt, var, compiled]:.2f}"
            vs_oracle = "" if adc_range != "calibrated" else \
                f"{ratio / oracle_ratio[fmt, var, compiled]:.2f}"
            vs_int8 = f"{r['sim_s'] / f['int8_s']:.2f}" if int8 else "n/a"
            calibration = "" if r["calibrate_s"] is None else \
                f"; calibration {r['calibrate_s']:.2f} s"
            print(f"{fmt:6} {adc_range:12} {var:5.2f} {vnoise:6.2f} {r['sim_s']:7.2f} "
                  f"{ratio:7.2f} {vs_int8:>7} {vs_full:>7} {vs_oracle:>8} {r['peak_gb']:8.2f} "
                  f"{r['RE']:8.4f}  {r['kernel']}, {r['convert']}{calibration}")
    print("x fp32: against 16 float32 matmul timed beside it; x int8: against 16 int8 _int_mm "
          "(floors above); x full, x oracle: against the full range and the batch oracle with "
          "the same noise and kernels")


if __name__ == "__main__":
    main()

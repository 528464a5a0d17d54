"""Inference speed of a converted CNN against the plain products it costs at minimum.

The small CNN of ``mpimpy.nn.models`` trained in software on the MNIST subset (cached; see
``mpimpy.nn.pretrained``), converted with INT8 slicing [1, 1, 2, 4] on inputs and weights
(``n_x = n_m = 4`` slices), g_level 16, var 0.05, an 8-bit ADC: calibrated once on 1,000
training images (``mnn.calibrate``, timed against one inference pass) and frozen, and, interleaved
with it, the batch oracle (each product's ranges found from its own batch, the ``"calibrated"`` of
mPimPy before #28). Each slice pair costs
at least one plain product, so the floor is ``n_x * n_m`` times the plain model's inference
time; both are timed on the 1,000 test images in the same run (best of ``--repeats``,
interleaved) and their ratio is printed, with the accuracies and where the simulated time goes
(inside the engine's ``MapReduceDot`` or in the layers: unfolding, reshaping).

The engine runs uncompiled and with ``compile=True`` (the ADC and shift-add as one compiled
kernel), both timed in the same run.

Run: ``python benchmarks/bench_nn.py [--repeats 3] [--vnoise 0.0] [--threads 2]
[--compile both|off|on]``.
"""

from __future__ import annotations

import argparse
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vnoise", type=float, default=0.0)
    parser.add_argument("--var", type=float, default=0.05)
    parser.add_argument("--adc-range", choices=["both", "calibrated", "batch-oracle"],
                        default="both", dest="adc_range",
                        help="the frozen calibrated ADC, the batch oracle, or both interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", choices=["both", "off", "on"], default="both",
                        help="time the model uncompiled, compiled (DPETensor(compile=True)) or "
                             "both, interleaved (default)")
    args = parser.parse_args()

    import torch

    from mpimpy import DPETensor
    from mpimpy import nn as mnn
    from mpimpy.datasets import load_mnist

    torch.set_num_threads(args.threads)
    data = load_mnist()
    model, info = mnn.pretrained("cnn", data, seed=args.seed)
    slices = [1, 1, 2, 4]
    kernels = ("uncompiled", "compiled") if args.compile == "both" else (
        "compiled" if args.compile == "on" else "uncompiled",)
    ranges = ("batch-oracle", "calibrated") if args.adc_range == "both" else (args.adc_range,)
    variants = [f"{mode}, {kernel}" for mode in ranges for kernel in kernels]
    models, engines, calibration_s = {}, {}, {}
    for variant in variants:
        mode, kernel = variant.split(", ")
        engine = DPETensor(var=args.var, vnoise=args.vnoise, g_level=16, radc=2**8,
                           adc_range=mode, seed=args.seed, compile=kernel == "compiled")
        engines[variant] = engine
        models[variant] = mnn.convert(model, engine, xblk=slices, mblk=slices,
                                      seed=args.seed).eval()
        if mode == "calibrated":  # once, on training images, before inference
            start = time.perf_counter()
            mnn.calibrate(models[variant], data.x_train[:1000])
            calibration_s[variant] = time.perf_counter() - start
    x, y = data.x_test, data.y_test
    floor = len(slices) * len(slices)

    engine_time = [0.0]
    call = DPETensor.MapReduceDot

    def timed(self, *a, **k):
        start = time.perf_counter()
        try:
            return call(self, *a, **k)
        finally:
            engine_time[0] += time.perf_counter() - start

    sim = {v: [] for v in variants}
    in_engine = {v: [] for v in variants}
    outputs, plain = {}, []
    with torch.no_grad():
        for hw in models.values():
            hw(x)  # programs the weights once, as a real chip would (and compiles)
        for _ in range(args.repeats):  # interleaved: the same load on every variant
            for variant, hw in models.items():
                engine_time[0] = 0.0
                DPETensor.MapReduceDot = timed
                try:
                    start = time.perf_counter()
                    outputs[variant] = hw(x)
                    sim[variant].append(time.perf_counter() - start)
                finally:
                    DPETensor.MapReduceDot = call
                in_engine[variant].append(engine_time[0])
            start = time.perf_counter()
            for _ in range(floor):
                ref = model(x)
            plain.append(time.perf_counter() - start)
    plain_s = min(plain) / floor
    acc_sw = float((ref.argmax(1) == y).double().mean())
    origin = "cached" if info["cached"] else "trained in {:.1f} s".format(info["train_s"])
    print(f"model: SmallCNN trained {info['epochs']} epochs, seed {args.seed} ({origin})")
    print(f"engine: {engines[variants[0]]!r}")
    print(f"plain model, 1000 images:            {plain_s * 1e3:9.1f} ms "
          f"(accuracy {acc_sw:.4f})")
    print(f"n_x * n_m = {floor} x plain:              {plain_s * floor * 1e3:9.1f} ms")
    for variant in variants:
        sim_s = min(sim[variant])
        best = sim[variant].index(sim_s)
        acc_hw = float((outputs[variant].argmax(1) == y).double().mean())
        calibration = "" if variant not in calibration_s else \
            f"; calibration on 1,000 images {calibration_s[variant] * 1e3:.1f} ms = " \
            f"{calibration_s[variant] / sim_s:.2f} x one inference pass"
        print(f"converted model, {variant:24}: {sim_s * 1e3:9.1f} ms "
              f"(in MapReduceDot {in_engine[variant][best] * 1e3:.1f} ms, "
              f"{100 * in_engine[variant][best] / sim_s:.0f} %; accuracy {acc_hw:.4f}); "
              f"ratio to {floor} x plain: {sim_s / (plain_s * floor):.2f}{calibration}")


if __name__ == "__main__":
    main()

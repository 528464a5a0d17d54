"""The explorer's update, from a changed control to new figures, against a full redraw.

Side by side in one run, on the explorer's default sizes (x 128 x 256, W 256 x 128, 64 x 64
arrays), for a sequence of ``var`` values (every figure changes) and of ``rdac`` values (the
programmed arrays, hence the conductance map, stay the same):

* ``full redraw``: what an update did before the figures were reused: simulate, draw all
  three panels on a new figure (every output in the scatter, ``tight_layout``) and encode
  it as one PNG at 90 dpi;
* ``explorer``: :class:`mpimpy.explorer.Explorer` with ``debounce_s=0``, timed from setting
  the control's value to the Image widgets holding the new PNGs (figures made once, data
  updated in place, unchanged figures not drawn).

Both simulate the same settings; the debounce (0.2 s by default, so that dragging a slider
does not queue runs) and the transfer to the browser come on top of either. Prints the median
seconds, their ratio and the PNG bytes an update sends.

Run: ``python benchmarks/bench_explorer.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time


def full_redraw(result) -> bytes:
    """The explorer's update before it reused its figures (for comparison)."""
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(13, 3.8))
    scatter, histogram, gmap = figure.subplots(1, 3)
    ideal, sim = result.y_ideal.ravel(), result.y_sim.ravel()
    scatter.scatter(ideal, sim, s=3, alpha=0.4)
    low, high = float(min(ideal.min(), sim.min())), float(max(ideal.max(), sim.max()))
    scatter.plot([low, high], [low, high], color="black", lw=0.8)
    scatter.set(xlabel="expected value of dot product", ylabel="measured value of dot product",
                title="measured vs expected")
    histogram.hist(sim - ideal, bins=60)
    histogram.set(xlabel="error (measured - expected)", ylabel="count", title="error histogram")
    image = gmap.imshow(result.conductance * 1e6, cmap="viridis", aspect="auto")
    gmap.set(xlabel="bit line (column)", ylabel="word line (row)",
             title="conductance of array (0, 0), slice 0")
    figure.colorbar(image, ax=gmap, label="conductance (uS)")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=90)
    plt.close(figure)
    return png.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="values per control and method")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import torch

    from mpimpy.explorer import Explorer, ExplorerSettings, simulate

    torch.set_num_threads(1)  # the kernel of a notebook shares the machine; one thread each
    sweeps = {
        "var": [0.02 * (i + 1) for i in range(args.repeats)],
        "rdac": [2 ** (2 + i % 4) for i in range(args.repeats)],
    }
    explorer = Explorer(debounce_s=0)
    full_redraw(explorer.result)  # warm up both paths
    print(f"{'control':8} {'full redraw (s)':>16} {'explorer (s)':>13} {'ratio':>6} "
          f"{'explorer simulate / draw (s)':>30} {'PNG bytes full / explorer':>27}")
    for control, values in sweeps.items():
        full, fast, sims, draws, old_bytes, new_bytes = [], [], [], [], [], []
        for value in values:
            settings = ExplorerSettings(**{control: value})
            start = time.perf_counter()
            old_bytes.append(len(full_redraw(simulate(settings))))
            full.append(time.perf_counter() - start)

            start = time.perf_counter()
            explorer.controls[control].value = value
            fast.append(time.perf_counter() - start)
            assert explorer.settings == settings and explorer.error is None
            sims.append(explorer.timings["simulate"])
            draws.append(explorer.timings["draw"])
            new_bytes.append(sum(len(explorer.images[n].value) for n in explorer.redrawn))
        explorer.controls[control].value = getattr(ExplorerSettings(), control)
        f, e = statistics.median(full), statistics.median(fast)
        print(f"{control:8} {f:16.3f} {e:13.3f} {f / e:6.1f} "
              f"{statistics.median(sims):14.3f} / {statistics.median(draws):.3f}      "
              f"{int(statistics.median(old_bytes)):>12} / {int(statistics.median(new_bytes))}")


if __name__ == "__main__":
    main()

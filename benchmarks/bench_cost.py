"""Costs: ISAAC reproduced from simulated workloads, and what estimating costs adds to a product.

1. ISAAC-CE (Shafiee et al., ISCA 2016): a 128 x 128 16-bit layer that fills one IMA and a
   384 x 512 layer that fills one tile of 12 IMAs, simulated and priced with the
   ``isaac-32nm`` technology; printed as a Markdown table against Table I (the README's table).
2. Overhead: the original README case (x 4000 x 1000 @ W 1000 x 1200, [1, 1, 4, 4] slices,
   64 x 64 arrays) on programmed weights, without a technology, with ISAAC's fixed energy per
   cell and with the physics (``V^2 G t`` of every cell measured on every read), timed
   interleaved in one run; the ratios are what estimating adds (target <= 1.10).

Run: ``python benchmarks/bench_cost.py [--m 4000 --k 1000 --n 1200 --repeats 5]``.
"""

from __future__ import annotations

import argparse
import time


def isaac_table(vectors: int) -> str:
    from mpimpy import cost
    from mpimpy.isaac import isaac_workload

    table = cost.ISAAC_TABLE_1
    ima = cost.estimate(*isaac_workload(128, 128, vectors=vectors))
    tile = cost.estimate(*isaac_workload(384, 512, vectors=vectors))
    rows = [("quantity", "ISAAC (Table I)", "mPimPy", "difference")]

    def add(name, published, computed, unit, scale=1.0):
        rows.append((name, f"{published * scale:.4g} {unit}", f"{computed * scale:.4g} {unit}",
                     f"{(computed - published) / published:+.1%}"))

    figures = cost.ima_figures(ima)
    for component, (power, _) in table["ima"].items():
        add(f"IMA {component} power", power, figures[component][0], "mW", 1e3)
    add("IMA power", table["ima_total"][0], figures["ima_total"][0], "mW", 1e3)
    add("IMA area", table["ima_total"][1], figures["ima_total"][1], "mm2")
    add("tile power", table["tile_total"][0], tile.power, "mW", 1e3)
    add("tile area", table["tile_total"][1], tile.area, "mm2")
    add("ADC share of tile power", table["tile_adc_share"][0],
        tile.energy_breakdown["adc"] / tile.energy, "", 100)
    add("ADC share of tile area", table["tile_adc_share"][1],
        tile.area_breakdown["adc"] / tile.area, "", 100)
    add("8-bit conversions per 16-bit MAC", 1.0, ima.conversions_per_mac, "")
    # Table IV's 627.5 GOPS/W is the chip: 168 such tiles plus 10.4 W of HyperTransport
    chip_power = 168 * tile.power + 10.4
    chip_gops_per_w = 2 * 168 * tile.throughput / chip_power / 1e9
    add("chip GOPS/W (168 tiles + 10.4 W HyperTransport)", 627.5, chip_gops_per_w, "")
    ima_energy = sum(ima.energy_breakdown[c] for c in cost.IMA_COMPONENTS)
    add("energy per 16-bit MAC at the IMA", 24.1e-3 / (128 * 128 / 1.6e-6),
        ima_energy / ima.macs, "pJ", 1e12)
    add("energy per 16-bit MAC at the tile", 330e-3 / (12 * 128 * 128 / 1.6e-6),
        tile.energy_per_mac, "pJ", 1e12)
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|---|---|---|---|")
    return "\n".join(lines) + (
        f"\n\n{vectors} input vectors; unit columns converted; IMA {ima.throughput / 1e9:.2f} "
        f"GMAC/s, tile {tile.tops_per_watt * 1e3:.1f} GOPS/W")


def overhead(m: int, k: int, n: int, repeats: int) -> str:
    import torch

    from mpimpy import DPETensor, SlicedData

    torch.manual_seed(42)
    x_data, w_data = torch.randn(m, k), torch.randn(k, n)
    technologies = {"no estimate": None, "ISAAC per-cell energy": "isaac-32nm",
                    "physics (V^2 G t measured)": {"preset": "isaac-32nm",
                                                   "array_energy_per_cell": None}}
    cases = {}
    for label, technology in technologies.items():
        engine = DPETensor(var=0.0, seed=0, technology=technology)
        x = SlicedData([1, 1, 4, 4]).slice_data_imp(engine, x_data, transpose=True)
        mat = SlicedData([1, 1, 4, 4], is_weight=True).slice_data_imp(engine, w_data)
        engine(x, mat)  # programs the weights (and solves what the reads drive) once
        cases[label] = (engine, x, mat)
    times = {label: [] for label in cases}
    for _ in range(repeats):  # interleaved, so the machine's load hits every case alike
        for label, (engine, x, mat) in cases.items():
            start = time.perf_counter()
            engine(x, mat)
            times[label].append(time.perf_counter() - start)
    base = min(times["no estimate"])
    lines = [f"product {m}x{k} @ {k}x{n}, [1,1,4,4], 64x64 arrays, best of {repeats}:"]
    for label, values in times.items():
        lines.append(f"  {label:28s} {min(values):7.3f} s   ratio {min(values) / base:.3f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=4000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vectors", type=int, default=256,
                        help="input vectors of the ISAAC workloads")
    args = parser.parse_args()
    print(isaac_table(args.vectors))
    print()
    print(overhead(args.m, args.k, args.n, args.repeats))


if __name__ == "__main__":
    main()

"""Benchmark the IR-drop models of prime.hardware.ir_drop.

(a) Accuracy: the fast model's relative error of column currents against the exact solve, for
square tiles and wire resistances (every word- and bit-line segment = r, no driver / sense
resistance), on RRAM-like conductances (a fraction unformed at 0 µS, formed cells
N(12.35, 1.86) µS clipped > 0) and random 0/1 spike inputs.
(b) Speed: the exact solve (factorise + solve) of one tile for a batch of spike vectors, the
exact transfer matrix of the tile (one factorisation, ``rows`` solves) and its matmul with the
batch, and the fast model on the same batch.
(c) ``--transfer``: the read path's models (batch-free transfer matrices) against the exact
solve: the first-order closed form, and the exact transfer without its sneak entries at
unformed cells (what the read path applies).

    python scripts/bench_ir_drop.py                      # the tables in docs/ir_drop.md
    python scripts/bench_ir_drop.py --sizes 64 128 --skip-timing
    python scripts/bench_ir_drop.py --transfer --skip-accuracy --skip-timing
    python scripts/bench_ir_drop.py --network nmnist-conv --skip-accuracy --skip-timing

(d) ``--network MODEL``: one read of every layer of a fresh MODEL through 512 x 512 tiles at
5 Ω, exact (the cost of a refresh of the exact model) and first-order.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prime.hardware.ir_drop import (
    WireParams,
    fast_tile,
    first_order_transfer,
    solve_tile,
    transfer_matrix,
    wire_drop,
)
from prime.snn.models import get_model


def rram_tile(n: int, unformed: float, gen: torch.Generator) -> torch.Tensor:
    """[n, n] float64 µS: ``unformed`` of the cells at 0, the rest N(12.35, 1.86) clipped > 0."""
    g = (torch.randn(n, n, generator=gen, dtype=torch.float64) * 1.86 + 12.35).clamp_min(0.01)
    return torch.where(torch.rand(n, n, generator=gen, dtype=torch.float64) < unformed, 0.0, g)


def spikes(batch: int, n: int, density: float, gen: torch.Generator) -> torch.Tensor:
    """[batch, n] float64 0/1 V spike vectors."""
    return (torch.rand(batch, n, generator=gen, dtype=torch.float64) < density).to(torch.float64)


def spectral_radius(g: torch.Tensor, wire: WireParams, iterations: int = 50) -> float:
    """Largest eigenvalue of R·G (power iteration); the Jacobi model converges iff it is < 1."""
    x = torch.ones(1, *g.shape, dtype=torch.float64)
    lam = 0.0
    for _ in range(iterations):
        y = wire_drop(g * x, wire)
        lam = float(y.norm() / x.norm())
        x = y / y.norm()
    return lam


def rel_errors(fast: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """Mean and worst |fast - exact| / |exact| over the columns carrying >= 1 % of the largest
    column current of their input vector (the rest carry only tiny sneak currents)."""
    keep = exact.abs() >= 0.01 * exact.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    rel = ((fast - exact).abs() / exact.abs())[keep]
    return float(rel.mean()), float(rel.max())


def pct(x: float) -> str:
    return f"{100 * x:.3g}" if x < 10 else ">1e3"


def accuracy(args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(args.seed)
    runs = [("ideal", 0)] + [(m, k) for m in ("jacobi", "cg") for k in args.iterations]
    heads = [f"{m[0].upper() if m != 'ideal' else 'ideal'}{k or ''}" for m, k in runs]
    print(
        f"(a) fast model vs exact solve: relative error of column currents in %, mean / worst "
        f"over {args.batch} spike vectors (density {args.density}) x columns\n"
        "    (the columns carrying >= 1 % of their vector's largest column current);\n"
        f"    {args.unformed:.0%} unformed cells, formed N(12.35, 1.86) µS; r = every word- and "
        "bit-line segment; rho = spectral radius of R·G (Jacobi converges iff rho < 1);\n"
        "    J<k> = Jacobi fixed point with k iterations (J1 = first order), C<k> = conjugate "
        "gradients with k iterations, ideal = no wire resistance (v @ g)\n"
    )
    print("| size | r (Ω) | rho | " + " | ".join(heads) + " |")
    print("|---:|---:|---:|" + "---:|" * len(heads))
    for n in args.sizes:
        g = rram_tile(n, args.unformed, gen)
        v = spikes(args.batch, n, args.density, gen)
        for r in args.resistances:
            wire = WireParams(r_wordline_ohm=r, r_bitline_ohm=r)
            exact = solve_tile(g, v, wire)
            cells = []
            for method, k in runs:
                if method == "ideal":
                    fast = v @ g
                else:
                    fast = fast_tile(g, v, wire, iterations=k, method=method)  # type: ignore[arg-type]
                mean, worst = rel_errors(fast, exact)
                cells.append(f"{pct(mean)} / {pct(worst)}")
            rho = spectral_radius(g, wire)
            print(f"| {n} | {r:g} | {rho:.3g} | " + " | ".join(cells) + " |", flush=True)


def transfer_models(args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(args.seed)
    print(
        "(c) the read path's transfer matrices vs the exact solve: relative error of column "
        "currents in %, mean / worst, as in (a); first-order = closed form (J1), kept = exact "
        "transfer at formed cells only (sneak entries at unformed cells left out)\n"
    )
    print("| size | r (Ω) | rho | ideal | first-order | kept |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        g = rram_tile(n, args.unformed, gen)
        v = spikes(args.batch, n, args.density, gen)
        for r in args.resistances:
            wire = WireParams(r_wordline_ohm=r, r_bitline_ohm=r)
            transfer = transfer_matrix(g, wire)
            exact = v @ transfer  # == solve_tile(g, v, wire) (tests: 1e-10)
            models = (g, first_order_transfer(g, wire), torch.where(g > 0, transfer, 0.0))
            cells = [rel_errors(v @ m, exact) for m in models]
            text = " | ".join(f"{pct(mean)} / {pct(worst)}" for mean, worst in cells)
            rho = spectral_radius(g, wire)
            print(f"| {n} | {r:g} | {rho:.3g} | {text} |", flush=True)


def network_read(args: argparse.Namespace) -> None:
    print(f"\n(d) {args.network}: one read of every layer, 512 x 512 tiles, 5 ohm wires")
    for model in ("exact", "first-order"):
        read_path = {
            "tile_rows": 512,
            "tile_columns": 512,
            "r_wordline_ohm": 5.0,
            "r_bitline_ohm": 5.0,
            "ir_model": model,
        }
        times = []
        for _ in range(args.repeats):
            net = get_model(args.network, read_path=read_path)  # no transfer cached yet
            t0 = time.perf_counter()
            net.crossbar_reads()
            times.append(time.perf_counter() - t0)
        runs = ", ".join(f"{t:.3f}" for t in times)
        print(f"    {model}: {statistics.median(times):.3f} s (median of {args.repeats}: {runs})")


def timing(args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(args.seed + 1)
    n, batch = args.time_size, args.time_batch
    g = rram_tile(n, args.unformed, gen)
    v = spikes(batch, n, args.density, gen)
    wire = WireParams(1.0, 1.0)
    solve_tile(g[:8, :8], v[:, :8], wire)  # warm up
    fast_tile(g[:8, :8], v[:, :8], wire)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        solve_tile(g, v, wire)
        times.append(time.perf_counter() - t0)
    fast = {}
    for dtype in (torch.float32, torch.float64):
        for method in ("jacobi", "cg"):
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fast_tile(g.to(dtype), v.to(dtype), wire, iterations=3, method=method)
                ts.append(time.perf_counter() - t0)
            fast[(method, dtype)] = statistics.median(ts)
    print(
        f"\n(b) {n} x {n} tile, batch of {batch} spike vectors, r = 1 Ω, "
        f"{torch.get_num_threads()} torch threads, median of {args.repeats}:"
    )
    print(
        f"    exact solve (build + factorise + solve): {statistics.median(times):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
    )
    t0 = time.perf_counter()
    transfer = transfer_matrix(g, wire)
    t1 = time.perf_counter()
    products = []
    for _ in range(args.repeats):
        t2 = time.perf_counter()
        v.float() @ transfer.float()
        products.append(time.perf_counter() - t2)
    print(
        f"    exact transfer matrix (build + factorise + {n} solves, once per set of cells): "
        f"{t1 - t0:.2f} s; then per batch v @ G_eff (float32): "
        f"{1e3 * statistics.median(products):.2f} ms"
    )
    for (method, dtype), t in fast.items():
        print(
            f"    fast_tile {method}, 3 iterations, {str(dtype).removeprefix('torch.')}: {t:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--resistances", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0])
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--batch", type=int, default=32, help="spike vectors per accuracy run")
    parser.add_argument("--density", type=float, default=0.1, help="spike probability per row")
    parser.add_argument("--unformed", type=float, default=0.5, help="fraction of 0 µS cells")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-size", type=int, default=512)
    parser.add_argument("--time-batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--transfer", action="store_true", help="(c) the transfer models")
    parser.add_argument("--network", help="(d) time one read of every layer of this model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_accuracy:
        accuracy(args)
    if args.transfer:
        transfer_models(args)
    if args.network:
        network_read(args)
    if not args.skip_timing:
        timing(args)


if __name__ == "__main__":
    main()

"""Where skipping zero inputs pays: sparse against dense (oneDNN) convolution by input density.

Times, in one process on the same inputs, a training step's convolution (forward, then
backward with both the input and the weight gradient) and the forward alone, for
``prime.kernels.sparse_conv``'s kernels (compression counted) and for ``F.conv2d``, over a range of
input densities. Inputs are pooled-spike-like frames (0 or k/4), channels-last. Prints
medians in ms and the ratio dense / sparse (above 1: sparse is faster); the crossover sets
``prime.kernels.sparse_conv.MAX_DENSITY``. Default shape: ``nmnist-conv``'s second convolution at
B = 128, T = 10.

    python scripts/bench_sparse_conv.py --threads 2 --densities 0.05 0.1 0.15 0.2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from prime.kernels import sparse_conv
from prime.kernels.memory import keep_freed_memory
from prime.kernels.native import kernels


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def frames(shape: tuple[int, ...], density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(1, 5, shape, generator=g) / 4
    x = torch.where(torch.rand(shape, generator=g) < density, values, torch.zeros(()))
    return x.contiguous(memory_format=torch.channels_last)


def time_conv(
    conv: Callable[..., torch.Tensor],
    x: torch.Tensor,
    weight: torch.Tensor,
    padding: int,
    repeats: int,
) -> tuple[float, float]:
    """Median ms of conv(x, weight, padding=...) forward, and of forward + backward (the
    gradients of x and weight)."""
    x_grad, w_grad = x.clone().requires_grad_(), weight.clone().requires_grad_()
    grad_out = torch.randn_like(F.conv2d(x, weight, padding=padding))
    forward = median_ms(lambda: conv(x, weight, padding=padding), repeats)
    step = median_ms(lambda: conv(x_grad, w_grad, padding=padding).backward(grad_out), repeats)
    return forward, step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1280, help="N = T * B (default 1280)")
    parser.add_argument("--in-channels", type=int, default=12)
    parser.add_argument("--out-channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=16, help="input height = width")
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--padding", type=int, default=0)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    if kernels() is None:
        raise SystemExit("the native kernels are not built (no C compiler?): nothing to compare")
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    shape = (args.frames, args.in_channels, args.size, args.size)
    weight = torch.randn(args.out_channels, args.in_channels, args.kernel, args.kernel) * 0.05
    print(
        f"input {list(shape)}, weight {list(weight.shape)}, padding {args.padding}, "
        f"{args.threads} threads; medians of {args.repeats}, ms"
    )
    print("density | forward dense, sparse, ratio | training dense, sparse, ratio")
    for density in args.densities:
        x = frames(shape, density, seed=0)
        dense = time_conv(F.conv2d, x, weight, args.padding, args.repeats)
        sparse = time_conv(sparse_conv.sparse_conv2d, x, weight, args.padding, args.repeats)
        print(
            f"{density:7.3f} | {dense[0]:6.1f} {sparse[0]:6.1f} {dense[0] / sparse[0]:5.2f}x"
            f" | {dense[1]:6.1f} {sparse[1]:6.1f} {dense[1] / sparse[1]:5.2f}x"
        )


if __name__ == "__main__":
    main()

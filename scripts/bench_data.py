"""Data pipeline benchmark on a generated N-MNIST-sized fake dataset (real .bin format).

Writes ``--samples`` fake recordings (default 10,000, about 4,000 events each, as real
N-MNIST) into a temporary data root, then measures in this one process:

* binning: frames/s of tonic's ToFrame on .bin files, in the main process and with the
  DataLoader workers that build the cache;
* first epoch: cache build + one training epoch of nmnist-conv;
* later epoch: data time (waiting for the next batch) as a share of the training step time
  (forward, backward, optimizer), after loading the frames from the cache.

    python scripts/bench_data.py [--samples 10000] [--batch-size 32] [--workers N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tonic
import torch
import torch.nn.functional as F

from prime.data import iterate_batches, load_dataset
from prime.data.cache import bin_frames
from prime.data.fake import write_fake_nmnist
from prime.data.nmnist import NMNIST
from prime.data.tonic_files import to_frame
from prime.snn.models import get_model

TIMESTEPS = 10


def train_epoch(model, optimizer, dataset, batch_size: int, epoch: int) -> dict[str, list[float]]:
    """One epoch as prime.runs.train runs it; seconds waiting for data and computing, per batch."""
    batches, _ = iterate_batches(dataset, batch_size, torch.Generator().manual_seed(epoch))
    times = {"data": [], "step": []}
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        fetched = time.perf_counter()
        loss = F.cross_entropy(model.logits(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = time.perf_counter()
        times["data"].append(fetched - start)
        times["step"].append(done - fetched)
        start = done
    return times


def binning_rate(root: Path, samples: int, workers: int, repeats: int = 3) -> float:
    """Median frames/s of reading and binning ``samples`` recordings."""
    transform = to_frame(tonic.datasets.NMNIST.sensor_size, TIMESTEPS)
    source = NMNIST(root, train=True, transform=transform)
    source.data, source.targets = source.data[:samples], source.targets[:samples]
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        bin_frames(source, np.uint8, workers=workers)
        seconds.append(time.perf_counter() - start)
    return samples * TIMESTEPS / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, help="cache-building workers (default: prime's)")
    parser.add_argument("--threads", type=int, help="torch threads (default: all)")
    parser.add_argument("--dir", type=Path, help="data root to use (default: a temporary one)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.dir or Path(tempfile.mkdtemp(prefix="prime-bench-data-"))
    try:
        start = time.perf_counter()
        write_fake_nmnist(root / "NMNIST", per_class=args.samples // 10, seed=0)
        print(f"wrote {args.samples:,} fake .bin recordings in {time.perf_counter() - start:.1f} s")

        subset = min(1000, args.samples)
        single = binning_rate(root, subset, workers=0)
        workers = args.workers if args.workers is not None else 2
        parallel = binning_rate(root, subset, workers=workers)
        print(
            f"binning ({subset} recordings, median of 3): {single:,.0f} frames/s in one "
            f"process, {parallel:,.0f} frames/s with {workers} workers "
            f"(ratio {parallel / single:.2f})"
        )

        model = get_model("nmnist-conv")
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
        start = time.perf_counter()
        data = load_dataset("nmnist", data_root=root, test_fraction=0.1, workers=args.workers)
        build_s = time.perf_counter() - start
        train_epoch(model, optimizer, data.train, args.batch_size, epoch=0)
        first_s = time.perf_counter() - start
        print(
            f"first epoch: {first_s:.1f} s = cache build {build_s:.1f} s "
            f"({args.samples * TIMESTEPS / build_s:,.0f} frames/s) + training "
            f"{first_s - build_s:.1f} s ({len(data.train):,} samples)"
        )

        start = time.perf_counter()
        data = load_dataset("nmnist", data_root=root, test_fraction=0.1)
        load_s = time.perf_counter() - start
        later = train_epoch(model, optimizer, data.train, args.batch_size, epoch=1)
        data_s, step_s = sum(later["data"]), sum(later["step"])
        print(
            f"later epoch: cache load {load_s:.2f} s; data {data_s:.2f} s vs training steps "
            f"{step_s:.2f} s: data time = {100 * data_s / step_s:.1f} % of step time "
            f"(median per batch: data {1e3 * statistics.median(later['data']):.2f} ms, "
            f"step {1e3 * statistics.median(later['step']):.1f} ms)"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Memory and time of replaying a large chip trace: 1,000 reads of a 512x512 array (1 GB).

Writes the trace read by read (uncompressed, so it is the full 1 GiB on disk) into a temporary
folder, binds digits-conv to it with per-batch replay and runs a few hundred batches. Prints
the peak resident memory (ru_maxrss) before and after the replay against the file size: the
replay reads one read at a time, so the peak must stay far below the file size. Times are
medians per batch against a baseline in the same process: the same network without replay,
the two alternating batch by batch.

    python scripts/bench_trace_replay.py [--reads 1000] [--batches 300] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from prime.hardware.devices import get_device
from prime.hardware.replay import TraceReplay
from prime.hardware.traces.format import Trace, TraceInfo, write_trace
from prime.hardware.traces.synthesis import synth_reads
from prime.snn.models import get_model


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def interleaved_medians_ms(runs: list, x: torch.Tensor, batches: int) -> list[float]:
    """Median ms per call of each run, the runs alternating batch by batch (fair under load)."""
    times = [[] for _ in runs]
    for _ in range(batches):
        for run, spent in zip(runs, times, strict=True):
            start = time.perf_counter()
            run(x)
            spent.append(time.perf_counter() - start)
    return [1000 * statistics.median(spent) for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.h5"
        start = time.perf_counter()
        reads, _ = synth_reads(get_device("rram-lognormal"), (512, 512), args.reads, 0.02, 0)
        info = TraceInfo(provenance_kind="synthetic", provenance="bench_trace_replay.py")
        write_trace(path, reads, info, compress=False)
        size_mb = path.stat().st_size / 2**20
        print(f"wrote {args.reads} reads of 512x512 in {time.perf_counter() - start:.1f} s")
        print(f"  file size {size_mb:.0f} MiB, peak RSS so far {peak_rss_mb():.0f} MiB")

        plain, bound = get_model("digits-conv").eval(), get_model("digits-conv").eval()
        x = torch.rand(10, args.batch_size, 2, 34, 34).round()
        before = peak_rss_mb()
        with torch.no_grad(), Trace(path) as trace:
            replay = TraceReplay(bound, trace, "per-batch")
            runs = [plain.logits, bound.logits]
            baseline, replayed = interleaved_medians_ms(runs, x, args.batches)
            reads_seen, placement = replay.position, replay.placement.report()
        after = peak_rss_mb()
    print(f"per-batch replay of {reads_seen} reads ({placement})")
    print(
        f"median per batch (B={args.batch_size}, T=10): no replay {baseline:.2f} ms, "
        f"replay {replayed:.2f} ms, ratio {replayed / baseline:.2f}"
    )
    print(
        f"peak RSS: {before:.0f} MiB before replay, {after:.0f} MiB after "
        f"(+{after - before:.0f} MiB) for a {size_mb:.0f} MiB trace"
    )


if __name__ == "__main__":
    main()

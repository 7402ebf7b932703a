"""Figures of docs/performance.md: speeds and profiles (the bench scripts re-measure them)
and settings."""

from __future__ import annotations

from figures import Section

SECTIONS = [
    Section(
        "performance.md",
        "sparse-convolution crossover",
        "timing",
        (
            "the crossover falls to about 10 %; nmnist-conv's first convolution (fan-out 300, raw "
            "event counts) was slower sparse above 5 %",
            "the second convolution's input is 15–19 % nonzero",
            "the trained model's second convolution sees 20.1 % nonzero inputs",
        ),
        command="python scripts/bench_sparse_conv.py",
    ),
    Section(
        "performance.md",
        "profile of a training step",
        "timing",
        (
            "conv 2's input gradient (oneDNN) 35 %, its sparse weight gradient 11 % and forward "
            "9 %; conv 1 (dense, 12 outputs) 16 %, forward and weight gradient alike; the fused "
            "LIF + pooling scans 22 % (layer 1: 5.7 % forward, 8.4 % backward); the 2304→10 "
            "linear layer 3 % (MKL is slow for 10 outputs); layout copies 2 %. Before the sparse "
            "convolutions the convolutions took 78 %",
            "(layer-1 spikes 2.3 %, layer-2 0.36 %; pooled inputs to conv 2 8.4 % non-zero)",
        ),
        command="python scripts/bench_speed.py --threads 2 (with torch.profiler around one "
        "training step, as the page describes)",
    ),
    Section(
        "performance.md",
        "settings",
        "cited",
        (
            "T = 10, 5 % input density",
            "`MAX_DENSITY` = 15 % of the input nonzero",
            "| input nonzero | 3 % | 5 % | 8.4 % | 10 % | 12 % | 15 % | 20 % | 30 % |",
            "The input (5 % density)",
        ),
    ),
]

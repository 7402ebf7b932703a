"""Speed benchmark: prime's execution modes against plain snnTorch and the dense floor.

Measures, in one process and on the same random inputs (frames of 5 % density):

* training samples/s: forward + backward + Adam step on the mean output over T,
* inference samples/s: the mean output over all T steps, no gradients,
* peak memory of a training step, MiB: live tensors (from torch.profiler's memory timeline,
  above what was live before the step) and the rise of the process's resident set (median of
  3; includes allocator overhead and is noisier),

for four implementations of the same network (``--model``, default ``nmnist-conv``):

(a) prime multi-step, (b) prime single-step, (c) plain snnTorch: a per-timestep loop of
``snn.Leaky`` (reset to zero, rectangular surrogate, PRIME's LeakyReLU added in a subclass)
with every supermask recomputed at every step, as PRIME's reference code does, and
(d) the dense floor: the same convolutions and linear layers at batch T*B, channels-last,
without neurons or masks; with ``--periphery NAME``, (e) prime multi-step on that periphery
(ADCs, tiles, DACs, digital unit; docs/periphery.md), reported against (a); ``--r-wire OHM``
(and ``--ir-model``) adds IR drop to (e)'s tiles (docs/ir_drop.md). Steps are
timed round-robin over the implementations (so load from other processes hits all alike),
or with ``--sequential`` each implementation alone after
``--warmup`` steps (its steady state). Figures are medians, ratios are against (c) and (d).
Where SpikingJelly is installed (``pip install spikingjelly``), (f) the network as a
SpikingJelly user writes it: synapses and stateless layers at batch T*B, masks once per call,
SpikingJelly's multi-step ``LIFNode`` (its fused CUDA kernels on a GPU, its PyTorch loop on
the CPU; hard reset to 0 without PRIME's LeakyReLU on the membrane: checked against prime
multi-step with the standard LIF, ``neuron="lif"``). ``--device cuda`` times the same
comparison on a GPU (peak memory: CUDA's peak allocated; no resident set).

    python scripts/bench_speed.py --batch 128 --timesteps 10 --json bench.json
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from prime.cli.train import periphery_arg
from prime.core.device import resolve_device
from prime.core.errors import PrimeError
from prime.core.io import write_json
from prime.kernels.memory import keep_freed_memory
from prime.snn.layers import MemristorConv2d, MemristorLayer
from prime.snn.masks import supermask
from prime.snn.models import get_model
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, Integrator, RectangularSpike, integrator_step

try:  # optional: (f)
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate
except ImportError:
    sj_neuron = None

IMPLEMENTATIONS = {
    "prime-multi": "(a) prime multi-step",
    "prime-single": "(b) prime single-step",
    "snntorch": "(c) plain snnTorch loop",
    "dense-floor": "(d) dense floor, no neurons",
}


class PrimeLeaky(snn.Leaky):
    """``snn.Leaky`` plus PRIME's LeakyReLU on the membrane after integration."""

    def __init__(self, leak_slope: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.leak_slope = leak_slope

    def _base_state_function(self, input_: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(super()._base_state_function(input_), self.leak_slope)


def plain_apply(layer: MemristorLayer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A supermask layer's synapses in PyTorch's default layout, as plain code writes them."""
    if isinstance(layer, MemristorConv2d):
        return F.conv2d(x, weight, stride=layer.stride, padding=layer.padding)
    return F.linear(x, weight)


class SnnTorchNetwork(nn.Module):
    """The model written the plain snnTorch way: one timestep at a time, masks every call."""

    def __init__(self, model: SpikingNetwork) -> None:
        super().__init__()
        self.model = model
        self.neurons = nn.ModuleList()
        for layer in model.layers:
            if isinstance(layer, LIF):
                p = layer.params
                self.neurons.append(
                    PrimeLeaky(
                        p.leak_slope,
                        beta=1.0 - p.decay,
                        threshold=p.threshold,
                        reset_mechanism="zero",
                        spike_grad=lambda x, w=p.surrogate_width: RectangularSpike.apply(x, w),
                    )
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [T, B, ...] -> mean output [B, C]."""
        mems: dict[int, torch.Tensor] = {}
        outputs = []
        for frame in x:
            h = frame
            neurons = iter(self.neurons)
            for i, layer in enumerate(self.model.layers):
                if isinstance(layer, MemristorLayer):  # the mask at every step
                    h = plain_apply(layer, h, masked_weight(layer))
                elif isinstance(layer, LIF):
                    h, mems[i] = next(neurons)(h, mems[i] if i in mems else torch.zeros_like(h))
                elif isinstance(layer, Integrator):
                    mems[i] = integrator_step(h, mems.get(i, 0.0), layer.leak_slope)
                    h = mems[i]
                else:
                    h = layer(h)
            outputs.append(h)
        return torch.stack(outputs).mean(0)


def masked_weight(layer: MemristorLayer) -> torch.Tensor:
    """A supermask layer's effective weight, recomputed from its scores."""
    mask = supermask(layer.scores, layer.keep, layer.mask_rule)
    return layer.scale * (layer.g_us[0] - layer.g_us[1]) * mask


class SpikingJellyNetwork(nn.Module):
    """The model written the SpikingJelly way: layers over [T, B, ...] at once, masks once
    per call, SpikingJelly's multi-step LIF neurons."""

    def __init__(self, model: SpikingNetwork) -> None:
        super().__init__()
        self.model = model
        self.neurons = nn.ModuleList(
            sj_neuron.LIFNode(
                tau=1.0 / layer.params.decay,  # v <- (1 - decay) v + x, as (c)'s beta
                decay_input=False,
                v_threshold=layer.params.threshold,
                v_reset=0.0,
                surrogate_function=sj_surrogate.Rect(alpha=2 * layer.params.surrogate_width),
                step_mode="m",
            )
            for layer in model.layers
            if isinstance(layer, LIF)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [T, B, ...] -> mean output [B, C]."""
        sj_functional.reset_net(self)
        T, B = x.shape[:2]
        h, neurons = x, iter(self.neurons)
        for layer in self.model.layers:
            if isinstance(layer, LIF):
                h = next(neurons)(h)
            elif isinstance(layer, Integrator):
                mem, steps = 0.0, []
                for frame in h:
                    mem = integrator_step(frame, mem, layer.leak_slope)
                    steps.append(mem)
                h = torch.stack(steps)
            else:
                flat = h.flatten(0, 1)
                if isinstance(layer, MemristorLayer):
                    flat = plain_apply(layer, flat, masked_weight(layer))
                else:
                    flat = layer(flat)
                h = flat.unflatten(0, (T, B))
        return h.mean(0)


class DenseFloor(nn.Module):
    """The model's synaptic and stateless layers at batch T*B, channels-last, dense weights."""

    def __init__(self, model: SpikingNetwork) -> None:
        super().__init__()
        self.model = model
        self.dense = nn.ParameterList(
            nn.Parameter(layer.weight().detach().clone()) for layer in model.memristor_layers()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        h = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        weights = iter(self.dense)
        for layer in self.model.layers:
            if isinstance(layer, MemristorLayer):
                h = layer.linear_map(h, next(weights))
            elif not isinstance(layer, LIF | Integrator):
                h = layer(h)
        return h.unflatten(0, (T, B)).mean(0)


def build(
    name: str, model_name: str, timesteps: int, read_path: dict | None = None
) -> tuple[nn.Module, Callable]:
    """A fresh network of the implementation ``name`` and its forward: x -> mean output
    (``prime-periphery``: prime multi-step on ``read_path``, calibrated before timing)."""
    if name == "prime-periphery":
        model = get_model(model_name, timesteps=timesteps, read_path=read_path)
        return model, lambda x: model.logits(x, "multi")
    model = get_model(model_name, timesteps=timesteps)
    if name == "prime-multi":
        return model, lambda x: model.logits(x, "multi")
    if name == "prime-single":
        return model, lambda x: model.logits(x, "single")
    classes = {"snntorch": SnnTorchNetwork, "spikingjelly": SpikingJellyNetwork}
    net = classes.get(name, DenseFloor)(model)
    return net, net


def peak_tensor_mib(step: Callable[[], None], device: torch.device) -> float:
    """Peak of live tensor memory on ``device`` during one call of ``step``, above the
    start, MiB."""
    if device.type == "cuda":
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        return (torch.cuda.max_memory_allocated(device) - start) / 2**20
    with torch.profiler.profile(profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA; CPU has no other
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    totals = [sum(category) for category in sizes]
    return (max(totals) - totals[0]) / 2**20


def rss_mib(field: str) -> float:
    """VmRSS (current) or VmHWM (peak since the last reset) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(step: Callable[[], None]) -> float:
    """Rise of the resident set during one call of ``step`` (Linux), MiB.

    Makes glibc map big blocks (tensors) separately, so a freed tensor leaves the resident
    set at once and the peak is that of live memory.
    """
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-4, 65536)  # M_MMAP_MAX: glibc's default (undoes --keep-freed-memory)
    libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: big blocks mmap-ed, freed at once
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    before = rss_mib("VmRSS")
    step()
    return rss_mib("VmHWM") - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="nmnist-conv")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all)")
    parser.add_argument("--density", type=float, default=0.05, help="input spike density")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per figure")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="time each implementation alone after --warmup steps (steady state) instead of "
        "round-robin",
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps, --sequential")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="let glibc reuse freed memory for all implementations (prime.kernels.memory; "
        "what `prime train` does)",
    )
    parser.add_argument(
        "--periphery",
        help="also time (e): prime multi-step on this periphery (preset or JSON, e.g. "
        "prime-512-adc6), reported against (a)",
    )
    parser.add_argument(
        "--r-wire",
        type=float,
        metavar="OHM",
        help="(e) with IR drop: every word- and bit-line segment of the periphery's tiles "
        "OHM ohms (the ideal periphery's one tile per layer without --periphery)",
    )
    parser.add_argument("--ir-model", choices=("exact", "first-order"), help="(e)'s IR-drop model")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda[:N]")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except PrimeError as exc:
        raise SystemExit(f"bench_speed: {exc}") from None
    implementations = dict(IMPLEMENTATIONS)
    if sj_neuron is None:
        print("(f) SpikingJelly: not installed (pip install spikingjelly), not timed")
    else:
        implementations["spikingjelly"] = "(f) SpikingJelly multi-step"
    read_path = periphery_arg(args.periphery, args.r_wire, args.ir_model) or None
    if read_path:
        wires = "" if args.r_wire is None else f", {args.r_wire:g} ohm wires"
        implementations["prime-periphery"] = f"(e) prime multi, {args.periphery or 'ideal'}{wires}"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory and not keep_freed_memory():
        raise SystemExit("--keep-freed-memory needs glibc")
    torch.manual_seed(0)

    probe = get_model(args.model, timesteps=args.timesteps)
    gen = torch.Generator().manual_seed(0)
    shape = (args.timesteps, args.batch, *probe.input_shape)
    x = (torch.rand(shape, generator=gen) < args.density).float().to(device)
    y = torch.randint(0, probe.num_classes, (args.batch,), generator=gen).to(device)

    nets = {name: build(name, args.model, args.timesteps, read_path) for name in implementations}
    for net, _ in nets.values():
        net.to(device)
    if read_path:  # its converters' ranges, from the benchmark's own input
        nets["prime-periphery"][0].calibrate_read_paths([x])
    optimizers = {
        name: torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
        for name, (net, _) in nets.items()
    }

    def train_step(name: str) -> None:
        logits = nets[name][1](x)
        loss = F.cross_entropy(logits, y)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    def infer(name: str) -> None:
        with torch.no_grad():
            nets[name][1](x)

    with torch.no_grad():  # the same network: (a), (b), (c) agree before training
        expected = nets["prime-multi"][1](x)
        for name in ("prime-single", "snntorch"):
            diff = (nets[name][1](x) - expected).abs().max().item()
            if diff > 1e-4:
                raise SystemExit(f"{name} differs from prime-multi by {diff:.2e}")
        if "spikingjelly" in nets:  # its LIF is the standard one: prime's with neuron="lif"
            standard = get_model(args.model, timesteps=args.timesteps, neuron="lif").to(device)
            diff = (SpikingJellyNetwork(standard)(x) - standard.logits(x, "multi")).abs().max()
            if diff > 1e-4:
                raise SystemExit(f"spikingjelly differs from prime-multi (lif) by {diff:.2e}")

    figures: dict[str, dict[str, float]] = {name: {} for name in implementations}
    for name in implementations:
        train_step(name)  # warm-up: one-time allocations and optimizer state

    def timed(run: Callable[[str], None], name: str) -> float:
        start = time.perf_counter()
        run(name)
        if device.type == "cuda":  # the GPU's work, not its queueing
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for kind, run in (("train", train_step), ("infer", infer)):
        times: dict[str, list[float]] = {name: [] for name in implementations}
        if args.sequential:  # each alone: warm-up steps, then its timed steps
            for name in implementations:
                for _ in range(args.warmup):
                    run(name)
                times[name] = [timed(run, name) for _ in range(args.repeats)]
        else:
            for _ in range(args.repeats):
                for name in implementations:
                    times[name].append(timed(run, name))
        for name in implementations:
            figures[name][f"{kind}_samples_per_s"] = args.batch / statistics.median(times[name])
    for name in implementations:
        figures[name]["train_peak_mib"] = peak_tensor_mib(lambda n=name: train_step(n), device)
    for name in implementations:  # last: it changes how the process allocates memory
        peaks = [math.nan]  # a GPU's memory is no part of the resident set
        if device.type == "cpu":
            peaks = [peak_rss_mib(lambda name=name: train_step(name)) for _ in range(3)]
        figures[name]["train_peak_rss_mib"] = statistics.median(peaks)

    print(
        f"{args.model}, B = {args.batch}, T = {args.timesteps}, input density {args.density}, "
        f"{device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"median of {args.repeats}, keep freed memory: {args.keep_freed_memory}, "
        f"{'sequential' if args.sequential else 'round-robin'}"
    )
    print(
        f"{'implementation':30} {'train/s':>9} {'vs (c)':>7} {'vs (d)':>7} "
        f"{'infer/s':>9} {'vs (c)':>7} {'vs (d)':>7} {'peak MiB':>9} {'vs (c)':>7} "
        f"{'RSS MiB':>8} {'vs (c)':>7}"
    )
    base, floor = figures["snntorch"], figures["dense-floor"]
    for name, label in implementations.items():
        f = figures[name]
        for kind in ("train", "infer"):
            key = f"{kind}_samples_per_s"
            f[f"{kind}_vs_snntorch"] = f[key] / base[key]
            f[f"{kind}_vs_dense_floor"] = f[key] / floor[key]
        for key in ("train_peak", "train_peak_rss"):
            f[f"{key}_vs_snntorch"] = f[f"{key}_mib"] / base[f"{key}_mib"]
        print(
            f"{label:30} {f['train_samples_per_s']:9.1f} {f['train_vs_snntorch']:6.2f}x "
            f"{f['train_vs_dense_floor']:6.2f}x {f['infer_samples_per_s']:9.1f} "
            f"{f['infer_vs_snntorch']:6.2f}x {f['infer_vs_dense_floor']:6.2f}x "
            f"{f['train_peak_mib']:9.1f} {f['train_peak_vs_snntorch']:6.2f}x "
            f"{f['train_peak_rss_mib']:8.1f} {f['train_peak_rss_vs_snntorch']:6.2f}x"
        )
    if read_path:
        f, a = figures["prime-periphery"], figures["prime-multi"]
        for kind in ("train", "infer"):
            f[f"{kind}_vs_prime_multi"] = f[f"{kind}_samples_per_s"] / a[f"{kind}_samples_per_s"]
        print(
            f"(e) against (a): training {f['train_vs_prime_multi']:.2f}x, inference "
            f"{f['infer_vs_prime_multi']:.2f}x the ideal path's throughput"
        )
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        settings.update(threads=torch.get_num_threads(), torch=str(torch.__version__))
        write_json(args.json, {"settings": settings, "figures": figures})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fast paths give the results of the reference paths: fused LIF scan vs the ``lif_step`` loop
(values and gradients), channels-last convolutions vs the default layout, multi- vs
single-step gradients, and the benchmark script runs. No timing here (see
scripts/bench_speed.py)."""

from __future__ import annotations

import importlib.util
import json
import platform
import warnings
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from prime.core.errors import PrimeError
from prime.kernels import native
from prime.kernels.lif import LIFScan, lif_pool_scan, lif_pool_scan_from, lif_scan_from
from prime.kernels.memory import keep_freed_memory, spikes_saved_as_bool
from prime.snn.models import get_model
from prime.snn.neurons import LIF, LIFParams, lif_scan, lif_step

ROOT = Path(__file__).resolve().parents[1]
PARAMS = [
    LIFParams(threshold=0.2),
    LIFParams(threshold=0.5),
    LIFParams(threshold=1.0, decay=0.5, leak_slope=0.3, surrogate_width=0.25),
]


def loop_scan(currents: torch.Tensor, params: LIFParams) -> torch.Tensor:
    """The reference: autograd through a loop of the single-step kernel."""
    mem = torch.zeros_like(currents[0])
    spikes = []
    for current in currents:
        spike, mem = lif_step(current, mem, params)
        spikes.append(spike)
    return torch.stack(spikes)


def values_and_grads(scan, currents, grad_out, params):
    currents = currents.detach().clone().requires_grad_()
    spikes = scan(currents, params)
    spikes.backward(grad_out)
    return spikes, currents.grad


@pytest.mark.parametrize("params", PARAMS, ids=repr)
@pytest.mark.parametrize("shape", [(10, 16, 3, 6, 6), (1, 4, 7), (25, 8, 50)])
def test_fused_scan_matches_step_loop(params, shape):
    g = torch.Generator().manual_seed(len(shape))
    currents = torch.randn(shape, generator=g) * params.threshold * 1.5
    grad_out = torch.randn(shape, generator=g)
    ref_spikes, ref_grad = values_and_grads(loop_scan, currents, grad_out, params)
    spikes, grad = values_and_grads(lif_scan, currents, grad_out, params)
    assert 0.05 < ref_spikes.mean() < 0.95  # spikes, resets and silent steps all occur
    assert (ref_grad != 0).any()
    torch.testing.assert_close(spikes, ref_spikes, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-6)
    with torch.no_grad():  # the forward-only kernel (no state bits)
        torch.testing.assert_close(lif_scan(currents, params), ref_spikes, rtol=0, atol=0)


def test_fused_scan_keeps_channels_last_and_matches():
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(6 * 4, 5, 7, 7, generator=g).contiguous(memory_format=torch.channels_last)
    currents = frames.unflatten(0, (6, 4))
    grad_out = torch.randn(currents.shape, generator=g)
    ref_spikes, ref_grad = values_and_grads(loop_scan, currents, grad_out, PARAMS[0])
    spikes, grad = values_and_grads(lif_scan, currents, grad_out, PARAMS[0])
    assert spikes.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(spikes, ref_spikes, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-6)


def saved_by(fn):
    """(result of ``fn()``, the tensors autograd saved while running it)."""
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        return fn(), saved


def test_fused_scan_saves_one_byte_per_element_and_step():
    currents = torch.randn(4, 3, 5, requires_grad=True)
    _, saved = saved_by(lambda: LIFScan.apply(currents, PARAMS[0]))
    assert [(t.dtype, t.shape) for t in saved] == [(torch.uint8, currents.shape)]


def test_marked_spikes_saved_as_bool_give_the_same_gradients():
    """Pooling and a linear layer save marked spikes (as bool) and unmarked halves (as is)."""
    g = torch.Generator().manual_seed(0)
    spikes = (torch.randn(2, 3, 2, 4, 4, generator=g) > 0).float()
    halves = torch.full((6, 8), 0.5)
    weight = torch.randn(5, 8, generator=g, requires_grad=True)
    scale = torch.ones(1, requires_grad=True)
    grads = []
    for compact in (False, True):
        weight.grad = scale.grad = None
        with spikes_saved_as_bool() if compact else nullcontext(lambda t: None) as mark:
            marked = spikes * scale
            mark(marked)
            pooled = F.avg_pool2d(marked.flatten(0, 1), 2).flatten(1)
            outputs = [F.linear(halves, weight), F.linear(marked.view(-1, 8), weight), pooled]
            sum(out.square().sum() for out in outputs).backward()
        grads.append((weight.grad.clone(), scale.grad.clone()))
    assert grads[0][0].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


def test_conv_channels_last_matches_default_layout():
    model = get_model("nmnist-conv")
    conv = model.memristor_layers()[1]
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 12, 16, 16, generator=g) < 0.2).float()
    weight = conv.weight().detach().requires_grad_()
    ref_weight = weight.detach().clone().requires_grad_()
    out = conv.linear_map(x, weight)
    ref = F.conv2d(x, ref_weight)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn(ref.shape, generator=g)
    out.backward(grad_out)
    ref.backward(grad_out)
    torch.testing.assert_close(weight.grad, ref_weight.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["nmnist-conv", "nmnist-mlp"])
def test_multi_and_single_step_give_the_same_gradients(name):
    model = get_model(name, timesteps=4)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 6, *model.input_shape, generator=g) < 0.3).float()
    y = torch.randint(0, model.num_classes, (6,), generator=g)
    grads, logits = {}, {}
    for mode in ("multi", "single"):
        model.zero_grad(set_to_none=True)
        logits[mode] = model.logits(x, mode)
        F.cross_entropy(logits[mode], y).backward()
        grads[mode] = [layer.scores.grad.clone() for layer in model.memristor_layers()]
    assert logits["multi"].abs().max() > 0
    torch.testing.assert_close(logits["multi"], logits["single"], rtol=1e-5, atol=1e-5)
    for multi, single in zip(grads["multi"], grads["single"], strict=True):
        assert multi.abs().max() > 0
        torch.testing.assert_close(multi, single, rtol=1e-4, atol=1e-6)


def test_benchmark_runs_and_writes_every_figure(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "scripts/bench_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    argv = ["--batch", "2", "--timesteps", "2", "--repeats", "1", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert bench.main([*argv, "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    figures = json.loads(out.read_text())["figures"]
    optional = {"spikingjelly"} if bench.sj_neuron is not None else set()
    assert set(figures) == set(bench.IMPLEMENTATIONS) | optional
    for f in figures.values():
        assert f["train_samples_per_s"] > 0 and f["infer_samples_per_s"] > 0
        assert f["train_peak_mib"] > 0 and f["train_peak_rss_mib"] >= 0
    assert figures["snntorch"]["train_vs_snntorch"] == 1.0
    assert "(c) plain snnTorch" in capsys.readouterr().out
    try:  # each implementation alone, after its warm-up steps
        assert bench.main([*argv, "--sequential", "--warmup", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "sequential" in capsys.readouterr().out


def test_the_spikingjelly_network_is_prime_with_the_standard_lif():
    pytest.importorskip("spikingjelly", reason="SpikingJelly is not installed")
    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "scripts/bench_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = get_model("nmnist-conv", timesteps=3, neuron="lif")
    x = torch.rand(3, 2, *model.input_shape, generator=torch.Generator().manual_seed(0)) < 0.1
    x = x.float()
    expected = model.logits(x, "multi")
    assert expected.abs().max() > 0
    torch.testing.assert_close(bench.SpikingJellyNetwork(model)(x), expected)


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_keep_freed_memory_keeps_a_freed_block_resident():
    assert keep_freed_memory()
    block = torch.ones(40 * 2**20, dtype=torch.uint8)  # above glibc's largest mmap threshold
    before = rss_mib()
    del block  # glibc's default would unmap it: the resident set would drop by 40 MiB
    assert before - rss_mib() < 1


@pytest.mark.parametrize(
    "pool",
    [
        torch.nn.AvgPool2d(2),
        torch.nn.AvgPool2d(3, stride=1, padding=1),
        torch.nn.AvgPool2d(3, stride=2, ceil_mode=True, count_include_pad=False),
    ],
)
def test_avg_pool_saving_shape_has_the_same_gradient_and_saves_no_input(pool):
    from prime.kernels.memory import avg_pool2d_saving_shape

    x = torch.rand(4, 3, 11, 11).to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn_like(pool(x))
    pool(x).backward(grad)
    expected, x.grad = x.grad, None
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = avg_pool2d_saving_shape(x, pool)
    out.backward(grad)
    assert torch.equal(out, pool(x)) and torch.equal(x.grad, expected)
    assert saved == []


def torch_ops_only(monkeypatch) -> None:
    """Make the LIF scan run PyTorch ops instead of the native kernels."""
    monkeypatch.setattr("prime.kernels.lif.kernels", lambda: None)


@pytest.mark.parametrize("params", PARAMS, ids=repr)
@pytest.mark.parametrize("channels_last", [False, True])
def test_native_scan_equals_torch_ops_bit_for_bit(params, channels_last, monkeypatch):
    if native.kernels() is None:
        pytest.skip("the native LIF kernels could not be built here (no C compiler?)")
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(9 * 6, 5, 20, 30, generator=g) * params.threshold * 1.5
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    currents = frames.unflatten(0, (9, 6))
    assert native.step_major(currents)
    grad_out = torch.randn(currents.shape, generator=g).transpose(-1, -2).contiguous()
    grad_out = grad_out.transpose(-1, -2)  # other strides than the currents: copied first
    native_spikes, native_grad = values_and_grads(lif_scan, currents, grad_out, params)
    with torch.no_grad():
        native_inference = lif_scan(currents, params)
    torch_ops_only(monkeypatch)
    spikes, grad = values_and_grads(lif_scan, currents, grad_out, params)
    assert 0.05 < spikes.mean() < 0.95
    assert torch.equal(native_spikes, spikes) and torch.equal(native_inference, spikes)
    assert torch.equal(native_grad, grad)
    assert native_spikes.stride() == currents.stride()


@pytest.fixture
def rebuilt_native(monkeypatch):
    """``prime.kernels.native.kernels`` looked up afresh in the test, and again after it."""
    native.kernels.cache_clear()
    yield
    monkeypatch.undo()
    native.kernels.cache_clear()


def test_native_kernels_fall_back_to_torch_ops_with_a_warning(
    tmp_path, monkeypatch, rebuilt_native
):
    monkeypatch.setenv("PRIME_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with pytest.warns(RuntimeWarning, match="could not build the native kernels"):
        assert native.kernels() is None
    assert not list((tmp_path / "native").glob("*"))  # no half-built library left
    currents = torch.randn(3, 2, 4, requires_grad=True)
    values_and_grads(lif_scan, currents, torch.ones(3, 2, 4), PARAMS[0])  # PyTorch ops run
    monkeypatch.setenv("PRIME_NATIVE", "0")
    native.kernels.cache_clear()
    assert native.kernels() is None


@pytest.mark.slow
def test_a_damaged_cached_library_is_removed_and_rebuilt(tmp_path, monkeypatch, rebuilt_native):
    monkeypatch.setenv("PRIME_CACHE", str(tmp_path / "probe"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if native.kernels() is None:
            pytest.skip("the native LIF kernels cannot be built here (no working C compiler)")
    native.kernels.cache_clear()
    monkeypatch.setenv("PRIME_CACHE", str(tmp_path / "cache"))
    library = native.library_path(native.compiler())
    library.parent.mkdir(parents=True)
    library.write_bytes(b"not a shared library")  # e.g. a disk error
    with pytest.warns(RuntimeWarning, match="removed, rebuilt on the next run"):
        assert native.kernels() is None
    native.kernels.cache_clear()
    assert native.kernels() is not None and library.exists()


def test_step_major_layouts():
    x = torch.zeros(4, 3, 5, 6, 7)
    assert native.step_major(x)
    frames = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    assert native.step_major(frames.unflatten(0, (4, 3)))
    assert not native.step_major(x[:, :2])  # gaps between steps
    assert not native.step_major(x.transpose(0, 1))  # T not outermost
    assert not native.step_major(x.double())


def needs_native() -> None:
    if native.kernels() is None:
        pytest.skip("the native LIF kernels could not be built here (no C compiler?)")


@pytest.mark.parametrize("params", PARAMS, ids=repr)
@pytest.mark.parametrize("shape", [(10, 8, 12, 32, 32, 2), (5, 3, 4, 9, 9, 3), (4, 2, 5, 8, 12, 4)])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl-out", "contiguous-out"])
def test_fused_lif_pooling_equals_scan_then_pool_bit_for_bit(params, shape, channels_last):
    needs_native()
    T, B, C, H, W, k = shape
    g = torch.Generator().manual_seed(k)
    frames = torch.randn(T * B, C, H, W, generator=g) * params.threshold * 1.5
    currents = frames.contiguous(memory_format=torch.channels_last).unflatten(0, (T, B))
    grad_out = torch.randn(T, B, C, H // k, W // k, generator=g)

    def scan_then_pool(x, p):
        return F.avg_pool2d(lif_scan(x, p).flatten(0, 1), k).unflatten(0, (T, B))

    ref, ref_grad = values_and_grads(scan_then_pool, currents, grad_out, params)

    def fused_scan(x, p):
        return lif_pool_scan(x, p, k, channels_last=channels_last)

    fused, grad = values_and_grads(fused_scan, currents, grad_out, params)
    with torch.no_grad():
        inference = fused_scan(currents, params)
    assert 0.05 < ref.mean() < 0.95
    assert torch.equal(fused, ref) and torch.equal(inference, ref) and torch.equal(grad, ref_grad)
    if channels_last:
        assert fused.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    else:
        assert fused.is_contiguous()
    assert grad.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_fused_lif_pooling_declines_what_it_cannot_run():
    needs_native()
    p = PARAMS[0]
    channels_last = torch.zeros(12, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert lif_pool_scan(channels_last.unflatten(0, (4, 3)), p, 2) is not None
    assert lif_pool_scan(torch.zeros(4, 3, 3, 8, 8), p, 2) is None  # not channels-last
    assert lif_pool_scan(channels_last.unflatten(0, (4, 3)), p, 3) is None  # 8 % 3 != 0


@pytest.mark.parametrize("name", ["nmnist-conv", "dvsgesture-conv32"])
def test_network_with_and_without_fused_pooling_agree(name):
    needs_native()
    model = get_model(name, chip_seed=3, timesteps=6)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 4, *model.input_shape, generator=g) < 0.1).float()
    results = []
    for fused in (True, False):
        lifs = [layer for layer in model.layers if isinstance(layer, LIF)]
        # a hooked layer's output must be made: the network then runs LIF and pooling apart
        hooks = [] if fused else [layer.register_forward_hook(lambda *a: None) for layer in lifs]
        model.zero_grad()
        out = model(x, "multi")
        out.square().sum().backward()
        grads = [layer.scores.grad.clone() for layer in model.memristor_layers()]
        for hook in hooks:
            hook.remove()
        results.append((out.detach(), grads))
    (out_fused, grads_fused), (out_plain, grads_plain) = results
    assert out_fused.abs().sum() > 0
    assert torch.equal(out_fused, out_plain)
    for a, b in zip(grads_fused, grads_plain, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def loop_from(currents: torch.Tensor, mem: torch.Tensor, params: LIFParams):
    """The reference of a scan from a state: (spikes, last membrane) of a ``lif_step`` loop."""
    spikes = []
    for current in currents:
        spike, mem = lif_step(current, mem, params)
        spikes.append(spike)
    return torch.stack(spikes), mem


def reset(mem: torch.Tensor, params: LIFParams) -> torch.Tensor:
    return torch.where(mem > params.threshold, 0.0, mem)


@pytest.mark.parametrize("params", PARAMS, ids=repr)
@pytest.mark.parametrize("native_kernels", [True, False], ids=["native", "torch-ops"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_scans_in_chunks_from_a_state_equal_the_step_loop(
    params, native_kernels, channels_last, monkeypatch
):
    if native_kernels:
        needs_native()
    else:
        torch_ops_only(monkeypatch)
    g = torch.Generator().manual_seed(4)
    frames = torch.randn(9 * 6, 5, 8, 10, generator=g) * params.threshold * 1.5
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    currents = frames.unflatten(0, (9, 6))
    start = torch.randn(6, 5, 8, 10, generator=g) * params.threshold * 1.5  # some above it
    ref_spikes, ref_mem = loop_from(currents, start, params)
    mem, chunks = start, []
    for chunk in currents.split([1, 3, 5]):
        spikes, mem = lif_scan_from(chunk, mem, params)
        chunks.append(spikes)
    assert 0.05 < ref_spikes.mean() < 0.95 and (start > params.threshold).any()
    assert torch.equal(torch.cat(chunks), ref_spikes)
    assert torch.equal(mem, reset(ref_mem, params))  # the state lif_step goes on from
    assert mem.stride() == currents[0].stride()


@pytest.mark.parametrize("params", PARAMS, ids=repr)
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl-out", "contiguous-out"])
def test_fused_lif_pooling_in_chunks_equals_one_scan(params, channels_last):
    needs_native()
    T, B, C, H, W, k = 7, 3, 4, 8, 12, 2
    g = torch.Generator().manual_seed(6)
    frames = torch.randn(T * B, C, H, W, generator=g) * params.threshold * 1.5
    currents = frames.contiguous(memory_format=torch.channels_last).unflatten(0, (T, B))
    with torch.no_grad():
        whole = lif_pool_scan(currents, params, k, channels_last=channels_last)
        _, ref_mem = loop_from(currents, torch.zeros(B, C, H, W), params)
        mem, chunks = torch.zeros(B, C, H, W), []
        for chunk in currents.split([2, 1, 4]):
            fused = lif_pool_scan_from(chunk, mem, params, k, channels_last)
            assert fused is not None
            pooled, mem = fused
            chunks.append(pooled)
    assert whole is not None and 0.05 < whole.mean() < 0.95
    assert torch.equal(torch.cat(chunks), whole)
    assert torch.equal(mem, reset(ref_mem, params))
    assert lif_pool_scan_from(currents, mem, params, 5, channels_last) is None  # 8 % 5 != 0


def test_scan_from_a_state_of_the_wrong_shape_is_refused():
    with pytest.raises(PrimeError, match="membranes of shape \\(2, 3\\) do not fit currents"):
        lif_scan_from(torch.zeros(4, 2, 5), torch.zeros(2, 3), PARAMS[0])


def test_lif_layer_scans_from_a_state_with_gradients():
    """``layer(currents, state)`` scans on from the state, with the step loop's gradients."""
    layer = LIF(PARAMS[1])
    g = torch.Generator().manual_seed(8)
    currents = torch.randn(5, 3, 7, generator=g)
    start = torch.randn(3, 7, generator=g)
    grad_out = torch.randn(5, 3, 7, generator=g)
    grads = []
    for scan in (lambda c: layer(c, start)[0], lambda c: loop_from(c, start, layer.params)[0]):
        c = currents.clone().requires_grad_()
        scan(c).backward(grad_out)
        grads.append(c.grad)
    assert grads[0].abs().sum() > 0 and torch.equal(grads[0], grads[1])
    with torch.no_grad():
        spikes, mem = layer(currents, start)
    assert torch.equal(spikes, loop_from(currents, start, layer.params)[0])
    assert mem.shape == start.shape

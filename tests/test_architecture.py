"""The architecture's promises: one call seam (hooks, ``model.apply``), one read path, no
import cycles, the layered packages of docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from helpers import crossbar_layer

from prime.analysis.energy.counting import count_operations
from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.hardware.readpath import ReadPathConfig
from prime.snn.layers import MemristorLayer
from prime.snn.models import get_model, list_models
from prime.snn.neurons import NeuronLayer

PACKAGE = Path(__file__).resolve().parents[1] / "prime"

#: what each subpackage may import (besides itself), as docs/architecture.md draws it
ALLOWED = {
    "core": set(),
    "kernels": {"core"},
    "hardware": {"core", "kernels"},
    "snn": {"core", "kernels", "hardware"},
    "data": {"core"},
    "inference": {"core", "kernels", "hardware", "snn", "data"},
    "analysis": {"core", "kernels", "hardware", "snn", "data", "inference"},
    "interop": {"core", "kernels", "hardware", "snn", "data", "inference", "analysis", "version"},
    "runs": {
        "core",
        "kernels",
        "hardware",
        "snn",
        "data",
        "inference",
        "analysis",
        "interop",
        "version",
    },
    "cli": {
        "core",
        "kernels",
        "hardware",
        "snn",
        "data",
        "inference",
        "analysis",
        "interop",
        "runs",
        "version",
    },
}


def _imports() -> dict[str, set[str]]:
    """Module -> the prime modules it imports (top-level and inside functions)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t.startswith("prime") and t != name}
    return {m: {t for t in ts if t in graph} for m, ts in graph.items()}


def test_no_import_cycles():
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_subpackages_import_only_the_layers_below():
    for module, targets in _imports().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in ALLOWED:
            continue
        for target in targets:
            other = target.split(".")[1] if "." in target else "prime"
            if other != parts[1]:
                assert other in ALLOWED[parts[1]], f"{module} imports {target}"


@pytest.mark.parametrize("name", list_models())
def test_model_apply_reaches_every_layer(name):
    model = get_model(name)
    seen = []
    model.apply(lambda module: seen.append(type(module)))
    assert any(issubclass(t, MemristorLayer) for t in seen)
    assert len(seen) == len(list(model.modules()))


@pytest.mark.parametrize("mode", ["multi", "single"])
def test_forward_hooks_fire_on_every_layer_in_both_modes(mode):
    model = get_model("nmnist-conv", timesteps=3).eval()
    calls: dict[int, int] = {}
    handles = [
        layer.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
        for i, layer in enumerate(model.layers)
    ]
    x = (torch.rand(3, 2, 2, 34, 34, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    with torch.no_grad():
        hooked = model(x, mode)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        plain = model(x, mode)
    expected = 1 if mode == "multi" else 3
    assert calls == {i: expected for i in range(len(model.layers))}
    assert torch.equal(hooked, plain)  # observing changes no result


def test_counting_leaves_no_trace_on_the_model():
    model = get_model("nmnist-conv", timesteps=2).eval()
    before = (dict(vars(model)), [dict(vars(layer)) for layer in model.layers])
    with torch.no_grad(), count_operations(model):
        model(torch.zeros(2, 1, 2, 34, 34))
    after = (dict(vars(model)), [dict(vars(layer)) for layer in model.layers])
    assert before[0].keys() == after[0].keys()
    assert [b.keys() for b in before[1]] == [a.keys() for a in after[1]]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize(
    "config",
    [ReadPathConfig(separate_columns=True), ReadPathConfig(tile_rows=128)],
    ids=["separate-columns", "tiles-of-128"],
)
def test_non_ideal_structure_with_ideal_conversion_equals_the_fused_path(kind, config):
    fused, split = crossbar_layer(kind, ReadPathConfig()), crossbar_layer(kind, config)
    split.load_state_dict(fused.state_dict())
    shape = (4, 700) if kind == "linear" else (4, 12, 9, 9)
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    expected = fused(x)
    out = split(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(split.scores.grad, fused.scores.grad, rtol=1e-4, atol=1e-6)
    tiles = 1 if config.tile_rows is None else -(-split.fan_in // config.tile_rows)
    assert split.read_path.tiles(split.fan_in) == tiles > 0


def test_ideal_read_path_is_the_fused_weight_bit_for_bit():
    layer = crossbar_layer("conv", ReadPathConfig())
    with torch.no_grad():
        mask = layer.mask()
        expected = layer.scale * ((layer.g_us[0] - layer.g_us[1]) * mask)
        read = layer.read()
    assert read.columns_us is None
    assert torch.equal(read.weight, expected)


@pytest.mark.parametrize(
    "config, words",
    [
        ({"tile_rows": 0}, "whole number >= 1"),
        ({"tile_rows": 2.5}, "whole number >= 1"),
        ({"separate_columns": "yes"}, "true or false"),
        ({"adc_bitz": 4}, "unknown fields adc_bitz"),
    ],
)
def test_bad_read_path_configs_are_refused(config, words):
    with pytest.raises(PrimeError, match=words):
        ReadPathConfig.from_dict(config)


def test_neuron_layers_are_called_with_or_without_state():
    for layer in (m for m in get_model("nmnist-mlp").layers if isinstance(m, NeuronLayer)):
        currents = torch.rand(3, 2, 4)
        scanned = layer(currents)
        state = layer.initial_state(currents[0])
        for t in range(3):
            out, state = layer(currents[t], state)
            assert torch.equal(out, scanned[t])


def test_old_device_flag_names_the_new_one(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--device", "rram-lognormal"])
    assert "--device-model rram-lognormal" in capsys.readouterr().err


def test_cuda_device_on_a_cpu_build_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        main(["eval", "run", "--device", "cuda"])
    err = capsys.readouterr().err
    assert "CUDA" in err and "use --device cpu" in err and "Traceback" not in err

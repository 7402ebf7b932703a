"""Figures of docs/traces.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures import Section, run_prime, train, train_accuracy
from figures.devices import ARRAY


def placements(work: Path) -> dict[str, Any]:
    """Tile use of digits-conv on one 512×512 macro and of conv-50x50 on the 50×50 array."""
    from prime.hardware.replay import place
    from prime.snn.models import get_model

    values: dict[str, Any] = {}
    for name, model, side in (("digits", "digits-conv", 512), ("array", "conv-50x50", 50)):
        net = get_model(model)
        shapes = [tuple(layer.g_us.shape[1:]) for layer in net.memristor_layers()]
        placement = place(shapes, (side, side), (side, side))
        values[f"{name}_cells"] = placement.cells_used
        values[f"{name}_util"] = 100 * placement.utilisation
    return values


def small_array(work: Path) -> dict[str, Any]:
    """conv-50x50 on prime-gaussian and on the measured array at three learning rates, its
    evaluation on the trace and on another chip."""
    from prime.runs.evaluation import evaluate_run

    trace = work / "esgnn.h5"
    if not trace.is_file():
        run_prime(["trace", "import", str(ARRAY), "--out", str(trace), "--force"])
    small = ["--model", "conv-50x50", "--seed", "0"]
    on_array = [*small, "--trace", str(trace), "--tile", "50x50"]
    values: dict[str, Any] = {}
    for lr in ("0.001", "0.01", "0.05"):
        values[f"g{lr}"] = train_accuracy(work, f"c50-g-{lr}", [*small, "--lr", lr])
    for lr in ("0.001", "0.01"):
        values[f"a{lr}"] = train_accuracy(work, f"c50-a-{lr}", [*on_array, "--lr", lr])
    run = train(work, "c50-a-0.001", [*on_array, "--lr", "0.001"])
    values["trace"] = 100 * evaluate_run(run, progress=False)["accuracy"]
    values["chip3"] = 100 * evaluate_run(run, chip_seed=3, progress=False)["accuracy"]
    return {k.replace(".", "_"): v for k, v in values.items()}


SECTIONS = [
    Section(
        "traces.md",
        "tile placement",
        "quick",
        (
            "e.g. digits-conv: `{digits_cells} cells on 1 of 1 512x512 tiles, utilisation "
            "{digits_util:.1f} %`",
            "# replaying esgnn.h5 (static): {array_cells} cells on 1 of 1 50x50 tiles, "
            "utilisation {array_util:.1f} %",
        ),
        placements,
        "prime train --trace ... (its first line)",
    ),
    Section(
        "traces.md",
        "conv-50x50 on the measured array",
        "reference",
        (
            "on `prime-gaussian` {g0_001:.2f} % at the default `--lr 0.001`, {g0_01:.2f} % at "
            "`--lr 0.01`, {g0_05:.2f} % at 0.05; on the measured array {a0_001:.2f} % at "
            "`--lr 0.001` and {a0_01:.2f} % at `--lr 0.01` (`prime eval` of the `--lr 0.001` "
            "run on its trace: {trace:.2f} %, the same)",
            "`--lr 0.001` array run: {chip3:.2f} % (the masks belong to the array",
        ),
        small_array,
        "prime train --model conv-50x50 [--trace esgnn.h5 --tile 50x50] --lr LR; prime eval",
    ),
    Section(
        "traces.md",
        "replay speed",
        "timing",
        (
            "per-batch replay of 300 reads (85680 cells on 1 of 1 512x512 tiles, "
            "utilisation 32.7 %)",
        ),
        command="python scripts/bench_trace_replay.py",
    ),
    Section(
        "traces.md",
        "formula",
        "cited",
        ("a crossbar of `fan_in` rows and `2 ×",),
    ),
]

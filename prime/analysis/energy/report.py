"""``prime bench energy``: energy and latency per inference of a trained run, from counts.

One counted evaluation of the run's test split at full T and one with early exit give
:class:`~prime.analysis.energy.counting.OperationCounts`; energy models turn them into the
report's rows:

    digital dense baseline -> analog macro (all cells) -> + pruning -> + early exit

each with × energy efficiency, % computational load saved (synaptic operations, see
:meth:`Scenario.synaptic_ops`) and × speed-up against the baseline, plus a sensitivity table of
the ratios with the ADC or cell energy 10× lower and higher.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from prime.analysis.energy.counting import OperationCounts, connection_sparsity, count_operations
from prime.analysis.energy.models import AnalogMacro, DigitalAccelerator, Scenario
from prime.core.device import module_device
from prime.core.errors import PrimeError
from prime.core.io import atomic_write, write_json
from prime.core.progress import progress_bar
from prime.core.tables import new_figure, save_figure
from prime.data import dataset_len, iterate_batches
from prime.snn.network import SpikingNetwork

#: (constant, factor) pairs of the sensitivity table
SENSITIVITY = (("adc_pj", 0.1), ("adc_pj", 10.0), ("cell_read_pj", 0.1), ("cell_read_pj", 10.0))


@torch.no_grad()
def count_run(
    model: SpikingNetwork,
    dataset: Dataset,
    batch_size: int = 128,
    early_exit: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[OperationCounts, float]:
    """Counts and accuracy of ``dataset``: full T (multi-step), or with early exit when
    ``early_exit`` holds :func:`prime.inference.early_exit.run_early_exit` keywords."""
    model.eval()
    correct = 0
    loader, count = iterate_batches(dataset, batch_size, device=module_device(model))
    desc = "count (early exit)" if early_exit is not None else "count (full T)"
    with count_operations(model) as counts:
        for x, y in progress_bar(loader, total=count, desc=desc, leave=False, show=progress):
            if early_exit is None:
                prediction = model.logits(x)
            else:
                from prime.inference.early_exit import run_early_exit

                prediction = run_early_exit(model, x, **early_exit).outputs
            correct += (prediction.argmax(1) == y).sum().item()
    return counts, correct / max(dataset_len(dataset), 1)


def limit_dataset(dataset: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` samples (all if None)."""
    if limit is None or limit >= dataset_len(dataset):
        return dataset
    if limit < 1:
        raise PrimeError(f"--limit must be a whole number >= 1, got {limit}")
    return Subset(dataset, range(limit))


def scenarios(
    full: OperationCounts,
    full_accuracy: float,
    analog: AnalogMacro,
    baseline: DigitalAccelerator,
    exited: OperationCounts | None = None,
    exit_accuracy: float | None = None,
) -> list[Scenario]:
    """The report's rows, baseline first; the event-driven row is the baseline's hardware
    doing only the effective synaptic operations (SpikingJelly's estimate)."""
    event_driven = dataclasses.replace(baseline, event_driven=True)
    rows = [
        Scenario("digital dense", baseline, full, accuracy=full_accuracy),
        Scenario("digital event-driven", event_driven, full, accuracy=full_accuracy),
        Scenario("analog macro (all cells)", analog, full, pruned=False, accuracy=full_accuracy),
        Scenario("+ pruning", analog, full, accuracy=full_accuracy),
    ]
    if exited is not None:
        rows.append(Scenario("+ early exit", analog, exited, accuracy=exit_accuracy))
    return rows


def row_dict(row: Scenario, baseline: Scenario) -> dict[str, Any]:
    return {
        "name": row.name,
        "energy_pj": row.energy_pj,
        "energy_breakdown_pj": row.energy,
        "latency_ns": row.latency_ns,
        "synaptic_operations": row.synaptic_ops,
        "steps_per_sample": row.counts.steps_per_sample(),
        "accuracy": row.accuracy,
        **row.versus(baseline),
    }


def sensitivity(rows: list[Scenario]) -> list[dict[str, Any]]:
    """× energy efficiency of the analog rows with one constant scaled by 0.1 or 10."""
    baseline = rows[0]
    analog_rows = [row for row in rows if isinstance(row.model, AnalogMacro)]
    table = []
    for constant, factor in ((None, 1.0), *SENSITIVITY):
        ratios = {}
        for row in analog_rows:
            model = row.model
            if constant is not None:
                value = getattr(model, constant) * factor
                model = dataclasses.replace(model, **{constant: value})
            varied = Scenario(row.name, model, row.counts, row.pruned)
            ratios[row.name] = varied.versus(baseline)["energy_efficiency_x"]
        label = "as configured" if constant is None else f"{constant} x {factor:g}"
        table.append({"variation": label, "energy_efficiency_x": ratios})
    return table


def format_report(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    rows = report["rows"]
    lines = [
        f"# Energy and latency per inference: {report['run']}",
        "",
        f"{report['model']} on {report['dataset']} ({report['chip']}), "
        f"{report['samples']} test samples; "
        f"baseline {report['baseline']['name']}, analog {report['analog']['name']}; "
        f"connection sparsity {report['connection_sparsity']:.3f}, activation sparsity "
        f"{report['activation_sparsity']:.3f}.",
        "",
        "| configuration | energy (nJ) | latency (µs) | steps | accuracy | × energy efficiency "
        "| load saved | × speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        accuracy = f"{100 * r['accuracy']:.2f} %" if r["accuracy"] is not None else "-"
        lines.append(
            f"| {r['name']} | {r['energy_pj'] / 1e3:.4g} | {r['latency_ns'] / 1e3:.4g} "
            f"| {r['steps_per_sample']:.2f} | {accuracy} | {r['energy_efficiency_x']:.3g} "
            f"| {r['load_saved_pct']:.1f} % | {r['speedup_x']:.3g} |"
        )
    analog = rows[-1]["energy_breakdown_pj"]
    share = ", ".join(
        f"{k} {100 * v / analog['total']:.1f} %" for k, v in analog.items() if k != "total"
    )
    lines += ["", f"Analog energy by component ({rows[-1]['name']}): {share}.", ""]
    programming = report.get("programming")
    if programming:
        lines += [
            f"Programming the chip during training: {programming['switches']:,} mask switches "
            f"in {programming['steps']:,} steps ({programming['initial_pruning']:,} of them the "
            f"initial pruning), one set/reset pulse each: "
            f"{programming['energy_pj'] / 1e6:.4g} µJ, {programming['time_ns'] / 1e6:.4g} ms "
            f"({programming['costs']['description']}).",
            "",
        ]
    names = list(report["sensitivity"][0]["energy_efficiency_x"])
    lines += [
        "Sensitivity: × energy efficiency against the baseline",
        "",
        "| variation | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *(
            f"| {s['variation']} | "
            + " | ".join(f"{s['energy_efficiency_x'][n]:.3g}" for n in names)
            + " |"
            for s in report["sensitivity"]
        ),
    ]
    return "\n".join(lines + layer_table(report["counts"]["full"])) + "\n"


def layer_table(counts: dict[str, Any]) -> list[str]:
    """Per-layer counts per inference (a dict from :meth:`OperationCounts.to_dict`)."""
    samples = max(counts["samples"], 1)
    lines = [
        "",
        "Per layer, per inference (full T):",
        "",
        "| layer | crossbar | kept cells | input events | synaptic ops | dense MACs "
        "| evaluations | row drives | neuron outputs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in counts["layers"]:
        c = {k: sum(v) / samples for k, v in layer["counts"].items()}
        if layer["kind"] == "synapse":
            shape = f"{layer['crossbar_rows']}x{layer['crossbar_columns']}"
            lines.append(
                f"| {layer['name']} | {shape} | {layer['kept_cells']} / {layer['cells']} "
                f"| {c['input_events']:.4g} | {c['acs'] + c['macs']:.4g} | {c['dense_ops']:.4g} "
                f"| {c['evaluations']:.4g} | {c['row_activations']:.4g} | |"
            )
        else:
            outputs = f"{c['output_events']:.4g} of {c['neuron_updates']:.4g}"
            lines.append(f"| {layer['name']} | | | | | | | | {outputs} |")
    return lines


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Bar chart (PNG) of energy and latency per inference of every row."""
    rows = report["rows"]
    names = [r["name"] for r in rows][::-1]
    fig, axes = new_figure(11, 0.6 * len(rows) + 1.6, ncols=2, sharey=True)
    colors = ["#c33", "#e96"] + ["#888"] * (len(rows) - 3) + ["#2a7"]  # digital, ..., best
    for ax, key, unit, scale in (
        (axes[0], "energy_pj", "energy per inference (nJ, log scale)", "log"),
        (axes[1], "latency_ns", "latency per inference (µs)", "linear"),
    ):
        values = [r[key] / 1e3 for r in rows][::-1]
        bars = ax.barh(names, values, color=colors[::-1])
        ax.set_xscale(scale)
        ax.set_xlabel(unit)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], padding=3, fontsize=8)
        ax.margins(x=0.25)
    fig.suptitle(f"{report['model']} on {report['dataset']}: {report['run']}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def energy_report(
    model: SpikingNetwork,
    test: Dataset,
    analog: AnalogMacro,
    baseline: DigitalAccelerator,
    early_exit: dict[str, Any] | None,
    batch_size: int = 128,
    progress: bool = False,
) -> dict[str, Any]:
    """The report's content for ``model`` on ``test``: counts at full T (and with early
    exit where ``early_exit`` holds :func:`~prime.inference.early_exit.run_early_exit`
    keywords), the scenario rows and the sensitivity table."""
    full, full_accuracy = count_run(model, test, batch_size, progress=progress)
    exited, exit_accuracy = (None, None)
    if early_exit is not None:
        exited, exit_accuracy = count_run(model, test, batch_size, early_exit, progress)
    rows = scenarios(full, full_accuracy, analog, baseline, exited, exit_accuracy)
    return {
        "samples": full.samples,
        "baseline": {"name": baseline.description, **dataclasses.asdict(baseline)},
        "analog": {"name": analog.description, **dataclasses.asdict(analog)},
        "early_exit": early_exit,
        "connection_sparsity": connection_sparsity(model),
        "activation_sparsity": full.activation_sparsity(),
        "rows": [row_dict(row, rows[0]) for row in rows],
        "sensitivity": sensitivity(rows),
        "counts": {"full": full.to_dict(), "early_exit": exited and exited.to_dict()},
    }


def report_paths(out_dir: str | Path) -> list[Path]:
    """``energy.json``, ``energy.md`` and ``energy.png`` in ``out_dir``."""
    return [Path(out_dir) / f"energy.{ext}" for ext in ("json", "md", "png")]


def write_energy_report(report: dict[str, Any], out_dir: str | Path) -> None:
    """Write :func:`report_paths` (JSON, Markdown, PNG) of ``report``."""
    json_path, md_path, png_path = report_paths(out_dir)
    write_json(json_path, report)
    atomic_write(md_path, lambda tmp: tmp.write_text(format_report(report)))
    plot_report(report, png_path)

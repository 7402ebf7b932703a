"""Figures of docs/periphery.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from figures import REFERENCE, Section, signed, train, train_accuracy

#: the ideal run's neuron ranges on the digits (docs/periphery.md, "Neurons' words")
NEURON = {"base": "prime-512", "membrane_integer_bits": 2, "integrator_integer_bits": 5}


def periphery_file(work: Path, name: str, fields: dict[str, Any]) -> Path:
    """``work/name`` written with the periphery ``fields`` (a JSON file for --periphery)."""
    path = work / name
    path.write_text(json.dumps(fields))
    return path


def sweep(run: Path, field: str, values: list[int], out: Path, periphery: str | Path) -> list:
    """Accuracy (%) of ``run`` on ``periphery`` at each of ``values`` of ``field``."""
    from prime.hardware.periphery import load_periphery
    from prime.runs.periphery_sweep import sweep_periphery

    rows = sweep_periphery(run, field, values, out, load_periphery(periphery))
    return [100 * row["accuracy"] for row in rows]


def post_hoc_adc(work: Path) -> dict[str, Any]:
    """The default run (seed 0) evaluated on ``prime-512`` at 8, 6, 5, 4 and 3 ADC bits."""
    run = train(work, "s0", ["--seed", "0"])
    bits = [8, 6, 5, 4, 3]
    accuracies = sweep(run, "adc_bits", bits, work / "sweep-adc", "prime-512")
    values = {f"adc{b}": a for b, a in zip(bits, accuracies, strict=True)}
    return values | {"s0": train_accuracy(work, "s0", ["--seed", "0"])}


def adc_in_the_loop(work: Path) -> dict[str, Any]:
    """Runs trained at 4 and 3 ADC bits on ``prime-512``, against the post-hoc sweep."""
    values = post_hoc_adc(work)
    adc4 = periphery_file(work, "adc4.json", {"base": "prime-512", "adc_bits": 4})
    adc3 = periphery_file(work, "adc3.json", {"base": "prime-512", "adc_bits": 3})
    values["hw4"] = train_accuracy(work, "hw4", ["--periphery", str(adc4)])
    values["hw3"] = train_accuracy(work, "hw3", ["--periphery", str(adc3)])
    bits = [8, 6, 5, 4, 3]
    accuracies = sweep(work / "hw4", "adc_bits", bits, work / "hw4" / "sweep-adc", adc4)
    values |= {f"hw4_{b}": a for b, a in zip(bits, accuracies, strict=True)}
    drop, trained_drop = values["s0"] - values["adc3"], values["s0"] - values["hw3"]
    values |= {"drop3": drop, "hw3_drop": trained_drop}
    return values | {"recovered": 100 * (drop - trained_drop) / drop}


def digital_words(work: Path) -> dict[str, Any]:
    """The default run on ``prime-512`` at digital word widths 16 down to 3 bits."""
    bits = [16, 12, 10, 8, 7, 6, 5, 4, 3]
    run = train(work, "s0", ["--seed", "0"])
    accuracies = sweep(run, "digital_bits", bits, work / "sweep-digital", "prime-512")
    values = {f"d{b}": a for b, a in zip(bits, accuracies, strict=True)}
    values["d6_change"] = signed(values["d6"] - values["d16"])
    return values | {f"d{b}_drop": values["d16"] - values[f"d{b}"] for b in (5, 4)}


def neuron_words(work: Path) -> dict[str, Any]:
    """The default run at neuron word widths, with 16-bit and with 6-bit digital words."""
    run = train(work, "s0", ["--seed", "0"])
    neuron = periphery_file(work, "neuron.json", NEURON)
    unit6 = periphery_file(work, "unit6.json", {**NEURON, "digital_bits": 6})
    bits = [16, 12, 10, 8, 7, 6]
    accuracies = sweep(run, "neuron_bits", bits, work / "sweep-neuron", neuron)
    values = {f"n{b}": a for b, a in zip(bits, accuracies, strict=True)}
    accuracies = sweep(run, "neuron_bits", [16, 8, 7], work / "sweep-unit6", unit6)
    return values | {f"u{b}": a for b, a in zip([16, 8, 7], accuracies, strict=True)}


def approximate_adc(work: Path) -> dict[str, Any]:
    """The default run and a run trained through ``approx-adc-4b``, at 6, 5, 4 and 3 bits."""
    bits = [6, 5, 4, 3]
    run = train(work, "s0", ["--seed", "0"])
    values: dict[str, Any] = {"s0": train_accuracy(work, "s0", ["--seed", "0"])}
    accuracies = sweep(run, "adc_bits", bits, work / "sweep-approx", "approx-adc-4b")
    values |= {f"p{b}": a for b, a in zip(bits, accuracies, strict=True)}
    values["hwa"] = train_accuracy(work, "hw-approx4", ["--periphery", "approx-adc-4b"])
    trained = work / "hw-approx4"
    accuracies = sweep(trained, "adc_bits", bits, trained / "sweep-adc", "approx-adc-4b")
    values |= {f"t{b}": a for b, a in zip(bits, accuracies, strict=True)}
    drop = values["s0"] - values["p4"]
    end, evaluated = values["s0"] - values["hwa"], values["s0"] - values["t4"]
    values |= {"drop": drop, "end_drop": end, "eval_drop": evaluated}
    return values | {
        "end_rec": 100 * (drop - end) / drop,
        "eval_rec": 100 * (drop - evaluated) / drop,
    }


def reference_adc(work: Path) -> dict[str, Any]:
    """The authors' N-MNIST checkpoint, ideal and on ``prime-512`` at 8, 6 and 4 ADC bits."""
    import eval_reference_periphery

    out = work / "reference-adc.json"
    if not out.is_file():
        args = ["--reference", str(REFERENCE), "--periphery", "prime-512", "--adc-bits", "8,6,4"]
        eval_reference_periphery.main([*args, "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    return {f"r{i}": 100 * row["accuracy"] for i, row in enumerate(rows)}


def bench_adc6(work: Path) -> dict[str, Any]:
    """Training and inference throughput of ``prime-512-adc6`` against the ideal path."""
    import bench_speed

    out = work / "bench-adc6.json"
    bench_speed.main(
        ["--batch", "64", "--repeats", "5", "--periphery", "prime-512-adc6"] + ["--json", str(out)]
    )
    figures = json.loads(out.read_text())["figures"]
    e, a = figures["prime-periphery"], figures["prime-multi"]
    return {
        f"{who}_{kind}": f[f"{kind}_samples_per_s"]
        for who, f in (("e", e), ("a", a))
        for kind in ("train", "infer")
    } | {"train_ratio": e["train_vs_prime_multi"], "infer_ratio": e["infer_vs_prime_multi"]}


SECTIONS = [
    Section(
        "periphery.md",
        "post-hoc ADC bits",
        "quick",
        (
            "Post hoc: the default run, trained ideal ({s0:.2f} %)",
            "| ideal run, post hoc | {adc8:.2f} % | {adc6:.2f} % | {adc5:.2f} % | {adc4:.2f} % "
            "| {adc3:.2f} % |",
        ),
        post_hoc_adc,
        "prime eval runs/digits --periphery prime-512 --adc-bits 8,6,5,4,3",
    ),
    Section(
        "periphery.md",
        "ADC bits in the loop",
        "quick",
        (
            "| trained at 4 bits ({hw4:.2f} % at 4) | {hw4_8:.2f} % | {hw4_6:.2f} % "
            "| {hw4_5:.2f} % | {hw4_4:.2f} % | {hw4_3:.2f} % |",
            "| trained at 3 bits | | | | | {hw3:.2f} % |",
            "At 3 bits the post-hoc drop is {drop3:.1f} points ({s0:.2f} → {adc3:.2f} %); "
            "training with the 3-bit ADC in the loop reached {hw3:.2f} %, a drop of "
            "{hw3_drop:.1f} points: it recovers {recovered:.0f} % of the post-hoc drop",
        ),
        adc_in_the_loop,
        "prime train --periphery adcN.json; prime eval RUN --adc-bits 8,6,5,4,3 (the page's)",
    ),
    Section(
        "periphery.md",
        "digital unit word",
        "quick",
        (
            "| accuracy | {d16:.2f} % | {d12:.2f} % | {d10:.2f} % | {d8:.2f} % | {d7:.2f} % "
            "| {d6:.2f} % | {d5:.2f} % | {d4:.2f} % | {d3:.2f} % |",
            "Against the 16-bit word ({d16:.2f} %) the drop stays under 0.5 points down to 6 "
            "bits ({d6_change} pt at 6); 5 bits lose {d5_drop:.2f} points, 4 bits "
            "{d4_drop:.1f}.",
        ),
        digital_words,
        "prime eval runs/ideal --periphery prime-512 --digital-bits 16,12,10,8,7,6,5,4,3",
    ),
    Section(
        "periphery.md",
        "neurons' words",
        "quick",
        (
            "| 16-bit digital words | {n16:.2f} % | {n12:.2f} % | {n10:.2f} % | {n8:.2f} % "
            "| {n7:.2f} % | {n6:.2f} % |",
            "| 6-bit digital words | {u16:.2f} % | | | {u8:.2f} % | {u7:.2f} % | |",
            "Against 16-bit neurons ({n16:.2f} %)",
            "So the whole digital unit runs at 6-bit words and 7-bit membranes at {u7:.2f} %, "
            "no drop against the 16-bit unit ({n16:.2f} %)",
        ),
        neuron_words,
        "prime eval runs/ideal --periphery runs/neuron.json --neuron-bits 16,12,10,8,7,6 "
        "(and runs/unit6.json --neuron-bits 16,8,7)",
    ),
    Section(
        "periphery.md",
        "approximate ADC",
        "quick",
        (
            "--out runs/hw-approx4 # {hwa:.2f} %",
            "| ideal run ({s0:.2f} %), post hoc | {p6:.2f} % | {p5:.2f} % | {p4:.2f} % "
            "| {p3:.2f} % |",
            "| trained with `approx-adc-4b` in the loop, evaluated afterwards | {t6:.2f} % "
            "| {t5:.2f} % | {t4:.2f} % | {t3:.2f} % |",
            "At 4 bits the post-hoc drop is {drop:.2f} points ({s0:.2f} → {p4:.2f} %); trained "
            "with the approximate ADC in the loop the run reaches {hwa:.2f} % at the end of "
            "training ({t4:.2f} % when",
            "a drop of {end_drop:.2f} ({eval_drop:.2f}) points: training recovers "
            "{end_rec:.0f} % ({eval_rec:.0f} %) of the post-hoc drop",
            "give {t6:.2f} % and {t5:.2f} %, far below the ideal run's {p6:.2f} % and "
            "{p5:.2f} % there",
        ),
        approximate_adc,
        "prime train --periphery approx-adc-4b; prime eval RUN --adc-bits 6,5,4,3 (the page's)",
    ),
    Section(
        "periphery.md",
        "the authors' N-MNIST checkpoint",
        "reference",
        (
            "| ADC 4 bits | |---|---|---|---|---| | accuracy | {r0:.2f} % | {r1:.2f} % "
            "| {r2:.2f} % | {r3:.2f} % |",
        ),
        reference_adc,
        "python scripts/eval_reference_periphery.py --periphery prime-512 --adc-bits 8,6,4",
    ),
    Section(
        "periphery.md",
        "speed of prime-512-adc6",
        "timing",
        (
            "training {e_train:.1f} vs {a_train:.1f} samples/s, **{train_ratio:.2f}×**; "
            "inference {e_infer:.1f} vs {a_infer:.1f} samples/s, {infer_ratio:.2f}×",
        ),
        bench_adc6,
        "python scripts/bench_speed.py --batch 64 --repeats 5 --periphery prime-512-adc6",
    ),
    Section(
        "periphery.md",
        "presets",
        "cited",
        (
            "| 16 bit | gain σ 2 %, offset σ 0.5 LSB",
            "(`approx-adc-4b`: gain σ 2 %, offset σ 0.5 LSB",
        ),
    ),
]

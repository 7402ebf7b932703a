"""What a run leaves and takes: ``--config FILE`` (JSON, YAML; the command line wins), the
``run_config.json`` that reruns it, ``metrics.csv`` and ``training_curves.png``, progress bars
only on a terminal, ``--quiet`` keeping the epoch lines, the note on another chip."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch
from helpers import TINY

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.core.io import load_checkpoint
from prime.hardware.devices import get_device
from prime.runs.config import TrainConfig
from prime.runs.evaluation import evaluate_run
from prime.runs.train import train

#: a device config given inline (as run_config.json writes it)
DEVICE = get_device("rram-lognormal").to_config()
OPTIONS = {"dataset": TINY, "epochs": 3, "batch-size": 4, "lr": 0.05, "device-model": DEVICE}


@pytest.mark.slow
def test_config_file_sets_options_the_command_line_wins_and_the_run_reruns(tmp_path, capsys):
    config = tmp_path / "options.json"
    config.write_text(json.dumps({**OPTIONS, "--seed": 3, "shift_px": 1}))
    run, again = tmp_path / "run", tmp_path / "again"
    assert (
        main(["train", "--config", str(config), "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    )
    printed = capsys.readouterr().out
    assert "epoch 1/2:" in printed and "epoch 2/2:" in printed  # --quiet keeps the epoch lines
    trained = load_checkpoint(run / "checkpoint.pt")
    settings = trained["train_config"]
    assert (settings["epochs"], settings["seed"], settings["batch_size"]) == (2, 3, 4)
    assert settings["device_model"] == DEVICE
    assert settings["augment"] == {"shift_px": 1}
    rerun = json.loads((run / "run_config.json").read_text())
    assert rerun["epochs"] == 2 and rerun["device_model"] == DEVICE and "out" not in rerun
    assert main(["train", "--config", str(run / "run_config.json"), "--out", str(again)]) == 0
    repeated = load_checkpoint(again / "checkpoint.pt")
    assert repeated["train_config"] == settings
    for key, value in trained["model_state"].items():  # the same run, bit for bit
        assert torch.equal(value, repeated["model_state"][key]), key


def test_run_config_is_written_before_training_so_a_killed_run_reruns(
    tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"

    def killed(config, out, *args, **kwargs):
        assert json.loads((out / "run_config.json").read_text())["epochs"] == 3
        raise KeyboardInterrupt  # the run dies before its first epoch ends

    monkeypatch.setattr("prime.runs.train.train", killed)
    args = ["train", "--dataset", TINY, "--epochs", "3", "--seed", "5", "--out", str(run)]
    assert main(args) == 130  # interrupted
    rerun = json.loads((run / "run_config.json").read_text())
    assert (rerun["epochs"], rerun["seed"], rerun["dataset"]) == (3, 5, TINY)


@pytest.mark.slow
def test_yaml_config_and_clear_errors_for_bad_files(tmp_path, capsys, monkeypatch):
    yaml_file = tmp_path / "options.yaml"
    yaml_file.write_text("dataset: tiny-events\nepochs: 1\nbatch-size: 7\nmode: single\n")
    assert main(["train", "--config", str(yaml_file), "--out", str(tmp_path / "y")]) == 0
    assert load_checkpoint(tmp_path / "y" / "checkpoint.pt")["train_config"]["mode"] == "single"
    capsys.readouterr()
    cases = [
        ({"epoch": 2}, "unknown option 'epoch' for this command (did you mean epochs?)"),
        ({"keep": "lots"}, "keep: could not convert string to float: 'lots'"),
        ({"mode": "double"}, "mode: 'double' is not one of multi, single"),
        ({"download": "yes"}, "download is a flag: give true or false"),
        ({"tile": [50, 50]}, "tile takes a value as on the command line"),
    ]
    for options, message in cases:
        (tmp_path / "bad.json").write_text(json.dumps(options))
        assert main(["train", "--config", str(tmp_path / "bad.json")]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["train", "--config", str(tmp_path / "list.json")]) == 1
    assert "must hold one object of options" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML not installed
    assert main(["train", "--config", str(yaml_file)]) == 1
    assert (
        "needs PyYAML: pip install pyyaml, or write the options as JSON" in capsys.readouterr().err
    )


@pytest.mark.slow
def test_epoch_log_and_curves_and_no_bars_off_a_terminal(tmp_path, capsys):
    config = TrainConfig(dataset=TINY, epochs=2, batch_size=4, lr=0.05)
    metrics = train(config, tmp_path, progress=True)  # stderr is captured: not a terminal
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bar written into the log
    assert "epoch 2/2:" in captured.out
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
        "lr",
        "data_seconds",
        "train_seconds",
        "wall_seconds",
    ]
    assert [int(r["epoch"]) for r in rows] == [1, 2] and rows[0]["val_accuracy"] == ""
    for r in rows:  # waiting for batches is part of an epoch's training, which is part of the run
        assert 0 < float(r["data_seconds"]) < float(r["train_seconds"]) < float(r["wall_seconds"])
    assert [float(r["test_accuracy"]) for r in rows] == [
        h["test_accuracy"] for h in metrics["history"]
    ]
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    train(config, tmp_path / "silent", progress=False, summaries=False)
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_tensorboard_scalars_equal_metrics_csv_and_a_rewritten_step_is_kept_once(tmp_path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="--tensorboard needs the tensorboard package (pip install prime[tensorboard])",
    )
    from prime.runs.training_log import write_tensorboard_epoch

    config = TrainConfig(dataset=TINY, epochs=2, batch_size=4, lr=0.05, tensorboard=True)
    history = train(config, tmp_path, progress=False, summaries=False)["history"]
    write_tensorboard_epoch(tmp_path, {**history[1], "train_loss": 7.0})  # as a resumed run

    events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert "val_accuracy" not in events.Tags()["scalars"]  # the tiny data has no validation
    for column in ("train_loss", "train_accuracy", "test_accuracy", "lr", "wall_seconds"):
        scalars = events.Scalars(column)
        assert [s.step for s in scalars] == [1, 2], column
        expected = [float(r[column]) for r in rows]
        if column == "train_loss":
            expected[1] = 7.0
        assert [s.value for s in scalars] == pytest.approx(expected, rel=1e-6), column


def test_tensorboard_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(PrimeError, match=r"pip install prime\[tensorboard\]"):
        TrainConfig(dataset=TINY, tensorboard=True)


@pytest.mark.slow
def test_another_chip_gets_a_note(tmp_path, capsys):
    train(TrainConfig(dataset=TINY, epochs=1, chip_seed=4), tmp_path, progress=False)
    capsys.readouterr()
    evaluate_run(tmp_path, chip_seed=4, progress=False)
    assert capsys.readouterr().err == ""  # its own chip
    evaluate_run(tmp_path, chip_seed=6, progress=False)
    note = "the masks belong to chip 4; accuracy on chip 6 is expected near chance"
    assert note in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_accepts_quiet(tmp_path, capsys):
    args = ["--dataset", TINY, "--epochs", "1", "--batch-size", "8", "--quiet"]
    assert main(["sweep", "--chips", "1", *args, "--out", str(tmp_path)]) == 0
    assert "chip seed 0: test accuracy" in capsys.readouterr().out


def test_run_config_options_round_trip_every_kind_of_setting(tmp_path):
    from prime.cli.config_file import apply_config_file, command_parser
    from prime.cli.main import build_parser
    from prime.cli.train import config_from_args, config_options
    from prime.hardware.periphery import load_periphery

    trace = tmp_path / "chip.h5"
    trace.write_bytes(b"")  # only its path is recorded here
    config = TrainConfig(
        dataset=TINY,
        epochs=2,
        seed=7,
        chip_seed=9,
        scale=0.01,
        trace=str(trace),
        replay="per-batch",
        pruned="reset",
        tile=(512, 512),
        read_path=load_periphery("prime-512").to_dict(),
        augment={"shift_px": 2, "zoom": 0.1},
        data={"data_root": str(tmp_path), "download": True},
        hysteresis="0.1",
    )
    faulty = TrainConfig(
        device_model="rram-lognormal",
        faults={"stuck_off": 0.01, "stuck_on": 0.02, "seed": 3, "stuck_on_us": 40.0},
        limit_train=5,
        exit_loss=0.5,
    )
    path = tmp_path / "run_config.json"
    for made in (config, faulty):
        path.write_text(json.dumps(config_options(made)))
        parser = build_parser()
        args = parser.parse_args(["train", "--config", str(path)])
        args.given = frozenset({"config"})
        apply_config_file(args, command_parser(parser, "train"))
        assert config_from_args(args) == made

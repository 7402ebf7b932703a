"""``prime reproduce nmnist`` end to end on a few recordings (one epoch), and its pieces."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import reference_file

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.data.fake import write_fake_nmnist
from prime.runs.reproduce.pipeline import MAX_EPOCHS, ReproduceConfig, epochs_for, nmnist_folder

FAST = ["--epochs", "1", "--batch-size", "8", "--repeats", "2", "--read-noise", "0,0.05"]
FAST += ["--policies", "prime,margin", "--min-steps", "1", "--quiet"]
LEAN = ["--policies", "prime", "--read-noise", "0", "--no-energy"]  # after FAST: overrides


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine two threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_reference(path):
    """A state dict shaped like the PRIME authors' classification.pt (random values)."""
    g = torch.Generator().manual_seed(0)
    shapes = {
        "features.conv0": (12, 2, 5, 5),
        "features.conv1": (64, 12, 5, 5),
        "classifier.linear0": (10, 2304),
    }
    state = {
        f"{prefix}.{key}": torch.randn(shape, generator=g) * (6.35 if key == "weight" else 1)
        for prefix, shape in shapes.items()
        for key in ("weight", "scores")
    }
    torch.save(state, path)
    return path


@pytest.mark.slow
def test_end_to_end_on_fake_recordings(tmp_path, capsys):
    write_fake_nmnist(tmp_path / "NMNIST", per_class=3, events=300)
    checkpoint = fake_reference(tmp_path / "classification.pt")
    out = tmp_path / "out"
    args = ["reproduce", "nmnist", str(tmp_path / "NMNIST" / "Train"), "--out", str(out)]
    args += ["--reference-checkpoint", str(checkpoint), "--data-root", str(tmp_path), *FAST]
    assert main(args) == 0
    results = json.loads((out / "reproduce.json").read_text())
    data = results["data"]
    assert data["subset"] and data["recordings"] == {"Train": 30, "Test": 0}
    assert data["splits"] == {"train": 18, "val": 6, "test": 6}
    own, authors = results["models"]["prime"], results["models"]["authors"]
    assert own["epochs"] == 1 and not own["epoch_rule"] and own["conductances_unchanged"]
    assert own["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    for entry in (own, authors):
        runs = entry["early_exit"]["runs"]
        assert [r["policy"] for r in runs] == ["prime", "margin"]
        for r in runs:  # load saved follows from the steps the controller really took
            assert 1 <= r["mean_steps"] <= 10
            assert r["load_saved"] == pytest.approx(1 - r["mean_steps"] / 10)
            assert r["validation"]["drop_pp"] <= 1.0 + 1e-9
        assert entry["early_exit"]["best"] in runs
        within = [r["mean_steps"] for r in runs if r["drop_pp"] <= 1.0 + 1e-9]
        assert entry["early_exit"]["test_bound"]["mean_steps"] <= min(within, default=10)
        noise = entry["read_noise"]
        assert [(r["read_noise"], r["repeats"]) for r in noise] == [(0.0, 1), (0.05, 2)]
    assert set(authors["time_bins"]) == {"test_accuracy", "all_accuracy", "all_samples"}
    assert authors["events_bins"]["all_samples"] == 30
    assert [r["threshold"] for r in authors["paper_thresholds"]] == [0.8, 0.5, 0.3, 0.2]
    assert [r["name"] for r in results["energy"]["rows"]][-1] == "+ early exit"
    for name in ("report.md", "early_exit_tradeoff.png", "energy/energy.md", "run/summary.md"):
        assert (out / name).stat().st_size > 0, name
    for name in ("prime", "authors"):
        assert (out / "read-noise" / name / "read_noise.png").exists()
        assert (out / "early-exit" / name / "margin-min1" / "sweep.csv").exists()
    report = (out / "report.md").read_text()
    assert "a SUBSET of N-MNIST" in report and "18 train / 6 validation / 6 test" in report
    assert "| paper claim | prime (this data) | authors' checkpoint (this data) |" in report
    assert own["augment"] == {"shift_px": 3, "rotate_deg": 12.0, "zoom": 0.1}
    assert "shifts up to 3 px" in report and "per-step loss weight 0.5" in report
    assert report in capsys.readouterr().out

    # nothing is overwritten without --force; --resume reuses the finished run
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    before = (out / "run" / "checkpoint.pt").read_bytes()
    assert main([*args, "--resume", *LEAN]) == 0
    assert (out / "run" / "checkpoint.pt").read_bytes() == before
    again = json.loads((out / "reproduce.json").read_text())
    assert again["models"]["prime"]["test_accuracy"] == own["test_accuracy"]
    assert "energy" not in again
    assert main([*args, "--resume", "--split-seed", "1"]) == 1  # another split: no reuse
    assert "trained on other data or another split" in capsys.readouterr().err


@pytest.mark.slow
def test_real_recordings_with_the_authors_checkpoint(tmp_path):
    checkpoint = reference_file("prime/classification.pt")
    real = reference_file("nmnist/Train")
    for digit in range(10):  # the first three recordings of every digit
        for path in sorted((real / str(digit)).glob("*.bin"))[:3]:
            (tmp_path / "Train" / str(digit)).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tmp_path / "Train" / str(digit) / path.name)
    out = tmp_path / "out"
    args = ["reproduce", "nmnist", str(tmp_path), "--out", str(out)]
    args += ["--reference-checkpoint", str(checkpoint), "--data-root", str(tmp_path), *FAST, *LEAN]
    assert main(args) == 0
    authors = json.loads((out / "reproduce.json").read_text())["models"]["authors"]
    # the authors' model scores 98.0 % on the 1,000 reference recordings
    assert authors["time_bins"]["all_samples"] == 30
    assert authors["time_bins"]["all_accuracy"] >= 0.9
    assert authors["events_bins"]["all_accuracy"] >= 0.9


def test_epoch_rule_scales_with_the_data():
    assert epochs_for(600) == 80
    assert epochs_for(48_000) == 1 and epochs_for(60_000) == 1
    assert epochs_for(10) == MAX_EPOCHS
    assert epochs_for(300) <= MAX_EPOCHS


def test_data_folder_forms_and_bad_folders(tmp_path):
    write_fake_nmnist(tmp_path / "NMNIST", per_class=1, events=10)
    folder = tmp_path / "NMNIST"
    assert nmnist_folder(folder) == folder
    assert nmnist_folder(tmp_path) == folder
    assert nmnist_folder(folder / "Train") == folder
    with pytest.raises(PrimeError, match="no such folder"):
        nmnist_folder(tmp_path / "missing")
    with pytest.raises(PrimeError, match="holds no N-MNIST recordings"):
        nmnist_folder(folder / "Train" / "3")


def test_bad_settings_fail_before_training(tmp_path, capsys):
    with pytest.raises(PrimeError, match="--repeats"):
        ReproduceConfig(data=tmp_path, repeats=0)
    with pytest.raises(PrimeError, match="--min-steps"):
        ReproduceConfig(data=tmp_path, min_steps=(1, 11))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    args = ["reproduce", "nmnist", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*args, "--reference-checkpoint", str(tmp_path / "other.pt")]) == 1
    assert "is not a PRIME N-MNIST checkpoint" in capsys.readouterr().err
    assert main(args) == 1  # no recordings
    assert "holds no N-MNIST recordings" in capsys.readouterr().err
    assert not (tmp_path / "out" / "run").exists()

"""Fault injection: bad arguments, bad files, unwritable and full targets, concurrent writers,
killed writers. Every case must end with exit status != 0, exactly one line on stderr that
starts with ``prime <command>: error:`` and no traceback, or else work correctly.

In-process through ``prime.cli.main.main`` where possible; in a subprocess where a file size
limit (``ulimit -f``), a kill or a second process is the fault.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import TINY, load_factor

from prime.cli.main import main
from prime.core.io import atomic_write, load_checkpoint, save_checkpoint
from prime.core.lock import LOCK_NAME, exclusive
from prime.data.fake import write_fake_dvsgesture, write_fake_nmnist
from prime.hardware.traces.format import TraceInfo, write_trace

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY_RUN = ["--dataset", TINY, "--epochs", "1", "--batch-size", "4", "--quiet"]
NPZ_RUN = ["--epochs", "1", "--batch-size", "8", "--timesteps", "4", "--quiet"]  # npz_data
ROOT = os.geteuid() == 0  # root ignores file permissions


def fails_cleanly(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI in-process; assert a failure with one clean line holding ``expected``."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err
    assert status not in (0, None), f"{argv} succeeded"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prime"), err
    assert ": error: " in lines[0], err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def assert_one_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    """A subprocess's failure: status 1 (no signal), one clean line on stderr."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


BASH = ("bash", "-c")
#: a shell in which root, which ignores file permissions, cannot write read-only folders
WITHOUT_OVERRIDE = ("capsh", "--drop=cap_dac_override", "--", "-c") if ROOT else BASH


def prime_process(
    args: list[str], setup: tuple[str, ...] = (), shell: tuple[str, ...] = BASH, **kwargs
):
    """``prime ARGS`` in a subprocess (tiny test dataset registered), run by ``shell`` after
    its commands ``setup`` (a file size limit: ``ulimit -f KiB``)."""
    code = "import sys, helpers; from prime.cli.main import main; sys.exit(main(sys.argv[1:]))"
    command = shlex.join([sys.executable, "-c", code, *args])
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"}
    script = "; ".join([*setup, f"exec {command}"])
    return subprocess.Popen([*shell, script], env=env, text=True, **kwargs)


def run_prime(
    args: list[str], setup: tuple[str, ...] = (), shell: tuple[str, ...] = BASH
) -> subprocess.CompletedProcess:
    process = prime_process(args, setup, shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300 * load_factor())
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def ulimit(kib: int) -> tuple[str, ...]:
    return (f"ulimit -f {kib}",)


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp")]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run (one epoch on the tiny dataset)."""
    run = tmp_path_factory.mktemp("faults") / "run"
    assert main(["train", *TINY_RUN, "--out", str(run)]) == 0
    return run


# ------------------------------------------------------------------ bad arguments

BAD_ARGUMENTS = {
    "timesteps negative": (["train", "--timesteps", "-3"], "--timesteps: must be >= 1"),
    "timesteps zero": (["train", "--timesteps", "0"], "--timesteps: must be >= 1"),
    "timesteps huge": (["train", "--timesteps", "100000000"], "limit of 10,000"),
    "epochs huge": (["train", "--epochs", "99999999999999999999"], "limit of 100,000"),
    "epochs zero": (["train", "--epochs", "0"], "--epochs: must be >= 1"),
    "batch size zero": (["train", "--batch-size", "0"], "--batch-size"),
    "threads zero": (["train", "--threads", "0"], "--threads: must be >= 1"),
    "threads negative": (["train", "--threads", "-2"], "--threads"),
    "threads huge": (["train", "--threads", "100000"], "CPU cores"),
    "seed negative": (["train", "--seed", "-1"], "--seed: must be >= 0"),
    "chip seed text": (["train", "--chip-seed", "x"], "expected a whole number"),
    "nproc zero": (["train", "--nproc", "0"], "--nproc"),
    "nproc negative": (["train", "--nproc", "-1"], "--nproc"),
    "sweep nproc zero": (["sweep", "--nproc", "0"], "--nproc"),
    "eval repeats zero": (["eval", "run", "--repeats", "0"], "--repeats"),
    "eval min steps zero": (["eval", "run", "--min-steps", "0"], "--min-steps"),
    "synth rows zero": (["trace", "synth", "--out", "t.h5", "--rows", "0"], "--rows"),
    "synth reads zero": (["trace", "synth", "--out", "t.h5", "--reads", "0"], "--reads"),
    "synth rows huge": (["trace", "synth", "--out", "t.h5", "--rows", "200000"], "limit"),
    "synth noise nan": (["trace", "synth", "--out", "t.h5", "--read-noise", "nan"], "finite"),
    "fit unformed negative": (["trace", "fit", "t.h5", "--unformed-below", "-5"], ">= 0"),
    "plot max reads zero": (["trace", "plot", "t.h5", "--max-reads", "0"], "--max-reads"),
    "bench limit zero": (["bench", "energy", "run", "--limit", "0"], "--limit"),
    "reproduce repeats zero": (["reproduce", "nmnist", "d", "--repeats", "0"], "--repeats"),
    "sweep chips zero": (["sweep", "--chips", "0"], "--chips: must be >= 1"),
    "fault seed negative": (["train", "--fault-seed", "-1"], "--fault-seed: must be >= 0"),
    "age seed negative": (["eval", "run", "--age-seed", "-1"], "--age-seed: must be >= 0"),
    "neurobench batch zero": (["bench", "neurobench", "run", "--batch-size", "0"], "--batch-size"),
    "pruning epochs huge": (
        ["reproduce", "pruning", "d", "--epochs", "9" * 20],
        "limit of 100,000",
    ),
    "import timesteps zero": (["import", "g.nir", "--timesteps", "0"], "--timesteps"),
    "unknown option": (["train", "--no-such-option"], "unrecognized arguments"),
    "old device flag": (["train", "--device", "rram-lognormal"], "--device-model"),
}


@pytest.mark.parametrize("argv, expected", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_argument_is_one_line(capsys, argv, expected):
    fails_cleanly(capsys, argv, expected)


UNUSED_OPTIONS = {
    "threshold without early exit": (["eval", "RUN", "--threshold", "0.9"], "--early-exit"),
    "policy without early exit": (["eval", "RUN", "--policy", "margin"], "--early-exit"),
    "eval out without a report": (["eval", "RUN", "--out", "x"], "--out applies only"),
    "train tile without trace": (["train", "--tile", "4x4"], "--tile applies only with --trace"),
    "train replay without trace": (["train", "--replay", "per-batch"], "--replay"),
    "digits encoding": (["train", "--encoding", "rate"], "does not take the option(s) encoding"),
    "digits split mode": (["train", "--split-mode", "time"], "split_mode"),
    "digits test path": (["train", "--test-path", "x.npz"], "test_path"),
    "digits data path": (["train", "--data-path", "x"], "data_path"),
}


@pytest.mark.parametrize("argv, expected", UNUSED_OPTIONS.values(), ids=UNUSED_OPTIONS.keys())
def test_option_that_does_not_apply_is_an_error(capsys, tmp_path, argv, expected):
    argv = [str(tmp_path / "run") if part == "RUN" else part for part in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "out"), "--data-root", str(tmp_path)]
    fails_cleanly(capsys, argv, expected)


def test_eval_tile_without_any_trace_is_an_error(capsys, tiny_run):
    fails_cleanly(capsys, ["eval", str(tiny_run), "--tile", "8x8"], "this run has none")


def test_resume_with_changed_settings_is_refused(capsys, tiny_run):
    changes = ["--epochs", "3", "--lr", "0.1", "--model", "nmnist-mlp", "--keep", "0.3"]
    line = fails_cleanly(capsys, ["train", "--resume", "--out", str(tiny_run), *changes])
    assert "epochs 3 (the run has 1)" in line and "lr 0.1 (the run has 0.001)" in line
    assert "model 'nmnist-mlp' (the run has None)" in line and "keep 0.3 (the run has 0.5)" in line


def test_resume_with_the_same_settings_works(capsys, tiny_run):
    assert main(["train", "--resume", "--out", str(tiny_run), "--epochs", "1", "--quiet"]) == 0
    assert "nothing left to train" in capsys.readouterr().out


# ------------------------------------------------------------------ bad files


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


DEVICE_FILES = {
    "text in empirical values": ({"name": "empirical", "values_us": ["x"]}, "list of numbers"),
    "number as a string": ({"name": "rram-lognormal", "p_unformed": "0.5"}, "must be a number"),
    "name not a string": ({"name": ["x"]}, "preset 'name'"),
    "unknown parameter": ({"name": "rram-lognormal", "colour": 1}, "no parameter colour"),
    "not an object": ([1, 2], "'name' field"),
}


@pytest.mark.parametrize("config, expected", DEVICE_FILES.values(), ids=DEVICE_FILES.keys())
def test_bad_device_file(capsys, tmp_path, config, expected):
    device = write(tmp_path / "device.json", json.dumps(config))
    argv = ["train", "--device-model", str(device), "--out", str(tmp_path / "out")]
    fails_cleanly(capsys, argv, str(device), expected)


def damaged_checkpoint(run: Path, folder: Path, change) -> Path:
    payload = load_checkpoint(run / "checkpoint.pt")
    change(payload)
    target = folder / "damaged"
    save_checkpoint(target / "checkpoint.pt", payload)
    return target


def _nan_conductances(payload):
    g_us = next(k for k in payload["model_state"] if k.endswith("g_us"))
    payload["model_state"][g_us][0, 0] = float("nan")


def _wrong_shape(payload):
    scores = next(k for k in payload["model_state"] if k.endswith("scores"))
    payload["model_state"][scores] = torch.zeros(3)


CHECKPOINTS = {
    "no model_state": (lambda p: p.pop("model_state"), "lacks model_state"),
    "NaN conductances": (_nan_conductances, "NaN or infinite"),
    "inf scores": (
        lambda p: p["model_state"].update(
            {k: v.fill_(float("inf")) for k, v in p["model_state"].items() if "scores" in k}
        ),
        "NaN or infinite",
    ),
    "config and state disagree": (_wrong_shape, "does not fit its model_config"),
    "unknown model in config": (lambda p: p["model_config"].update(name="nope"), "nope"),
    "unknown train setting": (
        lambda p: p["train_config"].update(colour=1),
        "unknown settings colour",
    ),
}


@pytest.mark.parametrize("change, expected", CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_damaged_checkpoint_is_refused(capsys, tmp_path, tiny_run, change, expected):
    run = damaged_checkpoint(tiny_run, tmp_path, change)
    fails_cleanly(capsys, ["eval", str(run)], expected)


def test_garbage_checkpoint_and_resume_without_optimizer(capsys, tmp_path, tiny_run):
    write(tmp_path / "garbage" / "checkpoint.pt", "not a checkpoint")
    fails_cleanly(capsys, ["eval", str(tmp_path / "garbage")], "not a readable PyTorch")
    run = damaged_checkpoint(tiny_run, tmp_path, lambda p: p.pop("optimizer_state"))
    fails_cleanly(capsys, ["train", "--resume", "--out", str(run)], "lacks optimizer_state")


def trace_with(path: Path, edit) -> Path:
    write_trace(path, np.ones((2, 4, 4), np.float32), TraceInfo(provenance_kind="synthetic"))
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _huge_array(f):
    del f["conductance_us"]
    f.create_dataset("conductance_us", shape=(1, 200_000, 200_000), dtype="f4", chunks=(1, 8, 8))
    f["conductance_us"].attrs["units"] = "uS"


def _billion_reads(f):
    del f["conductance_us"]
    f.create_dataset("conductance_us", shape=(10**9, 4, 4), dtype="f4", chunks=(1, 4, 4))
    f["conductance_us"].attrs["units"] = "uS"


TRACES = {
    "root units S": (lambda f: f.attrs.modify("units", "S"), "root units 'S'"),
    "200000x200000 array": (_huge_array, "GiB of memory"),
    "a billion reads": (_billion_reads, "limit of 1,000,000"),
}


@pytest.mark.parametrize("edit, expected", TRACES.values(), ids=TRACES.keys())
def test_bad_trace_is_refused_fast(capsys, tmp_path, edit, expected):
    trace = trace_with(tmp_path / "t.h5", edit)
    started = time.perf_counter()
    fails_cleanly(capsys, ["trace", "info", str(trace)], expected)
    assert main(["trace", "validate", str(trace)]) == 1
    assert expected in capsys.readouterr().out
    assert time.perf_counter() - started < 10


def test_npz_without_samples(capsys, tmp_path):
    empty = tmp_path / "empty.npz"
    np.savez(empty, features=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
    argv = ["train", "--dataset", "npz", "--data-path", str(empty), "--data-root", str(tmp_path)]
    fails_cleanly(capsys, [*argv, "--out", str(tmp_path / "out")], "0 samples")


def nmnist_folder(root: Path, name: str, content: bytes, folder: str = "3") -> Path:
    good = np.zeros((40, 5), np.uint8)
    good[:, 0], good[:, 1] = np.arange(40) % 34, np.arange(40) % 30  # x, y on the sensor
    for digit in "0123456789":
        path = root / "Train" / digit / "00001.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good.tobytes())
    bad = root / "Train" / folder / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(content)
    return bad


RECORDINGS = {
    "zero bytes": ("empty.bin", b"", "3", "0 bytes"),
    "truncated": ("cut.bin", b"\x01" * 7, "3", "7 bytes"),
    "garbage events": ("junk.bin", bytes(range(250, 255)) * 20, "3", "outside the 34x34"),
    "class folder not a digit": ("00002.bin", b"\x01" * 5, "x", "not a class"),
}


@pytest.mark.parametrize("name, content, folder, expected", RECORDINGS.values(), ids=RECORDINGS)
def test_unreadable_recording_is_named(capsys, tmp_path, name, content, folder, expected):
    bad = nmnist_folder(tmp_path / "nmnist", name, content, folder)
    argv = ["train", "--dataset", "nmnist", "--data-path", str(tmp_path / "nmnist")]
    argv += ["--data-root", str(tmp_path), "--out", str(tmp_path / "out"), "--quiet"]
    fails_cleanly(capsys, argv, str(bad), expected)


def _off_sensor_clip() -> np.ndarray:
    clip = np.zeros((20, 4), np.int32)
    clip[3, 0] = 500  # x beyond the 128x128 sensor
    return clip


#: (path under ibmGestureTrain, content: an array or raw bytes, expected text)
CLIPS = {
    "wrong shape": ("user02_led/3.npy", np.zeros((20, 3), np.int32), "int32 [20, 3]"),
    "one column": ("user02_led/3.npy", np.zeros(20, np.int32), "not integer columns"),
    "floats": ("user02_led/3.npy", np.zeros((20, 4), np.float64), "float64 [20, 4]"),
    "no events": ("user02_led/3.npy", np.zeros((0, 4), np.int32), "0 of 0 events"),
    "events off the sensor": ("user02_led/3.npy", _off_sensor_clip(), "outside the 128x128"),
    "not a NumPy file": ("user02_led/3.npy", b"garbage", "not a NumPy array"),
    "folder not a user": ("misc/3.npy", np.zeros((20, 4), np.int32), "not a user<NN>_<lighting>"),
    "name not a class": ("user02_led/11.npy", np.zeros((20, 4), np.int32), "named by its class"),
}


@pytest.mark.parametrize("name, content, expected", CLIPS.values(), ids=CLIPS)
def test_unreadable_gesture_clip_is_named(capsys, tmp_path, name, content, expected):
    folder = tmp_path / "DVSGesture"
    write_fake_dvsgesture(folder, per_class=1, events=50)
    bad = folder / "ibmGestureTrain" / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        np.save(bad, content)
    argv = ["train", "--dataset", "dvsgesture", "--data-root", str(tmp_path), "--timesteps", "2"]
    fails_cleanly(capsys, [*argv, "--out", str(tmp_path / "out"), "--quiet"], str(bad), expected)


def test_data_root_that_is_a_file(capsys, tmp_path):
    a_file = write(tmp_path / "file", "x")
    fails_cleanly(capsys, ["datasets", "--data-root", str(a_file)], "is a file")
    argv = ["train", "--data-root", str(a_file), "--out", str(tmp_path / "out")]
    fails_cleanly(capsys, argv, "is a file")


# ------------------------------------------------------------------ outputs


def test_out_that_is_a_file_or_under_a_file(capsys, tmp_path):
    a_file = write(tmp_path / "file", "x")
    fails_cleanly(capsys, ["train", *TINY_RUN, "--out", str(a_file)], "is a file, not a folder")
    fails_cleanly(capsys, ["train", *TINY_RUN, "--out", str(a_file / "run")], "under a file")


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


#: (arguments, expected text) with {ro} a read-only folder, {run} a read-only finished run
READ_ONLY = {
    "train --out under it": (["train", *TINY_RUN, "--out", "{ro}/run"], "cannot create --out"),
    "train --resume of it": (["train", "--resume", "--out", "{run}"], "--out {run} is not"),
    "eval --early-exit of it": (["eval", "{run}", "--early-exit"], "{run}/early-exit"),
    "eval --early-exit --out it": (["eval", "{run}", "--early-exit", "--out", "{ro}"], "{ro} is"),
    "bench energy of it": (["bench", "energy", "{run}"], "{run}/bench"),
    "bench energy --out it": (["bench", "energy", "{run}", "--out", "{ro}"], "{ro} is not"),
    "data root": (
        [
            "train",
            "--dataset",
            "npz",
            "--data-path",
            "{data}",
            "--data-root",
            "{ro}",
            "--out",
            "{out}",
        ],
        "the frame cache folder {ro}/cache",
    ),
}


@pytest.mark.skipif(ROOT and not shutil.which("capsh"), reason="root needs capsh to drop rights")
@pytest.mark.parametrize("argv, expected", READ_ONLY.values(), ids=READ_ONLY)
def test_read_only_target_fails_before_work(tmp_path, tiny_run, argv, expected):
    """Read-only folders (for root: without CAP_DAC_OVERRIDE) are refused in one line, before
    any work (the lock, the report folder and the cache folder are checked first)."""
    places = {name: tmp_path / name for name in ("ro", "run", "out")}
    places["data"] = tmp_path / "data.npz"
    npz_data(places["data"], seed=0)
    places["ro"].mkdir()
    shutil.copytree(tiny_run, places["run"])
    argv = [part.format(**places) for part in argv] + ["--quiet"] * (argv[0] == "train")
    expected = expected.format(**places)
    read_only(places["ro"])
    read_only(places["run"])
    try:
        result = run_prime(argv, shell=WITHOUT_OVERRIDE)
    finally:
        writable(places["ro"])
        writable(places["run"])
    assert_one_line(result, expected)


@pytest.mark.slow
def test_relative_trace_is_stored_resolved(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["trace", "synth", "--out", "chip.h5", "--reads", "1"]) == 0
    assert main(["train", *TINY_RUN, "--out", "run", "--trace", "chip.h5"]) == 0
    stored = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_config"]["trace"]
    assert stored == str(tmp_path / "chip.h5")
    monkeypatch.chdir(tmp_path.parent)
    assert main(["eval", str(tmp_path / "run")]) == 0  # from another working directory
    capsys.readouterr()


def test_relative_data_path_is_stored_resolved_and_missing_data_is_advised(
    capsys, tmp_path, monkeypatch
):
    """A relative --data-path is stored resolved; a run whose files are gone says to put them
    back, not to pass --data-path (which prime eval does not take)."""
    monkeypatch.chdir(tmp_path)
    write_fake_nmnist(tmp_path / "nmnist", per_class=1, events=200)
    argv = ["train", "--dataset", "nmnist", "--data-path", "nmnist", "--data-root", "."]
    assert main([*argv, *TINY_RUN[2:], "--timesteps", "2", "--out", "run"]) == 0
    data = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_config"]["data"]
    assert data["data_path"] == str(tmp_path / "nmnist")
    assert data["data_root"] == str(tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    assert main(["eval", str(tmp_path / "run")]) == 0  # from another working directory
    capsys.readouterr()
    (tmp_path / "nmnist").rename(tmp_path / "moved")
    line = fails_cleanly(capsys, ["eval", str(tmp_path / "run")], "NMNIST files not found")
    assert "put them back" in line and "--data-path" not in line


def test_default_data_root_is_announced_once(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRIME_DATA", raising=False)
    data = npz_data(tmp_path / "data.npz", seed=0)
    argv = ["train", "--dataset", "npz", "--data-path", str(data), *NPZ_RUN]
    assert main([*argv, "--out", "one"]) == 0
    err = capsys.readouterr().err
    assert err.count("created the data root") == 1 and str(tmp_path / "datasets") in err, err
    assert main([*argv, "--out", "two"]) == 0
    assert "created the data root" not in capsys.readouterr().err


# ------------------------------------------------------------------ silent changes


@pytest.mark.slow
def test_replaced_trace_is_refused(capsys, tmp_path):
    trace = tmp_path / "chip.h5"
    synth = ["trace", "synth", "--out", str(trace), "--reads", "2", "--force"]
    assert main(synth) == 0
    run = tmp_path / "run"
    assert main(["train", *TINY_RUN, "--out", str(run), "--trace", str(trace)]) == 0
    assert main(["eval", str(run)]) == 0
    capsys.readouterr()
    assert main([*synth, "--seed", "7"]) == 0  # another valid trace at the same path
    capsys.readouterr()
    fails_cleanly(capsys, ["eval", str(run)], "changed since the run was trained")
    assert main(["eval", str(run), "--trace", str(trace)]) == 0  # asked for explicitly


def npz_data(path: Path, seed: int) -> Path:
    """30 samples of spoken-digits-mlp's input (23x20 features in [0, 1], 10 classes)."""
    rng = np.random.default_rng(seed)
    np.savez(path, features=rng.random((30, 23, 20), np.float32), labels=np.arange(30) % 10)
    return path


def test_changed_data_is_reported(capsys, tmp_path):
    """A run records its data's sha256: evaluating on changed data warns, resuming refuses."""
    data = npz_data(tmp_path / "data.npz", seed=0)
    argv = ["--dataset", "npz", "--data-path", str(data), "--data-root", str(tmp_path)]
    run = tmp_path / "run"
    assert main(["train", *argv, *NPZ_RUN, "--out", str(run)]) == 0
    assert main(["eval", str(run)]) == 0
    assert "warning" not in capsys.readouterr().err
    npz_data(data, seed=1)  # other samples in the same file
    assert main(["eval", str(run)]) == 0
    err = capsys.readouterr().err
    assert "warning: the test data of npz changed since the run was trained" in err, err
    fails_cleanly(capsys, ["train", "--resume", "--out", str(run)], "data of npz changed")


# ------------------------------------------------------------------ one writer per run


def hold_lock(folder: Path) -> subprocess.Popen:
    """A process holding ``folder``'s write lock until it is killed."""
    code = (
        "import sys, time; from prime.core.lock import exclusive\n"
        "with exclusive(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_second_writer_is_refused_and_a_killed_holder_frees_the_run(capsys, tmp_path):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        line = fails_cleanly(capsys, ["train", *TINY_RUN, "--out", str(run)], "being written")
        assert f"PID {holder.pid}" in line
        sweep = ["sweep", *TINY_RUN[:-1], "--chips", "1", "--out", str(run)]
        fails_cleanly(capsys, sweep, "PID")
        fails_cleanly(capsys, ["train", "--resume", "--out", str(run)], "being written")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    record = (run / LOCK_NAME).read_text()
    assert str(holder.pid) in record  # a stale record; the kernel released the lock
    assert main(["train", *TINY_RUN, "--out", str(run)]) == 0
    assert not (run / LOCK_NAME).exists()  # removed by the writer that finished


def test_lock_is_reentrant_in_one_process_and_readers_are_not_blocked(capsys, tmp_path, tiny_run):
    with exclusive(tiny_run), exclusive(tiny_run):
        assert main(["eval", str(tiny_run)]) == 0  # a reader takes no lock
    capsys.readouterr()


@pytest.mark.slow
def test_two_concurrent_train_commands(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--dataset", TINY, "--epochs", "15", "--batch-size", "4", "--quiet"]
    first = prime_process([*args, "--out", str(run)], stdout=subprocess.PIPE)
    deadline = time.time() + 120 * load_factor()
    while not (run / LOCK_NAME).is_file() or not (run / LOCK_NAME).read_text():
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    second = run_prime([*args, "--out", str(run), "--epochs", "1"])
    assert_one_line(second, "being written by", f"PID {first.pid}")
    out, _ = first.communicate(timeout=300 * load_factor())
    assert first.returncode == 0 and "test accuracy" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 15 and len(metrics["history"]) == 15


# ------------------------------------------------------------------ full disks, killed writes


def test_full_disk_during_checkpoint(tmp_path):
    """ulimit -f: the run's first checkpoint cannot be written."""
    run = tmp_path / "run"
    result = run_prime(["train", *TINY_RUN, "--out", str(run)], ulimit(64))
    assert_one_line(result, "checkpoint.pt failed", "file size limit")
    assert not (run / "checkpoint.pt").exists() and temporaries(tmp_path) == []


def test_full_disk_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"x": torch.zeros(4)})
    before = path.read_bytes()
    code = (
        "import signal, sys, torch; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from prime.core.io import save_checkpoint\n"
        "try:\n    save_checkpoint(sys.argv[1], {'x': torch.zeros(10**6)})\n"
        "except Exception as exc:\n    print(exc); sys.exit(1)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = f"ulimit -f 64; exec '{sys.executable}' -c \"{code}\" '{path}'"
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "previous content is kept" in result.stdout, result
    assert path.read_bytes() == before and temporaries(tmp_path) == []


def test_full_disk_during_cache_build(tmp_path):
    """The first cache build of a dataset under a 64 KiB file size limit: no segfault."""
    npz = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, features=rng.random((64, 256), np.float32), labels=np.arange(64) % 4)
    argv = ["train", "--dataset", "npz", "--data-path", str(npz), "--data-root", str(tmp_path)]
    result = run_prime([*argv, "--out", str(tmp_path / "run"), "--quiet"], ulimit(64))
    assert_one_line(result, "cache", "file size limit")
    assert temporaries(tmp_path) == [] and not list((tmp_path / "cache").glob("*.h5"))


def test_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale = tmp_path / f".cache.h5.p{ended.pid}.abcd1234.tmp"
    live = tmp_path / f".other.h5.p{os.getpid()}.abcd1234.tmp"
    stale.write_text("half")
    live.write_text("in progress")
    atomic_write(tmp_path / "next.txt", lambda tmp: tmp.write_text("x"))
    assert not stale.exists() and live.exists()


@pytest.mark.slow
def test_killed_cache_build_is_cleaned_on_the_next_run(tmp_path):
    npz = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, features=rng.random((8000, 400), np.float32), labels=np.arange(8000) % 4)
    argv = ["train", "--dataset", "npz", "--data-path", str(npz), "--data-root", str(tmp_path)]
    argv += ["--out", str(tmp_path / "run"), "--quiet", "--epochs", "1", "--timesteps", "50"]
    first = prime_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = tmp_path / "cache"  # (not the run folder, whose run_config.json is written first)
    deadline = time.time() + 240 * load_factor()
    while not temporaries(cache):
        assert time.time() < deadline and first.poll() is None, "no cache build seen"
        time.sleep(0.02)
    first.kill()
    first.wait()
    assert temporaries(cache)  # the killed build's temporary file is left behind
    atomic_write(cache / "other.txt", lambda tmp: tmp.write_text("x"))
    assert temporaries(cache) == []


def test_foreign_exception_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    import prime.cli.models as models

    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(models, "run", broken)  # add_parser binds it when main builds
    line = fails_cleanly(capsys, ["models"], "KeyError: 'boom'", "--debug")
    assert "unexpected error" in line
    assert main(["--debug", "models"]) == 1
    assert "Traceback" in capsys.readouterr().err

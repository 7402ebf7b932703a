"""A run's training log: ``metrics.csv`` (one line per epoch) and ``training_curves.png``
(loss and accuracy against the epoch), both from the epoch history that the checkpoint and
``metrics.json`` hold, written atomically; optionally TensorBoard events in ``tensorboard/``
(``prime train --tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prime.core.errors import PrimeError
from prime.core.tables import new_figure, save_figure, write_csv

#: the columns of ``metrics.csv``; ``val_accuracy`` is empty where the data has no
#: validation split
COLUMNS = (
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
)
CSV_FILE = "metrics.csv"
CURVES_FILE = "training_curves.png"
#: the folder of the TensorBoard event files
TENSORBOARD_DIR = "tensorboard"


def write_epoch_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.csv`` of the epochs so far."""
    write_csv(out_dir / CSV_FILE, history, COLUMNS)


def require_tensorboard() -> type:
    """torch's ``SummaryWriter``; a PrimeError saying how to install it where the
    ``tensorboard`` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PrimeError(
            "--tensorboard needs the tensorboard package: pip install prime[tensorboard]"
        ) from None
    return SummaryWriter


def write_tensorboard_epoch(out_dir: Path, epoch: dict[str, Any]) -> None:
    """One epoch's line of ``metrics.csv`` as TensorBoard scalars at step ``epoch``; events a
    killed run left at this step or later are purged, so a resumed run has each step once."""
    step = epoch["epoch"]
    with require_tensorboard()(out_dir / TENSORBOARD_DIR, purge_step=step) as writer:
        for column in COLUMNS[1:]:
            if column in epoch:
                writer.add_scalar(column, epoch[column], step)


def plot_training_curves(out_dir: Path, history: list[dict[str, Any]], title: str) -> None:
    """``training_curves.png``: training and test loss (left), training, validation and
    test accuracy (right), against the epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (loss, accuracy) = new_figure(10, 3.5, ncols=2)
    loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    loss.plot(epochs, [h["test_loss"] for h in history], "s-", label="test")
    loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    for key, marker in (("train_accuracy", "o-"), ("val_accuracy", "^-"), ("test_accuracy", "s-")):
        if all(key in h for h in history):
            values = [100 * h[key] for h in history]
            accuracy.plot(epochs, values, marker, label=key.split("_")[0])
    accuracy.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (loss, accuracy):
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_dir / CURVES_FILE)

"""Accuracy and loss of a network over a dataset (a run directory: :mod:`prime.runs.evaluation`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from prime.core.device import module_device
from prime.core.progress import progress_bar
from prime.data import iterate_batches
from prime.snn.network import SpikingNetwork


@torch.no_grad()
def evaluate(
    model: SpikingNetwork,
    dataset: Dataset,
    batch_size: int = 128,
    mode: str = "multi",
    progress: bool = False,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of the mean output over ``dataset``."""
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    loader, count = iterate_batches(dataset, batch_size, device=module_device(model))
    for x, y in progress_bar(loader, total=count, desc="eval", leave=False, show=progress):
        logits = model.logits(x, mode)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"accuracy": correct / max(n, 1), "loss": loss_sum / max(n, 1), "samples": n}

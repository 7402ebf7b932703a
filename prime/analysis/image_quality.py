"""Inception-style and FID-style scores of generated images, computed with a small digit
classifier that prime trains on the same data: NOT the ImageNet Inception network, so the
numbers compare runs of prime with each other, not with published IS/FID values.

* classifier score (Inception-style): exp(E_x KL(p(y|x) || p(y))), 1 (no confident classes)
  to 10 (confident and balanced over the 10 digits).
* classifier Fréchet distance (FID-style): ||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½)
  of the classifier's 64-d penultimate features of two image sets.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

FEATURES = 64


class DigitClassifier(nn.Module):
    """conv 1-16 3x3 s2, ReLU, conv 16-32 3x3 s2, ReLU, FC 2048-64 (features), ReLU, FC 10,
    on images [N, 1, 32, 32] in [-1, 1]."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, FEATURES),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(FEATURES, classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> DigitClassifier:
    """A :class:`DigitClassifier` trained on clean ``images`` [N, 1, 32, 32] (seeded;
    gradients on even where the caller turned them off)."""
    with torch.enable_grad():
        return _train(images, labels, seed, epochs, batch_size, lr)


def _train(
    images: torch.Tensor, labels: torch.Tensor, seed: int, epochs: int, batch_size: int, lr: float
) -> DigitClassifier:
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the layers' initial weights
        model = DigitClassifier(int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(images), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(images[rows]), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    return model


@torch.no_grad()
def classifier_accuracy(
    model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor
) -> float:
    return (model(images).argmax(1) == labels).double().mean().item()


@torch.no_grad()
def classifier_score(model: DigitClassifier, images: torch.Tensor) -> float:
    """Inception-style score exp(E KL(p(y|x) || p(y))) of ``images``."""
    p = torch.softmax(model(images).double(), 1)
    marginal = p.mean(0, keepdim=True)
    kl = (p * (p.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
    return math.exp(kl.mean().item())


@torch.no_grad()
def frechet_distance(model: DigitClassifier, a: torch.Tensor, b: torch.Tensor) -> float:
    """FID-style distance between the classifier features of image sets ``a`` and ``b``."""
    fa, fb = (model.features(x).double().numpy() for x in (a, b))
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    cov_a, cov_b = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    return float(max(value, 0.0))

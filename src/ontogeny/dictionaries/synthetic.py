"""Planted ground truth for dictionaries: sparse combinations of unit directions in superposition.

x = sum_i a_i g_i (+ noise), with G [n_features, d] random unit rows (n_features > d is superposition),
exactly `n_active` features per sample (chosen uniformly) with magnitudes Uniform[min_mag, max_mag].
A dictionary recovers the features when each g_i has a decoder row with cosine near 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class PlantedFeatures:
    """A generator of planted sparse data (see module docstring)."""

    d: int = 32
    n_features: int = 64
    n_active: int = 3
    min_mag: float = 0.5
    max_mag: float = 1.5
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        G = torch.randn(self.n_features, self.d, generator=gen)
        self.directions_GD = G / G.norm(dim=1, keepdim=True)
        self._gen = gen

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [n, d], true codes [n, n_features])."""
        gen = generator or self._gen
        scores = torch.rand(n, self.n_features, generator=gen)
        idx = scores.topk(self.n_active, dim=1).indices
        mags = self.min_mag + (self.max_mag - self.min_mag) * torch.rand(n, self.n_active, generator=gen)
        codes = torch.zeros(n, self.n_features).scatter(1, idx, mags)
        x = codes @ self.directions_GD
        if self.noise > 0:
            x = x + self.noise * torch.randn(n, self.d, generator=gen)
        return x, codes

    def batches(self, batch_size: int, n_batches: int, seed: int = 1) -> Iterator[torch.Tensor]:
        """`n_batches` fresh batches [batch_size, d] (deterministic given `seed`)."""
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n_batches):
            yield self.sample(batch_size, gen)[0]


def max_cosines(directions_GD: torch.Tensor, W_dec_FD: torch.Tensor) -> torch.Tensor:
    """For each true direction, the largest cosine with any decoder row ([n_features])."""
    G = directions_GD / directions_GD.norm(dim=1, keepdim=True)
    W = W_dec_FD / W_dec_FD.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (G @ W.t()).max(dim=1).values


def mean_max_cosine(directions_GD: torch.Tensor, W_dec_FD: torch.Tensor) -> float:
    """Mean over true directions of the best decoder cosine: 1 = every feature recovered exactly."""
    return float(max_cosines(directions_GD, W_dec_FD.detach()).mean())

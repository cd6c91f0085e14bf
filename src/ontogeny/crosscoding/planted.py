"""Planted life histories for crosscoders: activations at K checkpoints with known presence patterns.

Why: a crosscoder taxonomy is only trustworthy if it labels features whose histories we planted. Each
planted feature g has a presence set P_g (the checkpoints where it exists), one unit direction u_{g,m}
per checkpoint (shared features drift slowly: consecutive directions have cosine `drift_cos`) and one
code c_g(n) per token, the same at every checkpoint where it exists (shared firing support):

    x_{n,m} = scale_m * ( sum_g c_g(n) [m in P_g] u_{g,m} + eps_{n,m} ),   c_g(n) ~ Bernoulli(p) * U(0.5, 1.5)

with p = `l0` / (number of features) and isotropic Gaussian noise eps scaled so that
E||eps||^2 = noise^2 * E||clean||^2 (noise is a norm ratio, independent of D). Patterns, for K checkpoints:
shared (all), emerging at j (j..K-1, j >= 1), discontinued after j (0..j, j <= K-2) and transient at j
(only j, 0 < j < K-1). `scale_m` differs per checkpoint so that tests can check that a checkpoint's input
scale does not move a latent's class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PlantedStack:
    """Activations [N, K, D], directions [G, K, D], presence [G, K] (bool) and codes [N, G]."""

    acts_NKD: torch.Tensor
    dirs_GKD: torch.Tensor
    present_GK: np.ndarray
    codes_NG: torch.Tensor


def presence_patterns(k: int, n_shared: int, n_each: int) -> np.ndarray:
    """Presence sets [G, K] of the planted features: shared, then per j emerging / discontinued / transient."""
    rows = [np.ones(k, dtype=bool)] * n_shared
    for j in range(k):
        if j >= 1:
            rows += [np.arange(k) >= j] * n_each            # emerging at j
        if j <= k - 2:
            rows += [np.arange(k) <= j] * n_each            # discontinued after j
        if 0 < j < k - 1:
            rows += [np.arange(k) == j] * n_each            # transient at j
    return np.array(rows, dtype=bool)


def planted_stack(k: int, d_in: int = 32, n_tokens: int = 8192, n_shared: int = 8, n_each: int = 2,
                  l0: float = 3.0, noise: float = 0.0, drift_cos: float = 0.95,
                  scale_K: list[float] | None = None, seed: int = 0) -> PlantedStack:
    """Planted activations of K checkpoints (see module docstring), deterministic given the seed."""
    gen = torch.Generator().manual_seed(seed)
    present = presence_patterns(k, n_shared, n_each)
    g = len(present)
    base_GD = torch.randn(g, d_in, generator=gen)
    base_GD /= base_GD.norm(dim=1, keepdim=True)
    dirs = [base_GD]
    theta = float(np.arccos(drift_cos))
    for _ in range(1, k):
        # rotate each direction by theta towards a fresh random orthogonal direction: cos = drift_cos per step
        prev = dirs[-1]
        r = torch.randn(g, d_in, generator=gen)
        r = r - (r * prev).sum(1, keepdim=True) * prev
        r /= r.norm(dim=1, keepdim=True)
        dirs.append(np.cos(theta) * prev + np.sin(theta) * r)
    dirs_GKD = torch.stack(dirs, dim=1)
    fire_NG = torch.rand(n_tokens, g, generator=gen) < (l0 / g)
    codes_NG = fire_NG * (0.5 + torch.rand(n_tokens, g, generator=gen))
    pres_t = torch.as_tensor(present, dtype=torch.float32)
    clean_NKD = torch.einsum("ng,gk,gkd->nkd", codes_NG, pres_t, dirs_GKD)
    if noise > 0:
        rms_K = clean_NKD.pow(2).sum(-1).mean(0).sqrt()
        eps = torch.randn(clean_NKD.shape, generator=gen) * (noise * rms_K / d_in ** 0.5)[None, :, None]
        clean_NKD = clean_NKD + eps
    s = torch.tensor(scale_K if scale_K is not None else [1.0] * k, dtype=torch.float32)
    if s.shape != (k,):
        raise ValueError(f"scale_K needs {k} values, got {list(s.tolist())}")
    return PlantedStack(clean_NKD * s[None, :, None], dirs_GKD, present, codes_NG)


def match_features(W_dec_FKD: torch.Tensor, planted: PlantedStack) -> tuple[np.ndarray, np.ndarray]:
    """Best latent per planted feature and its score: the cosine between the latent's decoder rows
    concatenated over all K checkpoints and the feature's ideal decoder (u_{g,m} where it exists, 0
    elsewhere), so rows where the feature is absent count against the match. Returns (latent [G], score [G])."""
    W_FKD = W_dec_FKD.detach().double()
    pres_GK = torch.as_tensor(planted.present_GK, dtype=torch.float64)
    dot_FG = torch.einsum("fkd,gkd,gk->fg", W_FKD, planted.dirs_GKD.double(), pres_GK)
    norm_FG = W_FKD.pow(2).sum((1, 2)).clamp_min(1e-30).sqrt()[:, None] * pres_GK.sum(-1)[None].sqrt()
    best, idx = (dot_FG / norm_FG).max(dim=0)
    return idx.numpy(), best.numpy()


def class_accuracy(labels_F: np.ndarray, W_dec_FKD: torch.Tensor, planted: PlantedStack,
                   names: list[str], min_score: float = 0.8) -> dict[str, float]:
    """Per planted class, the share of its features whose best latent (score >= min_score) has that class."""
    from ontogeny.crosscoding.presence import pattern_name

    idx, score = match_features(W_dec_FKD, planted)
    hits: dict[str, list[bool]] = {}
    for g, row in enumerate(planted.present_GK):
        want = pattern_name(row, names)
        hits.setdefault(want, []).append(bool(score[g] >= min_score and labels_F[idx[g]] == want))
    return {c: float(np.mean(v)) for c, v in hits.items()}

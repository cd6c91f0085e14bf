"""Relative decoder norms (RelDec), relative indirect effects (RelIE) and their classes.

A crosscoder latent i has one decoder row d_{i,m} per checkpoint m. Its relative decoder norm says
which checkpoints use it (Bayazit et al. 2025, §RelDec; ckkissane crosscoder replication):

    one-vs-all:  RelDec_m(i) = ||d_{i,m}|| / sum_m' ||d_{i,m'}||
    pairwise:    RelDec_{a->b}(i) = ||d_{i,b}|| / (||d_{i,a}|| + ||d_{i,b}||)

With 2 checkpoints the paper reports the pairwise value (later / (earlier + later)); with 3 the
one-vs-all vector and the pairs (A,B), (B,C), (A,C). RelIE is the same ratio over |IE_m(i)|: one-vs-all
values are 1/M where every effect is 0 (`rel_ie`), pairwise values 0.5. The paper's classes cut a ratio at
`low`=0.3 and `high`=0.7: > high: "emerging" (later-checkpoint specific), < low: "discontinued", else
"shared"; its one-vs-all `taxonomy` cannot say "shared" once K >= 4 (values sum to 1), so the tables'
classes come from presence patterns instead (`ontogeny.crosscoding.presence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import torch

from ontogeny.errors import ConfigError

EMERGING, SHARED, DISCONTINUED = "emerging", "shared", "discontinued"


def check_thresholds(low: float, high: float) -> None:
    """Raise ConfigError unless 0 <= low <= high <= 1."""
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(f"class thresholds need 0 <= low <= high <= 1, got low={low}, high={high}")


def decoder_norms(W_dec_FKD: torch.Tensor) -> np.ndarray:
    """||d_{i,m}||_2 for every latent i and checkpoint m: [F, K]."""
    if W_dec_FKD.dim() != 3:
        raise ConfigError(f"W_dec must be [F, K, D], got shape {tuple(W_dec_FKD.shape)}")
    return W_dec_FKD.detach().float().norm(dim=-1).cpu().numpy()


def relative(values_FK: np.ndarray, empty: float | None = None) -> np.ndarray:
    """One-vs-all ratios |v_m| / sum_m' |v_m'| per row; rows summing to 0 get `empty` (default 1/K)."""
    v = np.abs(np.asarray(values_FK, dtype=np.float64))
    total = v.sum(axis=1, keepdims=True)
    fill = 1.0 / v.shape[1] if empty is None else empty
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, v / np.where(total > 0, total, 1.0), fill)
    return out


def rel_ie(ie_KF: np.ndarray) -> np.ndarray:
    """One-vs-all RelIE [F, K] from indirect effects [K, F]: |IE_m| / sum_m' |IE_m'|, 1/K where all are 0."""
    return relative(np.asarray(ie_KF).T)


def checkpoint_pairs(k: int) -> list[tuple[int, int]]:
    """Pairs (a, b), a < b, in the paper's order: consecutive pairs first, then the longer spans.

    K=2: [(0,1)]; K=3: [(0,1), (1,2), (0,2)] = (A,B), (B,C), (A,C) as in Bayazit et al.
    """
    pairs = sorted(combinations(range(k), 2), key=lambda p: (p[1] - p[0], p[0]))
    return pairs


def pairwise(values_FK: np.ndarray, pairs: Sequence[tuple[int, int]] | None = None,
             empty: float = 0.5) -> np.ndarray:
    """Pairwise ratios |v_b| / (|v_a| + |v_b|) for each pair: [F, P]; 0/0 gives `empty` (0.5)."""
    v = np.abs(np.asarray(values_FK, dtype=np.float64))
    pairs = checkpoint_pairs(v.shape[1]) if pairs is None else list(pairs)
    cols = []
    for a, b in pairs:
        total = v[:, a] + v[:, b]
        with np.errstate(invalid="ignore", divide="ignore"):
            cols.append(np.where(total > 0, v[:, b] / np.where(total > 0, total, 1.0), empty))
    return np.stack(cols, axis=1) if cols else np.zeros((v.shape[0], 0))


def classify(values: np.ndarray, low: float = 0.3, high: float = 0.7) -> np.ndarray:
    """Class value of each ratio: 1.0 above `high`, 0.0 below `low`, else 0.5 (`classify_cont_value`)."""
    check_thresholds(low, high)
    v = np.asarray(values, dtype=np.float64)
    return np.where(v > high, 1.0, np.where(v < low, 0.0, 0.5))


def class_names(values: np.ndarray, low: float = 0.3, high: float = 0.7) -> np.ndarray:
    """Names of the classes of pairwise ratios: emerging (> high), discontinued (< low), shared."""
    c = classify(values, low, high)
    return np.where(c == 1.0, EMERGING, np.where(c == 0.0, DISCONTINUED, SHARED)).astype(object)


def taxonomy(rel_FK: np.ndarray, names: Sequence[str], low: float = 0.3, high: float = 0.7) -> np.ndarray:
    """Per-latent label from a one-vs-all vector (the paper's 3-way table, any K).

    "<X> specific" when X > high and X is the largest; "<all> shared" when every entry >= low;
    "<X-Y> shared" when exactly the entries X, Y (two or more, not all) are >= low; else "others".
    """
    check_thresholds(low, high)
    rel = np.asarray(rel_FK, dtype=np.float64)
    if rel.shape[1] != len(names):
        raise ConfigError(f"{len(names)} checkpoint names for {rel.shape[1]} columns")
    out = np.empty(rel.shape[0], dtype=object)
    for i, row in enumerate(rel):
        top = int(np.argmax(row))
        above = [names[m] for m in range(len(names)) if row[m] >= low]
        if row[top] > high:
            out[i] = f"{names[top]} specific"
        elif len(above) == len(names):
            out[i] = "-".join(names) + " shared"
        elif len(above) >= 2:
            out[i] = "-".join(above) + " shared"
        else:
            out[i] = "others"
    return out

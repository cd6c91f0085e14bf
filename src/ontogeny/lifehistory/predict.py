"""Predict which lineages become carriers from their firing at onset only ("function precedes direction").

PROPOSAL (spec A9, the least certain part). Statistics of the first `onset_checkpoints` checkpoints of
each lineage. Default (`PredictConfig.features`): onset firing only: firing share, mean and max code
when firing, entropy of the token ids it fires on, share of firings on special tokens (BOS,
punctuation; a mask the caller supplies). Optional: hierarchy degree at onset, layer, log onset step,
and first_r (r of the lineage's first transition: transition-derived, it overlaps the carrier label
"stable at every transition", so it is off by default). No decoder geometry. Labels: carriers vs
count-matched non-carriers alive by the early window's end. Standardised L2 logistic regression (Newton
steps on sklearn's objective, `fit_logistic`),
stratified k-fold accuracy and AUC, each beside a label-permutation null (p = (1 + #null >= observed) /
(1 + n), as sklearn's permutation_test_score); which statistics carry the prediction: each one's standardised coefficient
and its own single-statistic AUC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import EXTRA_FEATURES, ONSET_FEATURES, MatchConfig, PredictConfig
from ontogeny.lifehistory.lineage import Lineage
from ontogeny.lifehistory.scaffold import Hierarchy, site_layer

FEATURES = ONSET_FEATURES + EXTRA_FEATURES  # every statistic onset_features computes, in this order


def onset_features(lin: Lineage, codes: Mapping[str, Sequence[torch.Tensor]], steps: Sequence[int],
                   sites: Sequence[str], hierarchies: Mapping[int, Hierarchy], token_ids_N: torch.Tensor | None,
                   special_N: torch.Tensor | None, mcfg: MatchConfig, pcfg: PredictConfig) -> list[float]:
    """All FEATURES of one lineage, averaged over its first onset_checkpoints checkpoints."""
    ks = list(range(lin.birth_index, min(lin.end_index, lin.birth_index + pcfg.onset_checkpoints - 1) + 1))
    rows = []
    for k in ks:
        a_N = codes[lin.site][k][:, lin.feature_at(k)]
        fires = a_N.abs() > mcfg.fire_eps
        n_fire = int(fires.sum())
        vals = a_N[fires]
        ent = 0.0
        if token_ids_N is not None and n_fire:
            _, cnt = torch.unique(token_ids_N[fires], return_counts=True)
            p = cnt.double() / n_fire
            ent = float(-(p * p.log()).sum())
        special = float(special_N[fires].float().mean()) if special_N is not None and n_fire else 0.0
        h = hierarchies.get(k)
        deg = 0.0
        if h is not None:
            node = h.index().get((lin.site, lin.feature_at(k)))
            if node is not None:
                deg = float(h.adjacency[node].nnz + h.adjacency[:, node].nnz)
        rows.append([n_fire / a_N.shape[0], float(vals.mean()) if n_fire else 0.0,
                     float(vals.max()) if n_fire else 0.0, ent, special, deg])
    mean = np.mean(np.asarray(rows), axis=0).tolist()
    first_r = lin.r[0] if lin.r else 0.0
    return mean + [float(site_layer(lin.site, list(sites).index(lin.site))),
                   float(np.log1p(steps[lin.birth_index])), float(first_r)]


@dataclass
class Prediction:
    """Cross-validated carrier prediction: per-fold scores, the null, and out-of-fold probabilities."""

    fold_accuracy: list[float]
    fold_auc: list[float]
    accuracy: float
    null_accuracy_mean: float | None
    p_value: float | None
    lineage_ids: list[int]
    labels: list[int]
    proba: list[float]               # out-of-fold P(carrier)
    n_folds: int
    X: list[list[float]]             # the chosen features per example
    features: list[str] = field(default_factory=list)
    auc: float | None = None
    null_auc_mean: float | None = None
    p_value_auc: float | None = None
    importance: list[dict] = field(default_factory=list)   # per feature: coefficient, single-feature AUC


def fit_logistic(X: np.ndarray, y: np.ndarray, C: float, n_iter: int = 50) -> tuple[np.ndarray, float]:
    """L2 logistic regression by Newton's method: min 0.5 |w|^2 + C Σ log(1 + exp(-(2y-1)(Xw + b))).

    The objective of sklearn's LogisticRegression(C) (intercept not penalised); tests check they agree.
    Small problems (hundreds of examples, a few statistics) converge in a few steps.
    """
    n, p = X.shape
    A = np.c_[X, np.ones(n)]
    w = np.zeros(p + 1)
    reg = np.r_[np.ones(p), 0.0]
    for _ in range(n_iter):
        q = 1 / (1 + np.exp(-(A @ w)))
        grad = reg * w + C * A.T @ (q - y)
        H = np.diag(reg) + C * (A.T * (q * (1 - q))) @ A + 1e-10 * np.eye(p + 1)
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[:p], float(w[p])


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties half (Mann-Whitney); NaN for one class."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    r = rankdata(score)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _cv(X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], C: float
        ) -> tuple[list[float], list[float], np.ndarray]:
    """Per-fold accuracy and AUC of standardised logistic regression, and out-of-fold P(carrier)."""
    proba = np.zeros(len(y))
    accs, aucs = [], []
    for tr, te in folds:
        mu, sd = X[tr].mean(0), X[tr].std(0)
        sd = np.where(sd > 0, sd, 1.0)
        w, b = fit_logistic((X[tr] - mu) / sd, y[tr], C)
        z = ((X[te] - mu) / sd) @ w + b
        proba[te] = 1 / (1 + np.exp(-z))
        accs.append(float(((z > 0) == (y[te] == 1)).mean()))
        aucs.append(auc(y[te], z))
    return accs, aucs, proba


def classify(X: np.ndarray, y: np.ndarray, cfg: PredictConfig, seed: int = 0,
             names: Sequence[str] | None = None) -> tuple[dict, np.ndarray]:
    """Stratified k-fold logistic regression on (X, y): scores, their label-permutation nulls, which
    statistics carry the prediction, and the out-of-fold probabilities."""
    y = np.asarray(y).astype(int)
    X = np.asarray(X, dtype=float)
    n_min = int(min((y == 0).sum(), (y == 1).sum()))
    if n_min < 2:
        raise ConfigError(f"carrier prediction needs at least 2 examples of each class, got {n_min}")
    n_folds = min(cfg.n_folds, n_min)
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    accs, aucs, proba = _cv(X, y, list(cv.split(X, y)), cfg.C)
    out = {"fold_accuracy": accs, "fold_auc": aucs, "n_folds": n_folds, "null_accuracy_mean": None,
           "p_value": None, "null_auc_mean": None, "p_value_auc": None}
    if cfg.n_permutations:  # labels permuted, folds stratified on the permuted labels (permutation_test_score)
        rng = np.random.default_rng(seed)
        null = np.array([[np.mean(v) for v in _cv(X, yp, list(cv.split(X, yp)), cfg.C)[:2]]
                         for yp in (rng.permutation(y) for _ in range(cfg.n_permutations))])
        for col, (obs, key, pkey) in enumerate(((np.mean(accs), "null_accuracy_mean", "p_value"),
                                                (np.mean(aucs), "null_auc_mean", "p_value_auc"))):
            out.update({key: float(null[:, col].mean()),
                        pkey: float((1 + (null[:, col] >= obs - 1e-12).sum()) / (1 + len(null)))})
    mu, sd = X.mean(0), X.std(0)
    w, _ = fit_logistic((X - mu) / np.where(sd > 0, sd, 1.0), y, cfg.C)
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    out["importance"] = sorted(
        ({"feature": n, "coefficient": float(c), "single_auc": auc(y, X[:, i])}
         for i, (n, c) in enumerate(zip(names, w))), key=lambda r: -abs(r["coefficient"]))
    return out, proba


def predict_carriers(lineages: Sequence[Lineage], carrier_ids: set[int], codes: Mapping[str, Sequence[torch.Tensor]],
                     steps: Sequence[int], sites: Sequence[str], hierarchies: Mapping[int, Hierarchy],
                     cutoff: float, mcfg: MatchConfig, pcfg: PredictConfig, seed: int = 0,
                     token_ids_N: torch.Tensor | None = None, special_N: torch.Tensor | None = None) -> Prediction:
    """Carriers vs count-matched non-carriers alive at onset (born by the early cut-off)."""
    pos = [lin for lin in lineages if lin.lineage_id in carrier_ids]
    pool = [lin for lin in lineages if lin.lineage_id not in carrier_ids and steps[lin.birth_index] <= cutoff]
    rng = np.random.default_rng(seed)
    n_neg = min(len(pool), pcfg.neg_per_pos * len(pos))
    neg = [pool[i] for i in sorted(rng.choice(len(pool), size=n_neg, replace=False))] if n_neg else []
    chosen = pos + neg
    cols = [FEATURES.index(f) for f in pcfg.features]
    X_all = np.asarray([onset_features(lin, codes, steps, sites, hierarchies, token_ids_N, special_N, mcfg, pcfg)
                        for lin in chosen]) if chosen else np.zeros((0, len(FEATURES)))
    X = X_all[:, cols]
    y = np.asarray([1] * len(pos) + [0] * len(neg))
    scores, proba = classify(X, y, pcfg, seed, pcfg.features)
    return Prediction(scores["fold_accuracy"], scores["fold_auc"], float(np.mean(scores["fold_accuracy"])),
                      scores["null_accuracy_mean"], scores["p_value"], [lin.lineage_id for lin in chosen],
                      y.tolist(), proba.tolist(), scores["n_folds"], X.tolist(), list(pcfg.features),
                      float(np.mean(scores["fold_auc"])), scores["null_auc_mean"], scores["p_value_auc"],
                      scores["importance"])

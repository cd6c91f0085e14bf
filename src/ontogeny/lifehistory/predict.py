"""Predict which lineages become carriers from their firing at onset only ("function precedes direction").

PROPOSAL (spec A9, the least certain part). Statistics of the first `onset_checkpoints` checkpoints of
each lineage. Default (`PredictConfig.features`): onset firing only: firing share, mean and max code
when firing, entropy of the token ids it fires on, share of firings on special tokens (BOS,
punctuation; a mask the caller supplies). Optional: hierarchy degree at onset, layer, log onset step,
and first_r (r of the lineage's first transition: transition-derived, it overlaps the carrier label
"stable at every transition", so it is off by default). No decoder geometry. Labels: carriers vs
count-matched non-carriers alive by the early window's end. Standardised L2 logistic regression,
stratified k-fold accuracy and AUC, each beside a label-permutation null (p = (1 + #null >= observed) /
(1 + n), as sklearn's permutation_test_score); which statistics carry the prediction: each one's standardised coefficient
and its own single-statistic AUC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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


def classify(X: np.ndarray, y: np.ndarray, cfg: PredictConfig, seed: int = 0,
             names: Sequence[str] | None = None) -> tuple[dict, np.ndarray]:
    """Stratified k-fold logistic regression on (X, y): scores, their permutation nulls, feature weights,
    and the out-of-fold probabilities."""
    y = np.asarray(y).astype(int)
    X = np.asarray(X, dtype=float)
    n_min = int(min((y == 0).sum(), (y == 1).sum()))
    if n_min < 2:
        raise ConfigError(f"carrier prediction needs at least 2 examples of each class, got {n_min}")
    folds = min(cfg.n_folds, n_min)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.C, max_iter=1000))
    scores = cross_validate(model, X, y, cv=cv, scoring=("accuracy", "roc_auc"))
    proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
    out = {"fold_accuracy": scores["test_accuracy"].tolist(), "fold_auc": scores["test_roc_auc"].tolist(),
           "n_folds": folds, "null_accuracy_mean": None, "p_value": None, "null_auc_mean": None,
           "p_value_auc": None}
    if cfg.n_permutations:  # one label permutation scores both metrics (permutation_test_score's p-value)
        rng = np.random.default_rng(seed)
        null = [cross_validate(model, X, rng.permutation(y), cv=cv, scoring=("accuracy", "roc_auc"))
                for _ in range(cfg.n_permutations)]
        for metric, key, pkey in (("accuracy", "null_accuracy_mean", "p_value"),
                                  ("roc_auc", "null_auc_mean", "p_value_auc")):
            obs = float(np.mean(scores[f"test_{metric}"]))
            vals = np.array([float(np.mean(n[f"test_{metric}"])) for n in null])
            out.update({key: float(vals.mean()), pkey: float((1 + (vals >= obs).sum()) / (1 + len(vals)))})
    coef = model.fit(X, y)[-1].coef_[0]
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    out["importance"] = sorted(
        ({"feature": n, "coefficient": float(c),
          "single_auc": float(roc_auc_score(y, X[:, i])) if np.ptp(X[:, i]) > 0 else 0.5}
         for i, (n, c) in enumerate(zip(names, coef))), key=lambda r: -abs(r["coefficient"]))
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

"""Carrier prediction: the Newton logistic regression and AUC against sklearn, nulls, no label leakage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import ONSET_FEATURES, PredictConfig
from ontogeny.lifehistory.predict import auc, classify, fit_logistic


def test_newton_logistic_equals_sklearn_and_auc_equals_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(int)
    for C in (0.1, 1.0, 10.0):
        w, b = fit_logistic(X, y, C)
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, y)
        np.testing.assert_allclose(w, ref.coef_[0], atol=1e-5)
        assert b == pytest.approx(ref.intercept_[0], abs=1e-5)
    s = rng.normal(size=80).round(1)  # ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_separable_onset_statistics_give_perfect_folds():
    rng = np.random.default_rng(0)
    y = np.array([1] * 25 + [0] * 25)
    X = rng.normal(size=(50, 4))
    X[:, 0] = 10 * y + rng.random(50)  # carriers fire far more often at onset: a clean margin
    scores, proba = classify(X, y, PredictConfig(n_permutations=10), seed=0, names=list("abcd"))
    assert scores["fold_accuracy"] == [1.0] * 5 and scores["n_folds"] == 5 and scores["fold_auc"] == [1.0] * 5
    assert scores["p_value"] == pytest.approx(1 / 11) and scores["p_value_auc"] == pytest.approx(1 / 11)
    assert scores["null_auc_mean"] < 0.8
    assert ((proba > 0.5) == y).all()
    assert scores["importance"][0]["feature"] == "a" and scores["importance"][0]["single_auc"] == 1.0


def test_independent_labels_score_near_chance():
    rng = np.random.default_rng(1)
    y = rng.permutation(np.array([1] * 100 + [0] * 100))
    X = rng.normal(size=(200, 6))
    scores, _ = classify(X, y, PredictConfig(n_permutations=20), seed=0)
    assert 0.35 < np.mean(scores["fold_accuracy"]) < 0.65 and 0.35 < np.mean(scores["fold_auc"]) < 0.65
    assert scores["p_value"] > 0.05 and scores["p_value_auc"] > 0.05
    assert abs(scores["null_auc_mean"] - 0.5) < 0.1


def test_too_few_carriers_raise_and_folds_shrink_to_the_smaller_class():
    with pytest.raises(ConfigError, match="2 examples"):
        classify(np.zeros((5, 2)), np.array([1, 0, 0, 0, 0]), PredictConfig())
    X = np.r_[np.zeros((3, 1)), np.ones((3, 1))]
    scores, _ = classify(X, np.array([0, 0, 0, 1, 1, 1]), PredictConfig(n_permutations=0))
    assert scores["n_folds"] == 3 and scores["fold_accuracy"] == [1.0] * 3
    with pytest.raises(ConfigError, match="unknown"):
        PredictConfig(features=("firing_frac", "decoder_norm"))


def test_default_features_are_onset_firing_only():
    cfg = PredictConfig()
    assert cfg.features == ONSET_FEATURES and "first_r" not in cfg.features and "onset_degree" not in cfg.features


def test_planted_carriers_are_predicted_from_onset_firing(analysed):
    lh, _ = analysed
    p = lh.prediction
    assert p is not None and sum(p.labels) == len(lh.carriers)
    assert p.features == list(ONSET_FEATURES) and len(p.X[0]) == len(ONSET_FEATURES)
    assert p.auc >= 0.8 and p.null_auc_mean < p.auc  # planted carriers fire twice as often from the start
    assert p.importance[0]["feature"] in ("firing_frac", "max_act", "mean_act")

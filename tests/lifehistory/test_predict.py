"""Carrier prediction: perfect on separable data, chance on labels independent of the features."""

from __future__ import annotations

import numpy as np
import pytest

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import PredictConfig
from ontogeny.lifehistory.predict import FEATURES, classify


def test_separable_onset_statistics_give_perfect_folds():
    rng = np.random.default_rng(0)
    y = np.array([1] * 25 + [0] * 25)
    X = rng.normal(size=(50, 4))
    X[:, 0] = 10 * y + rng.random(50)  # carriers fire far more often at onset: a clean margin
    scores, proba = classify(X, y, PredictConfig(n_permutations=10), seed=0)
    assert scores["fold_accuracy"] == [1.0] * 5 and scores["n_folds"] == 5
    assert scores["p_value"] == pytest.approx(1 / 11)
    assert ((proba > 0.5) == y).all()


def test_independent_labels_score_near_chance():
    rng = np.random.default_rng(1)
    y = rng.permutation(np.array([1] * 100 + [0] * 100))
    X = rng.normal(size=(200, 6))
    scores, _ = classify(X, y, PredictConfig(n_permutations=10), seed=0)
    assert 0.35 < np.mean(scores["fold_accuracy"]) < 0.65
    assert scores["p_value"] > 0.05


def test_too_few_carriers_raise_and_folds_shrink_to_the_smaller_class():
    with pytest.raises(ConfigError, match="2 examples"):
        classify(np.zeros((5, 2)), np.array([1, 0, 0, 0, 0]), PredictConfig())
    X = np.r_[np.zeros((3, 1)), np.ones((3, 1))]
    scores, _ = classify(X, np.array([0, 0, 0, 1, 1, 1]), PredictConfig(n_permutations=0))
    assert scores["n_folds"] == 3 and scores["fold_accuracy"] == [1.0] * 3


def test_planted_carriers_are_predicted_from_onset_firing(analysed):
    lh, _ = analysed
    p = lh.prediction
    assert p is not None and sum(p.labels) == len(lh.carriers)
    assert len(p.X[0]) == len(FEATURES)
    assert p.accuracy >= 0.8  # planted carriers fire twice as often as anything else from the start

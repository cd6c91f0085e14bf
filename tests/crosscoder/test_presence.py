"""Presence classes for any K against hand-built patterns, tau sensitivity, and the 'no effect' class."""

from __future__ import annotations

import numpy as np
import pytest

from ontogeny.crosscoding.planted import presence_patterns
from ontogeny.crosscoding.presence import (NO_EFFECT, class_order, effect_classes, pattern_name, presence,
                                           presence_classes, sensitivity)
from ontogeny.errors import ConfigError


def names(k):
    return [f"s{m}" for m in range(k)]


def test_pattern_names_for_four_checkpoints():
    n = names(4)
    assert pattern_name([1, 1, 1, 1], n) == "shared"
    assert pattern_name([0, 0, 1, 1], n) == "emerging at s2"
    assert pattern_name([1, 1, 0, 0], n) == "discontinued after s1"
    assert pattern_name([0, 1, 0, 0], n) == "transient at s1"
    assert pattern_name([0, 1, 1, 0], n) == "transient s1-s2"
    assert pattern_name([1, 0, 0, 1], n) == "intermittent s0+s3"
    assert pattern_name([0, 0, 0, 0], n) == "none"
    assert pattern_name([0, 1], names(2)) == "emerging at s1"
    assert pattern_name([1, 0], names(2)) == "discontinued after s0"


@pytest.mark.parametrize("k", [2, 3, 4, 5, 8])
def test_shared_is_reachable_for_any_k(k):
    """The paper's one-vs-all cut (every value >= 0.3) cannot call a latent shared at K >= 4; presence can."""
    norms = np.ones((1, k)) * np.linspace(0.9, 1.1, k)[None]
    assert presence_classes(norms, names(k))[0] == "shared"
    rel = norms / norms.sum(1, keepdims=True)
    assert (rel.min() >= 0.3) == (k <= 3)


def test_presence_is_relative_to_own_max_and_tau_is_a_parameter():
    norms = np.array([[2.0, 0.5, 0.0], [0.0, 0.0, 0.0], [1.0, 0.35, 0.29]])
    np.testing.assert_array_equal(presence(norms, 0.3), [[1, 0, 0], [0, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(presence(norms, 0.2), [[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(presence(norms * 7.0, 0.3), presence(norms, 0.3))    # scale-free per latent
    with pytest.raises(ConfigError, match="tau"):
        presence(norms, 0.0)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_planted_patterns_cover_every_contiguous_class(k):
    pats = presence_patterns(k, n_shared=1, n_each=1)
    got = {pattern_name(p, names(k)) for p in pats}
    want = {"shared"} | {f"emerging at s{j}" for j in range(1, k)} | {f"discontinued after s{j}" for j in range(k - 1)} \
        | {f"transient at s{j}" for j in range(1, k - 1)}
    assert got == want
    assert want <= set(class_order(names(k)))


def test_sensitivity_counts_and_monotone_sharing():
    rng = np.random.default_rng(0)
    norms = rng.uniform(0, 1, size=(200, 4))
    rows = sensitivity(norms, names(4), [0.1, 0.5, 0.9])
    by = {}
    for r in rows:
        by.setdefault(r["tau"], {})[r["class"]] = r["latents"]
    assert all(sum(c.values()) == 200 for c in by.values())
    # a latent present everywhere at tau stays so at any smaller tau
    assert by[0.1].get("shared", 0) >= by[0.5].get("shared", 0) >= by[0.9].get("shared", 0)


def test_effect_classes_no_effect_below_floor():
    ie = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0, 0.5, 0.6], [0.3, 0.3, 0.3]])
    got = list(effect_classes(ie, names(3), floor=0.02))
    assert got == [NO_EFFECT, NO_EFFECT, "emerging at s1", "shared"]
    assert list(effect_classes(ie, names(3), floor=0.0))[1] == "discontinued after s0"

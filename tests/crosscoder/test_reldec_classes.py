"""RelDec/RelIE ratios, classes and taxonomy against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ontogeny.crosscoding.reldec import (checkpoint_pairs, class_names, classify, decoder_norms, pairwise,
                                         relative, taxonomy)
from ontogeny.errors import ConfigError


def test_decoder_norms_and_ratios_match_hand_values():
    W = torch.zeros(3, 2, 4)
    W[0, 0, 0], W[0, 1, 1] = 3.0, 1.0   # mostly the earlier checkpoint
    W[1, 0, :2] = torch.tensor([3.0, 4.0])   # norm 5 ...
    W[1, 1, 2] = 5.0                    # ... and 5: shared
    W[2, 1, 3] = 2.0                    # only the later checkpoint
    norms = decoder_norms(W)
    np.testing.assert_allclose(norms, [[3, 1], [5, 5], [0, 2]])
    np.testing.assert_allclose(pairwise(norms)[:, 0], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(relative(norms)[:, 1], [0.25, 0.5, 1.0])
    assert list(class_names(pairwise(norms)[:, 0])) == ["discontinued", "shared", "emerging"]


def test_three_way_pairs_follow_paper_order_and_zero_sums():
    assert checkpoint_pairs(2) == [(0, 1)]
    assert checkpoint_pairs(3) == [(0, 1), (1, 2), (0, 2)]
    v = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(pairwise(v), [[2 / 3, 3 / 5, 3 / 4], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(relative(v, empty=0.5), [[1 / 6, 2 / 6, 3 / 6], [0.5, 0.5, 0.5]])


def test_classify_cuts_are_strict_and_parameters():
    np.testing.assert_array_equal(classify(np.array([0.29, 0.3, 0.7, 0.71])), [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(classify(np.array([0.15, 0.25]), low=0.2, high=0.8), [0.0, 0.5])
    with pytest.raises(ConfigError, match="low"):
        classify(np.array([0.5]), low=0.8, high=0.2)


def test_taxonomy_three_way():
    rel = np.array([[0.8, 0.1, 0.1], [0.34, 0.33, 0.33], [0.5, 0.45, 0.05], [0.6, 0.2, 0.2],
                    [0.05, 0.15, 0.8]])
    got = list(taxonomy(rel, ["A", "B", "C"]))
    assert got == ["A specific", "A-B-C shared", "A-B shared", "others", "C specific"]

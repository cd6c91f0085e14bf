"""Matching adjacent checkpoints: correlation and Hungarian against brute force, planted events exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import MatchConfig
from ontogeny.lifehistory.match import correlation, decoder_cosine, hungarian, match_checkpoints


def test_correlation_matches_numpy_corrcoef_including_constant_columns():
    gen = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(500, 6, generator=gen))
    b = torch.relu(torch.randn(500, 4, generator=gen))
    b[:, 2] = 0.0  # a dead feature: r defined as 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.corrcoef(a.numpy().T, b.numpy().T)[:6, 6:]
    ref[:, 2] = 0.0
    got = correlation(a, b, chunk=97)  # odd chunk: the accumulation over row blocks must not matter
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_decoder_cosine_is_cosine_of_rows():
    a, b = torch.tensor([[3.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(decoder_cosine(a, b), [[0, -1], [2 ** -0.5, -(2 ** -0.5)]], atol=1e-12)


def test_hungarian_equals_brute_force_on_restricted_rectangles():
    rng = np.random.default_rng(0)
    for _ in range(20):
        score = rng.normal(size=(6, 7))
        rows, cols = np.array([0, 2, 3, 5]), np.array([1, 2, 4, 5, 6])
        mi, mj = hungarian(score, rows, cols)
        best = max(sum(score[r, c] for r, c in zip(rows, perm)) for perm in itertools.permutations(cols, len(rows)))
        assert score[mi, mj].sum() == pytest.approx(best)
        assert set(mi) <= set(rows) and set(mj) <= set(cols) and len(set(mj)) == len(mj)


def _f1(truth: set, got: set) -> float:
    tp = len(truth & got)
    return 2 * tp / (len(truth) + len(got)) if truth or got else 1.0


def test_planted_events_recovered_exactly_on_clean_data(planted, as_events):
    cfg = MatchConfig(n_null=0)
    kinds_seen = set()
    for site in planted.sites:
        for t in range(len(planted.steps) - 1):
            m = match_checkpoints(planted.codes[site][t], planted.codes[site][t + 1], planted.W_dec[site][t],
                                  planted.W_dec[site][t + 1], cfg)
            truth = {e for e in planted.events if e[0] == site and e[1] == t}
            assert as_events(m, site, t) == truth, (site, t)
            kinds_seen |= {e[2] for e in truth}
    assert kinds_seen == {"stable", "transformed", "died", "born", "split", "merge"}


def test_planted_events_f1_high_under_noise(planted_noisy, as_events):
    cfg = MatchConfig(n_null=0)
    truth, got = set(), set()
    for site in planted_noisy.sites:
        for t in range(len(planted_noisy.steps) - 1):
            m = match_checkpoints(planted_noisy.codes[site][t], planted_noisy.codes[site][t + 1], None, None, cfg)
            got |= as_events(m, site, t)
    truth = planted_noisy.events
    non_stable = {e for e in truth if e[2] != "stable"}
    assert _f1(truth, got) >= 0.97
    assert _f1(non_stable, {e for e in got if e[2] != "stable"}) >= 0.9


def test_permutation_null_gives_no_chance_matches_where_planted_has_many(planted):
    site = planted.sites[0]
    cfg = MatchConfig(n_null=5)
    m = match_checkpoints(planted.codes[site][-2], planted.codes[site][-1], None, None, cfg, seed=3)
    assert m.counts()["stable"] >= 25
    assert m.null["null_stable_mean"] == 0.0 and m.null["null_continuing_p95"] == 0.0
    assert 0.0 < m.null["null_r_p95"] < cfg.transformed_r


def test_decoder_signal_agrees_with_activation_matching_on_planted(planted):
    site = planted.sites[1]
    m = match_checkpoints(planted.codes[site][-2], planted.codes[site][-1], planted.W_dec[site][-2],
                          planted.W_dec[site][-1], MatchConfig(n_null=0))
    assert m.direction_agree == 1.0
    unchanged = [cos for _, _, r, cos, _ in m.pairs if r > 0.999]  # same atom on both sides
    assert len(unchanged) >= 25 and np.allclose(unchanged, 1.0)


def test_bad_thresholds_and_mismatched_tokens_raise():
    with pytest.raises(ConfigError, match="transformed_r"):
        MatchConfig(stable_r=0.3, transformed_r=0.4)
    with pytest.raises(ConfigError, match="different token sets"):
        correlation(torch.zeros(10, 2), torch.zeros(11, 2))


def test_sparse_fast_path_equals_dense_reference():
    gen = torch.Generator().manual_seed(1)
    pre = torch.randn(3000, 200, generator=gen)
    v, i = pre.topk(4, dim=1)
    a = torch.zeros(3000, 200).scatter_(1, i, v.relu())
    b = torch.roll(a, 7, dims=1) * 2 + (torch.rand(3000, 200, generator=gen) < 0.01).float()
    dense = correlation(a, b, sparse=False, chunk=1000)
    fast = correlation(a, b, sparse=True)
    np.testing.assert_allclose(fast, dense, atol=1e-12)
    assert correlation(a, b) is not None and np.abs(fast).max() > 0.5

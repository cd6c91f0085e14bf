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


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.2])
def test_births_deaths_splits_merges_f1_with_default_parameters(planted_all, as_events, noise):
    ps = planted_all[noise]
    got = set()
    for site in ps.sites:
        for t in range(len(ps.steps) - 1):
            got |= as_events(match_checkpoints(ps.codes[site][t], ps.codes[site][t + 1], ps.W_dec[site][t],
                                               ps.W_dec[site][t + 1], MatchConfig(n_null=0)), site, t)
    for kind in ("born", "died", "split", "merge"):
        truth = {e for e in ps.events if e[2] == kind}
        assert len(truth) >= 50, kind
        assert _f1(truth, {e for e in got if e[2] == kind}) >= 0.95, (noise, kind)
    assert _f1(ps.events, got) >= 0.97


def test_split_children_share_the_parent_support_and_correlate(planted):
    """The planted siblings correlate strongly (so a sibling-correlation guard would call them born);
    detection from the parent's side still finds them."""
    site = planted.sites[0]
    rs = []
    for t in range(len(planted.steps) - 1):
        m = match_checkpoints(planted.codes[site][t], planted.codes[site][t + 1], planted.W_dec[site][t],
                              planted.W_dec[site][t + 1], MatchConfig(n_null=0))
        cont = {i: j for i, j, _, _, _ in m.pairs}
        for i, j, _, _ in m.splits:
            rs.append(float(correlation(planted.codes[site][t + 1][:, [cont[i]]],
                                        planted.codes[site][t + 1][:, [j]])[0, 0]))
    assert len(rs) >= 20 and min(rs) > 0.5


def test_nested_newborn_is_born_not_split_and_decoders_decide():
    """A feature born inside a continuing parent with its own direction is a birth; with the parent's
    direction it is a split; without decoders only the overlap is tested (a split)."""
    gen = torch.Generator().manual_seed(0)
    n = 2000
    par = torch.zeros(n)
    par[:400] = torch.rand(400, generator=gen) + 0.5
    child = torch.zeros(n)
    child[:100] = par[:100]
    other = torch.zeros(n)
    other[1000:1100] = 1.0
    a = torch.stack([par, other], 1)
    b = torch.stack([par, other, child], 1)
    W_a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for child_dir, want in (([0.0, 0.0, 1.0], "born"), ([0.9, 0.1, 0.0], "split")):
        W_b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], child_dir])
        m = match_checkpoints(a, b, W_a, W_b, MatchConfig(n_null=0))
        kinds = {"born": [j for j, *_ in m.born], "split": [j for _, j, *_ in m.splits]}
        assert kinds[want] == [2], (want, m)
    m = match_checkpoints(a, b, None, None, MatchConfig(n_null=0))
    assert [j for _, j, *_ in m.splits] == [2]
    m = match_checkpoints(a, b, None, None, MatchConfig(n_null=0, split_overlap=1.0))
    assert [j for _, j, *_ in m.splits] == [2]  # the child lies entirely inside the parent


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
    assert m.direction_agree >= 0.95
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

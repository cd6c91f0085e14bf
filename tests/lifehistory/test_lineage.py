"""Lineages chained from matches equal the planted ones; Kaplan-Meier equals the product-limit formula."""

from __future__ import annotations

import numpy as np
import pytest

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import MatchConfig
from ontogeny.lifehistory.lineage import build_lineages, kaplan_meier, lifespan, settling
from ontogeny.lifehistory.match import match_checkpoints


def planted_lineages(ps, site):
    """Truth: {(birth index, slot at birth): (origin, fate, last index)} from the planted atoms."""
    K = len(ps.steps)
    atoms = {a.uid: a for a in ps.atoms[site]}
    root = {}
    for a in sorted(atoms.values(), key=lambda a: a.start):
        root[a.uid] = a.uid if a.origin in ("initial", "born", "split") else root[a.parent]
    absorbed = {a.absorbed for a in atoms.values() if a.origin == "merge-target"}
    out = {}
    for r in set(root.values()):
        members = [atoms[u] for u, rr in root.items() if rr == r]
        last = max(members, key=lambda a: a.end)
        fate = "censored" if last.end == K - 1 else ("merged" if last.uid in absorbed else "died")
        first = atoms[r]
        origin = "initial" if first.start == 0 else first.origin
        out[(first.start, ps.slots[site][first.start][r])] = (origin, fate, last.end)
    return out


@pytest.fixture(scope="module")
def lineages(planted):
    cfg = MatchConfig(n_null=0)
    out = {}
    for site in planted.sites:
        ms = [match_checkpoints(planted.codes[site][t], planted.codes[site][t + 1], planted.W_dec[site][t],
                                planted.W_dec[site][t + 1], cfg)
              for t in range(len(planted.steps) - 1)]
        out[site] = build_lineages(site, ms)
    return out


def test_lineages_equal_planted_births_fates_and_ends(planted, lineages):
    for site in planted.sites:
        got = {(lin.birth_index, lin.features[0]): (lin.origin, lin.fate, lin.end_index) for lin in lineages[site]}
        assert got == planted_lineages(planted, site)


def test_split_children_name_their_parent_and_merges_their_target(lineages):
    lins = [lin for site in lineages for lin in lineages[site]]
    by_id = {(lin.site, lin.lineage_id): lin for lin in lins}
    splits = [lin for lin in lins if lin.origin == "split"]
    merged = [lin for lin in lins if lin.fate == "merged"]
    assert splits and merged
    for lin in splits:  # the parent was alive just before the child was born
        parent = by_id[(lin.site, lin.parent)]
        assert parent.birth_index < lin.birth_index <= parent.end_index + 1
    for lin in merged:  # the target is alive just after
        target = by_id[(lin.site, lin.merged_into)]
        assert target.birth_index <= lin.end_index + 1 <= target.end_index


def _product_limit(d, o):
    """Reference Kaplan-Meier written out: S(t) = prod over event times t_i <= t of (1 - d_i / n_i)."""
    times = np.unique(d[o])
    s, out = 1.0, []
    for t in times:
        at_risk = (d >= t).sum()
        deaths = ((d == t) & o).sum()
        s *= 1 - deaths / at_risk
        out.append(s)
    return times, np.array(out)


def test_kaplan_meier_matches_product_limit_with_censoring():
    rng = np.random.default_rng(0)
    d = rng.integers(1, 12, size=200).astype(float)
    o = rng.random(200) < 0.6
    t, s = kaplan_meier(d, o)
    rt, rs = _product_limit(d, o)
    np.testing.assert_allclose(t[1:], rt)
    np.testing.assert_allclose(s[1:], rs, atol=1e-12)
    assert (t[0], s[0]) == (0.0, 1.0)


def test_kaplan_meier_without_censoring_is_empirical_survival_and_all_censored_is_one():
    d = np.array([1.0, 2, 2, 3, 5])
    t, s = kaplan_meier(d, np.ones(5, bool))
    np.testing.assert_allclose(s[1:], [0.8, 0.4, 0.2, 0.0])
    t, s = kaplan_meier(d, np.zeros(5, bool))
    assert list(s) == [1.0]


def test_lifespans_in_checkpoints_and_steps(planted, lineages):
    steps = planted.steps
    for lin in lineages[planted.sites[0]]:
        n, obs = lifespan(lin, steps, "checkpoints")
        assert n == lin.end_index - lin.birth_index + 1 and obs == (lin.fate != "censored")
        span, _ = lifespan(lin, steps, "steps")
        end = steps[lin.end_index + 1] if obs else steps[-1]
        assert span == end - steps[lin.birth_index]
    with pytest.raises(ConfigError, match="unit"):
        lifespan(lineages[planted.sites[0]][0], steps, "days")


def test_settling_unchanged_lineages_settle_at_birth(planted, lineages):
    site = planted.sites[0]
    out = settling(lineages[site], planted.codes[site], planted.W_dec[site], planted.steps, MatchConfig())
    unchanged = [lin for lin in lineages[site] if lin.end_index == len(planted.steps) - 1 and lin.r
                 and min(lin.r) > 0.999 and min(lin.cos) > 0.999]
    assert len(unchanged) >= 20
    for lin in unchanged:
        assert out[lin.lineage_id] == (planted.steps[lin.birth_index], planted.steps[lin.birth_index])
    changed = [lin for lin in lineages[site] if lin.end_index == len(planted.steps) - 1 and "transformed" in lin.classes]
    assert changed
    for lin in changed:  # the function cannot have settled before its last transform
        last = lin.birth_index + len(lin.classes) - 1 - lin.classes[::-1].index("transformed")
        assert out[lin.lineage_id][0] >= planted.steps[last + 1]

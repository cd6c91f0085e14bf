"""The hierarchy against brute force (same token and ±window), the knee, planted carriers and recruitment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ontogeny.lifehistory.config import MatchConfig, ScaffoldConfig
from ontogeny.lifehistory.scaffold import hierarchy, knee, persistent, select_carriers, site_layer
from ontogeny.lifehistory.synthetic import planted_series


def _brute(B, layers, T, w, tau_in, tau_out, min_cofire):
    """Edges by loops: 'near' = same token within a layer, within ±w tokens of one sequence across layers."""
    N, F = B.shape
    want = set()
    for p in range(F):
        for c in range(F):
            if p == c or layers[p] > layers[c]:
                continue
            ww = w if layers[p] != layers[c] else 0

            def near(x, y):  # tokens where y is active and x is active within ±ww in y's sequence
                out = 0
                for n in np.flatnonzero(B[:, y]):
                    s0 = (n // T) * T
                    lo, hi = max(s0, n - ww), min(s0 + T - 1, n + ww)
                    out += bool(B[lo:hi + 1, x].any())
                return out
            j_in, j_out = near(p, c), near(c, p)
            if j_in >= min_cofire and j_in / B[:, c].sum() >= tau_in and j_out / B[:, p].sum() <= tau_out:
                want.add((p, c))
    return want


@pytest.mark.parametrize("w", [0, 1, 2])
def test_hierarchy_edges_equal_brute_force_with_window(w):
    gen = torch.Generator().manual_seed(0)
    T, S = 20, 30
    n = T * S
    parent = torch.rand(n, generator=gen) < 0.4
    child = parent & (torch.rand(n, generator=gen) < 0.1)            # nested: P(parent|child) = 1
    shifted = torch.roll(child, 1) & (torch.arange(n) % T != 0)      # one token after a child token
    loose = parent & (torch.rand(n, generator=gen) < 0.3) | (torch.rand(n, generator=gen) < 0.05)
    other = torch.rand(n, generator=gen) < 0.2
    a = torch.stack([parent, other], 1).float()
    b = torch.stack([child, loose, shifted], 1).float()
    codes = {"blocks.0.hook_resid_post": a, "blocks.1.hook_resid_post": b}
    alive = {s: np.ones(c.shape[1], bool) for s, c in codes.items()}
    scfg = ScaffoldConfig(tau_in=0.9, tau_out=0.5, min_cofire=1, window=w)
    h = hierarchy(codes, alive, list(codes), MatchConfig(), scfg, seq_len=T)
    B = torch.cat([a, b], 1).bool().numpy()
    want = _brute(B, [0, 0, 1, 1, 1], T, w, 0.9, 0.5, 1)
    assert {(p, c) for p, c, _, _ in h.edges()} == want
    assert (2, 0) not in want and (4, 0) not in want  # never upward
    if w <= 1:  # a wider window makes the child look general (P(child near parent | parent) grows)
        assert (0, 2) in want and ((0, 4) in want) == (w == 1)  # the shifted child needs the window


def test_activity_threshold_drops_weak_firings():
    x = torch.zeros(100, 2)
    x[:50, 0] = 1.0
    x[:10, 1] = 1.0
    x[60:70, 1] = 0.05  # weak firings outside the parent
    codes, alive = {"blocks.0.x": x}, {"blocks.0.x": np.ones(2, bool)}
    loose = hierarchy(codes, alive, ["blocks.0.x"], MatchConfig(), ScaffoldConfig(min_cofire=1))
    strict = hierarchy(codes, alive, ["blocks.0.x"], MatchConfig(), ScaffoldConfig(min_cofire=1, active_threshold=0.1))
    assert loose.n_edges == 0 and [(p, c) for p, c, _, _ in strict.edges()] == [(0, 1)]


def test_knee_of_plateaus_decays_and_flat_curves():
    assert knee([3, 3, 3, 3, 3, 3, 1]) == 6
    assert knee([3, 3, 3, 3, 3, 3, 1, 1, 1, 1]) == 6
    assert knee([5, 5, 5]) == 3 and knee([4, 3]) == 2
    assert knee([100, 40, 12, 5, 3, 2, 1, 1, 1]) in (2, 3)  # decay then tail: the elbow
    assert knee([6, 5, 4, 3, 2, 1]) == 6                     # a straight line has no knee


def test_site_layer_parses_names_and_falls_back_to_order():
    assert site_layer("blocks.7.attn.hook_z", 0) == 7 and site_layer("embed", 3) == 3


def _pr(got, truth):
    tp = len(got & truth)
    return (tp / len(got) if got else 0.0), tp / len(truth)


def test_planted_carriers_precision_recall_with_defaults(planted, analysed, planted_noisy, analysed_noisy):
    for ps, (lh, _) in ((planted, analysed), (planted_noisy, analysed_noisy)):
        precision, recall = _pr({(c.site, c.feature) for c in lh.carriers}, ps.carriers)
        assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_planted_recruitment_equals_its_planted_value_and_beats_the_null(planted, analysed):
    lh, _ = analysed
    final = lh.recruitment[-1]
    n_car = len(planted.carriers)
    want = (len(planted.scaffold_final) - n_car) / (final["n_alive"] - n_car)  # children / alive non-carriers
    assert final["recruitment"] == pytest.approx(want)
    assert lh.scaffold_final == planted.scaffold_final
    assert lh.recruitment_null.size == 50 and lh.recruitment_null.mean() < 0.5 * want
    assert lh.recruitment[0]["recruitment"] < final["recruitment"]  # children are born over training
    lineages = {lin.lineage_id: lin for lin in lh.lineages}
    assert all(lineages[i].lineage_id not in {c.lineage_id for c in lh.carriers} for i in lh.recruited_step)


def test_no_hierarchy_means_no_recruitment(lh_tools):
    run, fast_defaults = lh_tools
    ps = planted_series(n_children=0, n_tokens=2000, seed=3)
    lh, _ = run(ps)
    assert lh.hierarchies[len(ps.steps) - 1].n_edges == 0
    assert lh.carriers == [] and lh.recruitment[-1]["recruitment"] == 0.0
    # even when every persistent lineage is made a carrier, nothing is recruited
    cfg = fast_defaults().model_copy(update={"scaffold": ScaffoldConfig(min_reach=0, selection="fixed")})
    lh0, _ = run(ps, cfg)
    assert len(lh0.carriers) == min(50, len(lh0.persistent_ids)) >= 10
    assert lh0.recruitment[-1]["recruitment"] == 0.0 and float(lh0.recruitment_null.max()) == 0.0


def test_sensitivity_table_and_carrier_curve(analysed):
    lh, cfg = analysed
    grid = {(r["tau_in"], r["active_threshold"]) for r in lh.sensitivity}
    assert len(grid) == len(lh.sensitivity) >= 24
    default = [r for r in lh.sensitivity if r["is_default"]]
    assert len(default) == 1 and default[0]["n_carriers"] == len(lh.carriers)
    assert default[0]["n_edges"] == lh.hierarchies[len(lh.inputs.steps) - 1].n_edges
    for act in {r["active_threshold"] for r in lh.sensitivity}:  # stricter tau_in never adds edges
        e = [r["n_edges"] for r in sorted((r for r in lh.sensitivity if r["active_threshold"] == act),
                                          key=lambda r: r["tau_in"])]
        assert e == sorted(e, reverse=True)
    curve = lh.carrier_curve
    assert [r["n_carriers"] for r in curve] == list(range(1, len(lh.persistent_ids) + 1))
    assert sum(r["chosen"] for r in curve) == len(lh.carriers)
    assert curve[len(lh.carriers) - 1]["recruitment_final"] == pytest.approx(lh.recruitment[-1]["recruitment"])


def test_fixed_selection_and_min_reach(planted, analysed):
    lh, _ = analysed
    K = len(planted.steps) - 1
    pers = persistent(lh.lineages, planted.steps, lh.cutoff)
    many = select_carriers(pers, lh.hierarchies[K], planted.steps, ScaffoldConfig(selection="fixed"))
    assert {(c.site, c.feature) for c in many} == planted.carriers  # decoys have reach 0
    loose = select_carriers(pers, lh.hierarchies[K], planted.steps,
                           ScaffoldConfig(selection="fixed", min_reach=0, n_carriers=500))
    assert len(loose) == len(pers) > len(many)
    two = select_carriers(pers, lh.hierarchies[K], planted.steps, ScaffoldConfig(selection="fixed", n_carriers=2))
    assert [c.rank for c in two] == [1, 2] and all(a.reach >= b.reach for a, b in zip(many, many[1:]))

"""The co-activation hierarchy against brute force; planted carriers, scaffold and recruitment exactly."""

from __future__ import annotations

import numpy as np
import torch

from ontogeny.lifehistory.config import MatchConfig, ScaffoldConfig
from ontogeny.lifehistory.scaffold import candidates, hierarchy, select_carriers, site_layer


def test_hierarchy_edges_equal_brute_force_conditional_probabilities():
    gen = torch.Generator().manual_seed(0)
    n = 400
    parent = torch.rand(n, generator=gen) < 0.4
    child = parent & (torch.rand(n, generator=gen) < 0.3)            # nested: P(parent|child) = 1
    loose = parent & (torch.rand(n, generator=gen) < 0.3) | (torch.rand(n, generator=gen) < 0.05)
    other = torch.rand(n, generator=gen) < 0.2
    a = torch.stack([parent, other], 1).float()
    b = torch.stack([child, loose], 1).float()
    codes = {"blocks.0.hook_resid_post": a, "blocks.1.hook_resid_post": b}
    alive = {s: np.ones(2, bool) for s in codes}
    scfg = ScaffoldConfig(tau_in=0.9, tau_out=0.5, min_cofire=1)
    h = hierarchy(codes, alive, list(codes), MatchConfig(), scfg)
    B = torch.cat([a, b], 1).bool()
    layers = [0, 0, 1, 1]
    want = set()
    for p in range(4):
        for c in range(4):
            joint = int((B[:, p] & B[:, c]).sum())
            if p != c and layers[p] <= layers[c] and joint >= 1 and joint / B[:, c].sum() >= 0.9 \
                    and joint / B[:, p].sum() <= 0.5:
                want.add((p, c))
    assert {(p, c) for p, c, _, _ in h.edges()} == want
    assert (0, 2) in want and (2, 0) not in want  # parent -> nested child, never upward


def test_site_layer_parses_names_and_falls_back_to_order():
    assert site_layer("blocks.7.attn.hook_z", 0) == 7 and site_layer("embed", 3) == 3


def test_planted_carriers_scaffold_and_recruitment_exact(planted, analysed):
    lh, _ = analysed
    assert {(c.site, c.feature) for c in lh.carriers} == planted.carriers
    assert lh.scaffold_final == planted.scaffold_final
    final = lh.recruitment[-1]
    assert final["recruitment"] == len(planted.scaffold_final) / final["n_alive"]
    n_alive = sum(int((planted.codes[s][-1].abs() > 0).any(0).sum()) for s in planted.sites)
    assert final["n_alive"] == n_alive
    # carriers' children are born over training, so recruitment at the start is lower than at the end
    assert lh.recruitment[0]["recruitment"] < final["recruitment"]


def test_min_reach_keeps_only_organising_lineages(planted, analysed):
    lh, _ = analysed
    K = len(planted.steps) - 1
    cands = candidates(lh.lineages, planted.steps, lh.cutoff)
    many = select_carriers(cands, lh.hierarchies[K], planted.steps, ScaffoldConfig(n_carriers=50))
    assert {(c.site, c.feature) for c in many} == planted.carriers  # decoys have reach 0
    loose = select_carriers(cands, lh.hierarchies[K], planted.steps, ScaffoldConfig(n_carriers=50, min_reach=0))
    assert len(loose) == len(cands) > len(many)
    assert [c.rank for c in many] == list(range(1, len(many) + 1))
    assert all(a.reach >= b.reach for a, b in zip(many, many[1:]))

"""Function precedes direction: first crossings by hand, and the planted series."""

from __future__ import annotations

import torch

from ontogeny.lifehistory.config import MatchConfig, PrecedenceConfig
from ontogeny.lifehistory.lineage import build_lineages
from ontogeny.lifehistory.match import match_checkpoints
from ontogeny.lifehistory.precedence import precedence, precedence_summary


def test_function_reaches_its_final_form_before_direction_by_hand():
    """One feature: its firing equals the final one from checkpoint 1, its decoder row only from 3."""
    gen = torch.Generator().manual_seed(0)
    n = 500
    final = torch.relu(torch.randn(n, generator=gen))
    early = torch.relu(torch.randn(n, generator=gen))
    codes = [early.clone()[:, None]] + [final.clone()[:, None] for _ in range(4)]
    for k in range(1, 5):
        codes[k] = codes[k] + 0.01 * torch.rand(n, 1, generator=gen) * (codes[k] > 0)
    d_final = torch.tensor([[1.0, 0.0]])
    W = [torch.tensor([[0.0, 1.0]])] * 3 + [d_final, d_final]
    steps = [0, 10, 20, 30, 40]
    cfg = MatchConfig(n_null=0, stable_r=0.0, transformed_r=0.0)  # keep it one lineage whatever r is
    ms = [match_checkpoints(codes[k], codes[k + 1], W[k], W[k + 1], cfg) for k in range(4)]
    (lin,) = build_lineages("s", ms)
    (p,) = precedence([lin], codes, W, steps, PrecedenceConfig())
    assert (p.function_step, p.direction_step, p.lag_steps, p.lag_checkpoints) == (10, 30, 20, 2)
    s = precedence_summary([p])
    assert s["function_first"] == 1.0 and s["function_first_null"] == 0.5 and s["median_lag_checkpoints"] == 2.0
    none = precedence([lin], codes, None, steps, PrecedenceConfig())[0]
    assert none.direction_step is None and precedence_summary([none])["note"].startswith("not measured")


def test_planted_unchanged_lineages_match_at_birth(analysed):
    lh, _ = analysed
    by_id = {lin.lineage_id: lin for lin in lh.lineages}
    unchanged = [p for p in lh.precedence if by_id[p.lineage_id].r and min(by_id[p.lineage_id].r) > 0.999]
    assert len(unchanged) >= 20
    assert all(p.lag_checkpoints == 0 and p.function_step == p.birth_step for p in unchanged)

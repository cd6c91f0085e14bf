"""Turnover rates and the early/late ratio against hand-computed values and the planted event counts."""

from __future__ import annotations

import pytest

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import PhaseConfig
from ontogeny.lifehistory.turnover import early_cutoff, phase_ratio, turnover_table


def test_rates_and_ratios_by_hand():
    steps = [0, 1, 2, 4, 100, 200, 300]
    early = {"born": 2, "died": 1, "transformed": 1, "stable": 6}
    late = {"born": 1, "died": 1, "stable": 8}
    counts = {"s": [early, early, late, late, late, late]}
    rows = turnover_table(steps, counts, PhaseConfig(early_frac=0.01))
    assert early_cutoff(steps, PhaseConfig(early_frac=0.01)) == 3.0
    assert [r.early for r in rows if r.site == "s"] == [True, True, False, False, False, False]  # 2->4 straddles
    assert rows[0].rate == 4.0 and rows[0].churn == 0.4
    late_rates = [2 / 2, 2 / 96, 2 / 100, 2 / 100]
    ph = phase_ratio(rows, "s")
    assert ph["ratio"] == pytest.approx(4.0 / (sum(late_rates) / 4))
    assert ph["ratio_step_weighted"] == pytest.approx((8 / 2) / (8 / 298))
    assert phase_ratio(rows, "all") == ph  # one site: pooled equals it


def test_total_steps_moves_the_cutoff_and_bad_steps_raise():
    steps = [0, 10, 20, 40]
    counts = {"s": [{"born": 1}] * 3}
    rows = turnover_table(steps, counts, PhaseConfig(early_frac=0.5, total_steps=40))
    assert [r.early for r in rows if r.site == "s"] == [True, True, False]
    with pytest.raises(ConfigError, match="increase"):
        turnover_table([0, 5, 5], {"s": [{}, {}]}, PhaseConfig())
    with pytest.raises(ConfigError, match="transitions"):
        turnover_table([0, 5, 6], {"s": [{}]}, PhaseConfig())


def test_pooled_turnover_equals_planted_event_counts(planted, analysed):
    lh, _ = analysed
    for t in range(len(planted.steps) - 1):
        row = next(r for r in lh.turnover if r.site == "all" and r.transition == t)
        want = {k: sum(planted.event_counts(s, t)[k] for s in planted.sites)
                for k in ("stable", "transformed", "died", "born", "split", "merge")}
        assert {k: getattr(row, k) for k in want} == want
        assert row.rate == pytest.approx(row.events / (planted.steps[t + 1] - planted.steps[t]))
    assert lh.phase["all"]["ratio"] > 10  # planted: 3x the events on 1-step transitions early

"""Turnover against hand-computed values, the spacing nulls on synthetic constant-rate series, windows."""

from __future__ import annotations

import numpy as np
import pytest

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import PhaseConfig
from ontogeny.lifehistory.turnover import (
    early_cutoff,
    null_band,
    null_events,
    phase_summary,
    ratios,
    turnover_table,
    window,
)

PYTHIA = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))  # the 154 revisions


def test_rates_and_ratios_by_hand():
    steps = [0, 1, 2, 4, 100, 200, 300]
    early = {"born": 2, "died": 1, "transformed": 1, "stable": 6}
    late = {"born": 1, "died": 1, "stable": 8}
    counts = {"s": [early, early, late, late, late, late]}
    cfg = PhaseConfig(early_frac=0.01)
    rows = turnover_table(steps, counts, cfg)
    assert early_cutoff(steps, cfg) == 3.0
    assert [r.early for r in rows if r.site == "s"] == [True, True, False, False, False, False]  # 2->4 straddles
    assert rows[0].rate == 4.0 and rows[0].churn == 0.4
    late_rates = [2 / 2, 2 / 96, 2 / 100, 2 / 100]
    ph = phase_summary(rows, steps, cfg, "s")
    assert ph["ratio"] == pytest.approx(4.0 / (sum(late_rates) / 4))
    assert ph["ratio_step_weighted"] == pytest.approx((8 / 2) / (8 / 298))
    assert ph["early_mean_churn"] == pytest.approx(0.4) and ph["late_mean_churn"] == pytest.approx(0.2)
    # constant-events null on this grid: mean(1/Δ) early / mean(1/Δ) late, by hand
    assert ph["ratio_null_constant"] == pytest.approx(1.0 / np.mean([1 / 2, 1 / 96, 1 / 100, 1 / 100]))
    assert ph["excess_constant"] == pytest.approx(ph["ratio"] / ph["ratio_null_constant"])
    assert phase_summary(rows, steps, cfg, "all") == {**ph}


@pytest.mark.parametrize("grid", ["planted", "pythia"])
@pytest.mark.parametrize("null", ["constant", "logspan"])
def test_a_series_following_a_null_has_excess_one(grid, null):
    """Synthetic constant-rate series: as many events per transition as the null says (times any scale)."""
    steps = PYTHIA if grid == "pythia" else [0, 1, 2, 4, 8, 16, 32, 64, 100, 1000, 2000, 4000, 6000, 8000, 10000]
    ev = 37.0 * null_events(steps, null)
    counts = {"s": [{"born": int(round(e * 1000)), "stable": 5} for e in ev]}
    cfg = PhaseConfig()
    ph = phase_summary(turnover_table(steps, counts, cfg), steps, cfg, "s", "from_start")
    assert ph[f"excess_{null}"] == pytest.approx(1.0, rel=1e-3)
    assert ph[f"excess_step_weighted_{null}"] == pytest.approx(1.0, rel=1e-3)
    assert ph["ratio"] > 10  # the raw per-step ratio is large from spacing alone


def test_constant_events_on_log_grid_give_the_issue_numbers():
    """Spacing alone: constant events per transition on Pythia's 154 revisions give a ratio in the hundreds."""
    r = ratios(PYTHIA, null_events(PYTHIA, "constant"), window(PYTHIA, PhaseConfig(), "from_start"))
    assert 200 < r["ratio"] < 350


def test_warmup_window_and_empty_window_says_so_in_words():
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 100, 200, 400, 800, 1500]
    counts = {"s": [{"born": 3, "stable": 10}] * 12}
    cfg = PhaseConfig(warmup_steps=100)
    assert window(steps, cfg, "after_warmup") == (100.0, 115.0) and window(steps, cfg, "from_start") == (0.0, 15.0)
    rows = turnover_table(steps, counts, cfg)
    assert {r.phase for r in rows if r.step_to <= 100} == {"warmup"}
    ph = phase_summary(rows, steps, cfg, "s")
    assert ph["ratio"] is None and "no transition lies inside the early window (100, 115]" in ph["note"]
    longer = PhaseConfig(warmup_steps=100, early_steps=300)
    ph = phase_summary(turnover_table(steps, counts, longer), steps, longer, "s")
    assert ph["n_early"] == 2 and ph["n_late"] == 2 and ph["note"] is None  # 100->200->400 early; 400->800->1500 late
    assert ph["excess_constant"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="window"):
        window(steps, cfg, "middle")


def test_null_band_brackets_its_nulls_and_bad_steps_raise():
    steps = [0, 1, 2, 4, 8, 100, 1000]
    counts = {"s": [{"born": b} for b in (5, 4, 6, 3, 8, 9)]}
    rows = turnover_table(steps, counts, PhaseConfig())
    band = null_band(rows, steps, "s")
    assert len(band) == 6
    for b in band:
        assert b["band_low"] <= min(b["rate_null_constant"], b["rate_null_logspan"]) + 1e-12
        assert b["band_high"] >= max(b["rate_null_constant"], b["rate_null_logspan"]) - 1e-12
    assert sum(b["rate_null_constant"] * (b["step_to"] - b["step_from"]) for b in band) == pytest.approx(35)
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
    head = lh.phase["after_warmup"]["all"]  # warm-up 0: both windows are the same
    assert head == {**lh.phase["from_start"]["all"], "window": "after_warmup"}
    # planted: 3 events of each kind early, 1 late -> above the spacing nulls, by about 3x per transition
    assert head["excess_constant"] > 1.5 and head["excess_logspan"] > 1.5

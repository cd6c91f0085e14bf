"""When a head forms (change point over checkpoints) and where the census measures ablations."""

from __future__ import annotations

import pytest

from ontogeny.census.heads import ablation_steps, change_point, formation

STEPS = [0, 1, 2, 4, 8, 16, 32, 64, 100, 200, 300, 400, 500, 600, 700, 800]


def test_change_point_finds_a_planted_jump_between_two_checkpoints():
    values = [0.05 + 0.001 * i for i in range(12)] + [0.7, 0.72, 0.71, 0.73]  # jump between 400 and 500
    cp = change_point(STEPS, values)
    assert (cp["from_step"], cp["step"]) == (400, 500)
    assert cp["before"] == pytest.approx(sum(values[:12]) / 12)
    assert cp["after"] == pytest.approx(sum(values[12:]) / 4)
    assert cp["jump_share"] > 0.9  # almost all of the rise in one interval: abrupt


def test_change_point_of_a_ramp_is_not_abrupt_and_order_does_not_matter():
    values = [i / len(STEPS) for i in range(len(STEPS))]
    cp = change_point(list(reversed(STEPS)), list(reversed(values)))
    assert cp["jump_share"] < 0.2  # a linear ramp spreads the rise over every interval
    assert cp["from_step"] < cp["step"]
    assert change_point([0, 1], [0.0, 1.0])["step"] is None


def test_ablation_steps_keep_the_last_and_spread_the_rest():
    picked = ablation_steps(STEPS, 4)
    assert len(picked) == 4 and picked[-1] == 800 and picked == sorted(picked)
    assert len(set(picked)) == 4
    assert ablation_steps(STEPS, None) == STEPS and ablation_steps(STEPS[:3], 5) == STEPS[:3]
    assert ablation_steps([5, 1, 3], 1) == [5]


def test_formation_follows_the_head_that_is_best_at_the_end():
    rows = []
    for i, step in enumerate(STEPS):
        for head, score in ((0, 0.2), (1, 0.05 if step < 300 else 0.6)):  # head 1 forms at 300
            rows.append({"step": step, "layer": 1, "head": head, "component": f"l1h{head}", "period": 11,
                         "offset": 0, "prev_token": 0.0, "duplicate_token": 0.0, "prefix_matching": 0.0,
                         "induction": score, "best_offset": 10, "best_offset_score": score, "best_shift": 0,
                         "ablation_copy_increase": None})
    f = formation(rows, "induction", layer=1)
    assert f["component"] == "l1h1" and (f["from_step"], f["step"]) == (200, 300)
    assert f["jump_share"] == pytest.approx(1.0)


def test_default_census_probes_only_periods_the_default_series_never_trained():
    from ontogeny.census.heads import CensusConfig
    from ontogeny.series.train import SeriesConfig

    series, census = SeriesConfig(), CensusConfig()
    assert not set(census.periods) & set(series.synthetic.train_periods)
    assert set(census.periods) == set(series.induction_periods)  # the series' own log scores the same ones
    assert any(p < series.synthetic.max_period for p in census.periods)  # a short held-out period ...
    assert any(p > series.synthetic_context // 2 for p in census.periods)  # ... and one never fitting a row
    assert census.probes(series.context)  # they fit the model's context

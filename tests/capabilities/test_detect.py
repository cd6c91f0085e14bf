import numpy as np
import pytest

from ontogeny.capabilities.detect import (
    abruptness,
    biggest_jump,
    change_points,
    first_crossing,
    logistic_fit,
    mad_sigma,
    power_law_fit,
    thresholds_between,
)
from ontogeny.capabilities.events import capability_events, threshold_step
from ontogeny.errors import ConfigError


def noisy(levels_and_lengths, sigma, seed):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, v, dtype=float) for v, n in levels_and_lengths])
    return y + sigma * rng.standard_normal(len(y))


@pytest.mark.parametrize("seed", range(5))
def test_one_jump_is_found_exactly(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(5, 35))
    y = noisy([(0.1, k), (0.8, 40 - k)], 0.05, seed)
    assert biggest_jump(y) == k
    assert change_points(y, n_bkps=1, method="dynp") == [k]


@pytest.mark.parametrize("method", ["pelt", "binseg"])
def test_several_jumps_are_found(method):
    exact = 0
    for seed in range(10):
        y = noisy([(0.0, 15), (1.0, 12), (0.4, 10), (2.0, 13)], 0.1, seed)
        kw = {"n_bkps": 3} if method == "binseg" else {}
        exact += change_points(y, method=method, **kw) == [15, 27, 37]
    assert exact >= 8  # 10-sigma jumps; a rare 2-point noise dip may still look like a regime
    y = noisy([(0.0, 15), (1.0, 12), (0.4, 10), (2.0, 13)], 0.1, 0)
    assert change_points(y, n_bkps=3, method="dynp") == [15, 27, 37]


def test_default_penalty_finds_no_jump_in_pure_noise():
    false = sum(len(change_points(noisy([(0.0, 60)], 1.0, s))) for s in range(20))
    assert false <= 2
    assert mad_sigma(noisy([(0.0, 4000)], 0.3, 0)) == pytest.approx(0.3, rel=0.05)


def test_abruptness_separates_a_step_from_a_ramp():
    steps = np.arange(0, 1000, 10.0)
    step = np.where(steps >= 500, 1.0, 0.0)
    ab = abruptness(steps, step, 50)
    assert ab["abrupt"] and ab["delta"] == pytest.approx(1.0) and ab["width"] == 0.0
    ramp = steps / steps[-1]
    k = biggest_jump(ramp)
    ab2 = abruptness(steps, ramp, k)
    assert not ab2["abrupt"] and ab2["width_ratio"] > 0.5
    assert not ab2["resolution_limited"]
    with pytest.raises(ConfigError, match="empty side"):
        abruptness(steps, step, 0)


def test_a_jump_within_one_coarse_interval_is_resolution_limited_not_abrupt():
    # checkpoints every 50 steps; the capability rises between 300 and 350 with one point half-way up:
    # the width rule (width / step <= 0.1) cannot pass at this spacing, the grid limit is said instead
    steps = np.arange(0, 650, 50.0)
    y = np.where(steps >= 350, 1.0, 0.0)
    y[steps == 300] = 0.5
    ab = abruptness(steps, y, int(np.nonzero(steps == 350)[0][0]))
    assert ab["width"] == 50.0 and ab["spacing"] == 50.0
    assert not ab["abrupt"] and ab["resolution_limited"]
    slow = np.clip((steps - 100) / 400, 0, 1)  # the same rise spread over 400 steps
    ab_slow = abruptness(steps, slow, biggest_jump(slow))
    assert not ab_slow["abrupt"] and not ab_slow["resolution_limited"]


def test_logistic_fit_recovers_planted_midpoint_and_width():
    t = np.linspace(0, 2000, 201)
    y = 0.2 + 0.6 / (1 + np.exp(-(t - 1300) / 40))
    fit = logistic_fit(t, y)
    assert fit["t0"] == pytest.approx(1300, rel=1e-3)
    assert fit["tau"] == pytest.approx(40, rel=1e-2)
    assert fit["delta"] == pytest.approx(0.6, rel=1e-3)


def test_thresholds_crossings_and_power_law():
    assert thresholds_between(0.7, 0.0, [0.5, 1.0]) == pytest.approx([0.35, 0.0])
    steps = [0, 10, 20, 30, 40]
    y = [0.7, 0.3, 0.6, 0.2, 0.1]
    assert first_crossing(steps, y, 0.35) == 10
    assert first_crossing(steps, y, 0.35, persist=2) == 30
    assert first_crossing(steps, y, 0.05) is None
    S = np.array([4, 8, 16, 32])
    fit = power_law_fit(S, 3.0 * S**1.7)
    assert (
        fit["a"] == pytest.approx(1.7) and fit["b"] == pytest.approx(3.0) and fit["r2"] == pytest.approx(1.0)
    )


def test_capability_events_on_a_log_spaced_series():
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 3000]
    acc = [0.0, 0.02, 0.01, 0.0, 0.03, 0.02, 0.01, 0.94, 0.96, 0.95, 0.94, 0.96, 0.95, 0.95]
    rows = [{"step": s, "acc": a, "flat": 0.5} for s, a in zip(steps, acc)]
    ev = {e["metric"]: e for e in capability_events(rows, thresholds={"acc": 0.5})}
    assert ev["acc"]["jump_step"] == 64 and ev["acc"]["abrupt"]
    assert ev["acc"]["all_jumps"] == [64]
    assert ev["acc"]["threshold_step"] == 48.0  # midpoint of the last failing and first passing checkpoint
    assert ev["flat"]["all_jumps"] == []
    assert threshold_step(steps, [0.0] * 13 + [1.0], 0.5, persist=2) is None

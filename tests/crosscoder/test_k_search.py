"""The descending k search (KSearch) on FVU curves with a known knee, including the lag after each change
of k, and on a real BatchTopK crosscoder: the saved k is the searched one."""

from __future__ import annotations

import math

import pytest
import torch

from ontogeny.dictionaries.crosscoder import CrossCoderConfig
from ontogeny.dictionaries.ksearch import KSearch


def _run(search: KSearch, fvu_of_k, lag: float = 0.0, steps: int = 2000) -> KSearch:
    """Feed the search one FVU per step: fvu_of_k(k) plus a transient `lag * exp(-t / 10)` after each change
    of k (not at the first k, which stands for a model trained at it for a while)."""
    since, k = 10 ** 6, search.k
    for step in range(steps):
        if search.k != k:
            since, k = 0, search.k
        search.observe(torch.tensor(fvu_of_k(k) + lag * math.exp(-since / 10)), step)
        since += 1
        if search.done:
            break
    return search


def _cfg(**kw) -> CrossCoderConfig:
    return CrossCoderConfig(n_sources=2, d_in=8, d_sae=64, rule="batchtopk", **{"k": 32, "k_search_phase_steps": 20,
                                                                                   **kw})


@pytest.mark.parametrize("true_l0", [1, 2, 3, 5, 7])
def test_search_stops_at_the_knee(true_l0):
    """Flat FVU (0.01 plus a slight fall with k) from the true L0 up, a large loss below it."""
    knee = lambda k: 0.01 * (1 + 0.02 * (32 - k) / 32) if k >= true_l0 else 0.01 + 0.3 * (true_l0 - k) / true_l0
    s = _run(KSearch(_cfg()), knee, lag=0.05)
    assert s.done and s.ok == true_l0, s.trials
    assert s.trials[0]["k"] == 32 and all(t["k"] >= 1 for t in s.trials)


def test_plateau_wait_is_what_saves_a_lagging_k():
    """Right after k is lowered the FVU is high for a while; judging each phase at a fixed short length
    (plateau 0 with at most 2 windows is the same as `k_search_plateau` = 0.99) would reject good ks."""
    knee = lambda k: 0.01 if k >= 3 else 0.3
    assert _run(KSearch(_cfg()), knee, lag=0.2).ok == 3
    assert _run(KSearch(_cfg(k_search_plateau=0.99)), knee, lag=0.2).ok > 3


def test_tolerances_are_parameters():
    """A power-law FVU (no knee): a looser tolerance accepts smaller k."""
    power = lambda k: 0.2 * k ** -0.5
    strict = _run(KSearch(_cfg(k_search_rel_tol=0.1, k_search_abs_tol=0.0)), power).ok
    loose = _run(KSearch(_cfg(k_search_rel_tol=1.0, k_search_abs_tol=0.0)), power).ok
    assert strict >= 24 and loose < strict / 2
    assert _run(KSearch(_cfg(k_search_max_phases=1)), power).trials[-1]["k"] == 32


def test_noise_free_fvu_falling_to_zero_still_ends_phases_and_budget_caps_the_search():
    """At noise 0 the FVU keeps falling geometrically (never a 5% plateau): phases end on the absolute
    slack. With too few steps left, the search stops at the smallest k already accepted, not mid-phase."""
    s = KSearch(_cfg())
    t = 0
    while not s.done and t < 5000:
        s.observe(torch.tensor(1e-3 * 0.97 ** t if s.k >= 3 else 0.3), t, total_steps=10_000)
        t += 1
    assert s.done and s.ok == 3 and t < 600, (t, s.trials)
    s = KSearch(_cfg())
    for t in range(150):
        s.observe(torch.tensor(0.01), t, total_steps=200)
    assert s.done and s.k == s.ok == s.trials[-1]["k"] and s.k < 32

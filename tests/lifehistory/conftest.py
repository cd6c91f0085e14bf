"""Planted life-history series shared by the life-history tests (built once per session).

Each series goes through the real encoder path (`synthetic.planted_series`: activations -> a ReLU
`Dictionary` -> codes). Three seeds at noise 0, 0.1 and 0.2; the analyses use DEFAULT parameters except
the sizes of the matching null and of the prediction's permutation null (they report, they decide nothing).
"""

from __future__ import annotations

import pytest
import torch

from ontogeny.lifehistory.synthetic import planted_series

torch.set_num_threads(1)

SEEDS_NOISE = ((0, 0.0), (1, 0.1), (2, 0.2))


@pytest.fixture(scope="session")
def planted():
    """Clean planted series: 2 sites, 15 checkpoints, 3 carriers per site, every event kind planted."""
    return planted_series(seed=0)


@pytest.fixture(scope="session")
def planted_mid():
    return planted_series(seed=1, noise=0.1)


@pytest.fixture(scope="session")
def planted_noisy():
    """Another seed with intensity noise, spurious firings and activation noise at the top level (0.2)."""
    return planted_series(seed=2, noise=0.2)


@pytest.fixture(scope="session")
def planted_all(planted, planted_mid, planted_noisy):
    return {0.0: planted, 0.1: planted_mid, 0.2: planted_noisy}


@pytest.fixture(scope="session")
def as_events():
    """The function turning a Match into planted-truth tuples."""
    return recovered_events


def recovered_events(match, site: str, t: int) -> set[tuple[str, int, str, int, int]]:
    """A Match as the (site, t, kind, i, j) tuples the planted truth uses."""
    got = {(site, t, cls, i, j) for i, j, _, _, cls in match.pairs}
    got |= {(site, t, "died", i, -1) for i, _, _, _ in match.died}
    got |= {(site, t, "born", -1, j) for j, _, _, _ in match.born}
    got |= {(site, t, "split", i, j) for i, j, _, _ in match.splits}
    got |= {(site, t, "merge", i, j) for i, j, _, _ in match.merges}
    return got


def fast_defaults():
    """LifeHistoryConfig with every default except the two null sizes (speed only)."""
    from ontogeny.lifehistory.config import LifeHistoryConfig

    return LifeHistoryConfig.model_validate({"match": {"n_null": 2}, "predict": {"n_permutations": 20},
                                            "scaffold": {"n_null": 50}})


def run(ps, cfg=None):
    from ontogeny.lifehistory.analysis import LifeHistoryInputs, analyse

    cfg = cfg or fast_defaults()
    return analyse(LifeHistoryInputs(ps.steps, ps.sites, ps.codes, ps.W_dec, seq_len=ps.seq_len), cfg), cfg


@pytest.fixture(scope="session")
def analysed(planted):
    """The full analysis of the clean planted series with default parameters."""
    return run(planted)


@pytest.fixture(scope="session")
def analysed_noisy(planted_noisy):
    return run(planted_noisy)


@pytest.fixture(scope="session")
def lh_tools():
    """(run, fast_defaults): analyse a planted series; the default config with small nulls."""
    return run, fast_defaults

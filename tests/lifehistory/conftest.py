"""Planted life-history series shared by the life-history tests (built once per session)."""

from __future__ import annotations

import pytest
import torch

from ontogeny.lifehistory.synthetic import planted_series

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def planted():
    """Clean planted series: 2 sites, 15 checkpoints, 3 carriers per site, every event kind planted."""
    return planted_series(seed=0)


@pytest.fixture(scope="session")
def planted_noisy():
    """The same design with intensity noise and spurious firings."""
    return planted_series(seed=1, noise=0.3)


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


@pytest.fixture(scope="session")
def analysed(planted):
    """The full analysis of the clean planted series, carriers count = planted count."""
    from ontogeny.lifehistory.analysis import LifeHistoryInputs, analyse
    from ontogeny.lifehistory.config import LifeHistoryConfig

    cfg = LifeHistoryConfig.model_validate({"match": {"n_null": 2}, "scaffold": {"n_carriers": len(planted.carriers)},
                                            "predict": {"n_permutations": 0}})
    return analyse(LifeHistoryInputs(planted.steps, planted.sites, planted.codes, planted.W_dec), cfg), cfg

"""Chain per-transition matches into lineages: a feature's identity followed across the whole series.

A lineage starts when a feature is alive at the first checkpoint, is born, or splits off a parent;
it continues through stable and transformed matches and ends when it dies or merges into another
lineage (or is right-censored at the last checkpoint). Survival is Kaplan-Meier over lifespans with
censoring (scipy.stats.ecdf on CensoredData), as in RDT's compute_feature_survival.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import MatchConfig
from ontogeny.lifehistory.match import Match


@dataclass
class Lineage:
    """One feature's life: where it came from, its feature index at each checkpoint, how it ended."""

    lineage_id: int
    site: str
    birth_index: int
    origin: str                      # initial | born | split
    parent: int = -1                 # lineage it split off (origin == "split")
    features: list[int] = field(default_factory=list)   # feature index at birth_index, birth_index+1, ...
    r: list[float] = field(default_factory=list)        # activation r of each continuing transition
    cos: list[float] = field(default_factory=list)      # decoder cosine of each continuing transition
    classes: list[str] = field(default_factory=list)    # stable | transformed per transition
    fate: str = "censored"           # censored | died | merged
    merged_into: int = -1

    @property
    def end_index(self) -> int:
        """Last checkpoint index at which the lineage is alive."""
        return self.birth_index + len(self.features) - 1

    @property
    def all_stable(self) -> bool:
        return all(c == "stable" for c in self.classes)

    def feature_at(self, k: int) -> int:
        """Feature index at checkpoint k, or -1 when the lineage is not alive there."""
        return self.features[k - self.birth_index] if self.birth_index <= k <= self.end_index else -1


def build_lineages(site: str, matches: Sequence[Match], first_id: int = 0) -> list[Lineage]:
    """Chain the matches of consecutive transitions of one site (matches[t]: checkpoint t -> t+1)."""
    if not matches:
        raise ConfigError(f"site {site!r}: lineages need at least two checkpoints (one transition)")
    lineages: list[Lineage] = []

    def start(k: int, f: int, origin: str, parent: int = -1) -> Lineage:
        lin = Lineage(first_id + len(lineages), site, k, origin, parent, features=[f])
        lineages.append(lin)
        return lin

    node = {int(f): start(0, int(f), "initial") for f in np.flatnonzero(matches[0].alive_a)}
    for t, m in enumerate(matches):
        if set(node) != set(np.flatnonzero(m.alive_a).tolist()):
            raise ConfigError(f"site {site!r}: alive features at checkpoint {t} differ between transitions")
        nxt: dict[int, Lineage] = {}
        for i, j, r, cos, cls in m.pairs:
            lin = node[i]
            lin.features.append(j); lin.r.append(r); lin.cos.append(cos); lin.classes.append(cls)
            nxt[j] = lin
        for i, j, _, _ in m.splits:
            nxt[j] = start(t + 1, j, "split", node[i].lineage_id)
        for j, _, _, _ in m.born:
            nxt[j] = start(t + 1, j, "born")
        for i, _, _, _ in m.died:
            node[i].fate = "died"
        for i, j, _, _ in m.merges:
            node[i].fate = "merged"
            node[i].merged_into = nxt[j].lineage_id
        node = nxt
    return lineages


def lifespan(lin: Lineage, steps: Sequence[int], unit: str = "checkpoints") -> tuple[float, bool]:
    """(duration, observed): checkpoints alive, or steps from birth to death (or to the last step)."""
    observed = lin.fate != "censored"
    if unit == "checkpoints":
        return float(len(lin.features)), observed
    if unit == "steps":
        end = steps[lin.end_index + 1] if observed else steps[-1]
        return float(end - steps[lin.birth_index]), observed
    raise ConfigError(f"unknown lifespan unit {unit!r}: use 'checkpoints' or 'steps'")


def kaplan_meier(durations: Sequence[float], observed: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival S(t) = prod_{t_i <= t} (1 - d_i / n_i), at each distinct event time.

    Returns (times, survival) starting at (0, 1). Deaths and merges are events; lineages alive at the
    last checkpoint are right-censored.
    """
    d = np.asarray(durations, dtype=float)
    o = np.asarray(observed, dtype=bool)
    if d.size == 0 or not o.any():
        return np.array([0.0]), np.array([1.0])
    res = stats.ecdf(stats.CensoredData(uncensored=d[o], right=d[~o]))
    return np.concatenate([[0.0], res.sf.quantiles]), np.concatenate([[1.0], res.sf.probabilities])


def settling(lineages: Sequence[Lineage], codes: Sequence[torch.Tensor], W_dec: Sequence[torch.Tensor] | None,
             steps: Sequence[int], cfg: MatchConfig) -> dict[int, tuple[int | None, int | None]]:
    """When each surviving lineage's function and direction settle for good (PROPOSAL, spec A4).

    With r_k, c_k as in `precedence.trajectories` (r and cosine to the final feature), the function
    settles at the first step from which r_k >= stable_r at every later checkpoint, the direction at the
    first from which c_k >= stable_cos. `precedence.precedence` gives the first crossing instead.
    """
    from ontogeny.lifehistory.precedence import trajectories

    alive, r_LK, c_LK = trajectories(lineages, codes, W_dec)
    return {lin.lineage_id: (_settle(r_LK[n], cfg.stable_r, lin.birth_index, steps),
                             _settle(c_LK[n], cfg.stable_cos, lin.birth_index, steps) if W_dec is not None else None)
            for n, lin in enumerate(alive)}


def _settle(v_K: np.ndarray, thr: float, birth: int, steps: Sequence[int]) -> int | None:
    ok = np.nan_to_num(v_K[birth:], nan=-np.inf) >= thr
    if not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    first = birth + (int(bad[-1]) + 1 if bad.size else 0)
    return int(steps[first])

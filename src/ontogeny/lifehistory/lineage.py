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
    """When each surviving lineage's function and direction settle ("function precedes direction").

    For lineage L alive at the last checkpoint K, r_k = corr(a_{L,k}, a_{L,K}) and c_k = cos(d_{L,k},
    d_{L,K}); the function settles at the first step from which r_k >= stable_r for every later k, the
    direction at the first step from which c_k >= stable_cos. PROPOSAL (spec A4).
    """
    K = len(codes) - 1
    alive = [lin for lin in lineages if lin.end_index == K]
    out: dict[int, tuple[int | None, int | None]] = {}
    if not alive:
        return out
    fin = torch.tensor([lin.features[-1] for lin in alive])
    z_fin = _standardise(codes[K][:, fin])
    d_fin = torch.nn.functional.normalize(W_dec[K][fin].double(), dim=1) if W_dec is not None else None
    r_LK = np.full((len(alive), K + 1), np.nan)
    c_LK = np.full((len(alive), K + 1), np.nan)
    for k in range(K + 1):
        rows = [n for n, lin in enumerate(alive) if lin.birth_index <= k]
        if not rows:
            continue
        f_k = torch.tensor([alive[n].feature_at(k) for n in rows])
        r_LK[rows, k] = (_standardise(codes[k][:, f_k]) * z_fin[:, rows]).mean(0).numpy()
        if d_fin is not None:
            d_k = torch.nn.functional.normalize(W_dec[k][f_k].double(), dim=1)
            c_LK[rows, k] = (d_k * d_fin[rows]).sum(1).numpy()
    for n, lin in enumerate(alive):
        out[lin.lineage_id] = (_settle(r_LK[n], cfg.stable_r, lin.birth_index, steps),
                               _settle(c_LK[n], cfg.stable_cos, lin.birth_index, steps) if d_fin is not None
                               else None)
    return out


def _standardise(x_NF: torch.Tensor) -> torch.Tensor:
    x = x_NF.double()
    sd = x.std(0, unbiased=False)
    return (x - x.mean(0)) / torch.where(sd > 0, sd, torch.ones_like(sd))


def _settle(v_K: np.ndarray, thr: float, birth: int, steps: Sequence[int]) -> int | None:
    ok = np.nan_to_num(v_K[birth:], nan=-np.inf) >= thr
    if not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    first = birth + (int(bad[-1]) + 1 if bad.size else 0)
    return int(steps[first])

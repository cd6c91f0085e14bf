"""Function precedes direction (PROPOSAL, spec A4): does a lineage fire like its final self before it
points like it?

For each lineage alive at the last checkpoint K, with its feature f_k at each checkpoint k it lives:
r_k = Pearson r between its codes at k and at K (same tokens), c_k = cos(d_{f_k}, d_{f_K}) of the decoder
rows. function_step = the first checkpoint step with r_k >= function_r; direction_step = the first with
c_k >= direction_cos; lag = direction - function (in steps and in checkpoints; > 0: function first).
Null: without precedence, function-first and direction-first are equally likely among lineages where
the two differ (two-sided sign test). Lineages born already matching on both have lag 0 and say nothing.
The paper's claim (iii) reads as: lag > 0 for most future carriers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import binomtest

from ontogeny.lifehistory.config import PrecedenceConfig
from ontogeny.lifehistory.lineage import Lineage


def trajectories(lineages: Sequence[Lineage], codes: Sequence[torch.Tensor], W_dec: Sequence[torch.Tensor] | None,
                 ) -> tuple[list[Lineage], np.ndarray, np.ndarray]:
    """(lineages alive at the end, r_LK, c_LK): r and cosine of each to its final feature; NaN where not alive
    (c is all NaN without decoders)."""
    K = len(codes) - 1
    alive = [lin for lin in lineages if lin.end_index == K]
    r_LK = np.full((len(alive), K + 1), np.nan)
    c_LK = np.full((len(alive), K + 1), np.nan)
    if not alive:
        return alive, r_LK, c_LK
    fin = torch.tensor([lin.features[-1] for lin in alive])
    z_fin = _standardise(codes[K][:, fin])
    d_fin = torch.nn.functional.normalize(W_dec[K][fin].double(), dim=1) if W_dec is not None else None
    for k in range(K + 1):
        rows = [n for n, lin in enumerate(alive) if lin.birth_index <= k]
        if not rows:
            continue
        f_k = torch.tensor([alive[n].feature_at(k) for n in rows])
        r_LK[rows, k] = (_standardise(codes[k][:, f_k]) * z_fin[:, rows]).mean(0).numpy()
        if d_fin is not None:
            d_k = torch.nn.functional.normalize(W_dec[k][f_k].double(), dim=1)
            c_LK[rows, k] = (d_k * d_fin[rows]).sum(1).numpy()
    return alive, r_LK, c_LK


def _standardise(x_NF: torch.Tensor) -> torch.Tensor:
    x = x_NF.double()
    sd = x.std(0, unbiased=False)
    return (x - x.mean(0)) / torch.where(sd > 0, sd, torch.ones_like(sd))


def _first(v_K: np.ndarray, thr: float) -> int | None:
    ok = np.flatnonzero(np.nan_to_num(v_K, nan=-np.inf) >= thr)
    return int(ok[0]) if ok.size else None


@dataclass
class Precedence:
    """One lineage's first checkpoint of function and of direction."""

    lineage_id: int
    site: str
    birth_step: int
    function_step: int | None
    direction_step: int | None
    lag_steps: int | None
    lag_checkpoints: int | None


def precedence(lineages: Sequence[Lineage], codes: Sequence[torch.Tensor], W_dec: Sequence[torch.Tensor] | None,
               steps: Sequence[int], cfg: PrecedenceConfig) -> list[Precedence]:
    """Per lineage alive at the end: when function and direction first reach their final form."""
    alive, r_LK, c_LK = trajectories(lineages, codes, W_dec)
    out = []
    for n, lin in enumerate(alive):
        kf, kd = _first(r_LK[n], cfg.function_r), _first(c_LK[n], cfg.direction_cos)
        both = kf is not None and kd is not None
        out.append(Precedence(lin.lineage_id, lin.site, int(steps[lin.birth_index]),
                              int(steps[kf]) if kf is not None else None, int(steps[kd]) if kd is not None else None,
                              int(steps[kd] - steps[kf]) if both else None, int(kd - kf) if both else None))
    return out


def precedence_summary(rows: Sequence[Precedence], group: str = "all") -> dict:
    """Shares of function-first / direction-first / together, the sign-test p-value and the median lag."""
    lags = np.array([r.lag_checkpoints for r in rows if r.lag_checkpoints is not None])
    out = {"group": group, "n_lineages": len(rows), "n_measured": int(lags.size)}
    if not lags.size:
        return {**out, "function_first": None, "direction_first": None, "together": None,
                "function_first_null": 0.5, "sign_p": None, "median_lag_checkpoints": None,
                "note": "not measured: no lineage reaches both thresholds (or no decoders were given)"}
    pos, neg = int((lags > 0).sum()), int((lags < 0).sum())
    p = float(binomtest(pos, pos + neg, 0.5).pvalue) if pos + neg else None
    return {**out, "function_first": pos / lags.size, "direction_first": neg / lags.size,
            "together": float((lags == 0).mean()), "function_first_null": 0.5, "sign_p": p,
            "median_lag_checkpoints": float(np.median(lags)), "note": None}

"""Turnover: how fast features are born, die and reorganise per training step, early vs late.

Per transition t (steps s_t -> s_{t+1}, Δ_t = s_{t+1} - s_t) and site, events E_t = born + died +
transformed + split + merge; rate ρ_t = E_t / Δ_t; churn_t = E_t / (E_t + stable_t) (RDT's churn).
The early phase is the transitions with s_{t+1} <= early_frac * total_steps (a transition straddling
the boundary counts as late, spec A1). Ratio (the paper's "~40x"): mean ρ over early transitions ÷
mean ρ over late ones; the step-weighted ratio is (Σ_early E / Σ_early Δ) ÷ (Σ_late E / Σ_late Δ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import PhaseConfig

EVENT_KINDS = ("born", "died", "transformed", "split", "merge")


@dataclass
class TurnoverRow:
    """Counts and rates of one (site, transition); site "all" pools the sites."""

    site: str
    transition: int
    step_from: int
    step_to: int
    early: bool
    stable: int
    transformed: int
    born: int
    died: int
    split: int
    merge: int
    events: int
    rate: float          # events per training step
    churn: float         # events / (events + stable)


def early_cutoff(steps: Sequence[int], cfg: PhaseConfig) -> float:
    """Last step of the early phase: early_frac x (total_steps or the last checkpoint's step)."""
    total = cfg.total_steps if cfg.total_steps is not None else steps[-1]
    return cfg.early_frac * total


def turnover_table(steps: Sequence[int], counts: Mapping[str, Sequence[Mapping[str, int]]],
                   cfg: PhaseConfig) -> list[TurnoverRow]:
    """One row per (site, transition) plus pooled "all" rows; counts[site][t] from Match.counts()."""
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ConfigError(f"checkpoint steps must increase strictly, got {list(steps)}")
    cut = early_cutoff(steps, cfg)
    rows: list[TurnoverRow] = []
    n_trans = len(steps) - 1
    pooled = [dict.fromkeys(("stable",) + EVENT_KINDS, 0) for _ in range(n_trans)]
    for site, per_t in counts.items():
        if len(per_t) != n_trans:
            raise ConfigError(f"site {site!r}: {len(per_t)} transitions of counts for {len(steps)} checkpoints")
        for t, c in enumerate(per_t):
            rows.append(_row(site, t, steps, c, cut))
            for k in pooled[t]:
                pooled[t][k] += int(c.get(k, 0))
    rows.extend(_row("all", t, steps, pooled[t], cut) for t in range(n_trans))
    return rows


def _row(site: str, t: int, steps: Sequence[int], c: Mapping[str, int], cut: float) -> TurnoverRow:
    e = sum(int(c.get(k, 0)) for k in EVENT_KINDS)
    s = int(c.get("stable", 0))
    delta = steps[t + 1] - steps[t]
    return TurnoverRow(site, t, steps[t], steps[t + 1], steps[t + 1] <= cut, s, int(c.get("transformed", 0)),
                       int(c.get("born", 0)), int(c.get("died", 0)), int(c.get("split", 0)),
                       int(c.get("merge", 0)), e, e / delta, e / (e + s) if e + s else 0.0)


def phase_ratio(rows: Sequence[TurnoverRow], site: str = "all") -> dict[str, float]:
    """Early vs late turnover of one site: mean rates, their ratio and the step-weighted ratio.

    NaN where a phase has no transitions (e.g. a series with no checkpoint inside the early phase).
    """
    sel = [r for r in rows if r.site == site]
    early = [r for r in sel if r.early]
    late = [r for r in sel if not r.early]

    def mean_rate(rs):
        return float(np.mean([r.rate for r in rs])) if rs else float("nan")

    def pooled_rate(rs):
        return sum(r.events for r in rs) / sum(r.step_to - r.step_from for r in rs) if rs else float("nan")

    me, ml, pe, pl = mean_rate(early), mean_rate(late), pooled_rate(early), pooled_rate(late)
    return {"early_mean_rate": me, "late_mean_rate": ml, "ratio": _div(me, ml),
            "early_pooled_rate": pe, "late_pooled_rate": pl, "ratio_step_weighted": _div(pe, pl),
            "early_mean_churn": float(np.mean([r.churn for r in early])) if early else float("nan"),
            "late_mean_churn": float(np.mean([r.churn for r in late])) if late else float("nan"),
            "n_early": float(len(early)), "n_late": float(len(late))}


def _div(a: float, b: float) -> float:
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    return a / b if b > 0 else float("inf") if a > 0 else float("nan")

"""Turnover: how fast features are born, die and reorganise, early vs late, against a spacing null.

Per transition t (steps s_t -> s_{t+1}, Δ_t = s_{t+1} - s_t) and site: events E_t = born + died +
transformed + split + merge; rate ρ_t = E_t / Δ_t; churn_t = E_t / (E_t + stable_t) (RDT's churn,
not divided by steps). The early window is (a, a + L] in training steps, L = early_steps or
early_frac x total steps, a = 0 ("from_start") or a = warmup_steps ("after_warmup"); early transitions
lie inside it (s_t >= a, s_{t+1} <= a + L), late ones start at or after a and end after a + L (a
transition straddling the end counts as late, spec A1). Ratio (the paper's "~40x"): mean ρ early ÷
mean ρ late; step-weighted: (Σ_early E / Σ_early Δ) ÷ (Σ_late E / Σ_late Δ).

Why a null: on log-spaced checkpoints the early Δ_t are tiny, so the per-step ratio is large even when
nothing changes in how features turn over. The same ratio is computed for synthetic event counts on the
same grid: (constant) E_t = c, and (logspan) E_t ∝ ln(1 + s_{t+1}) - ln(1 + s_t), i.e. a constant
rate per log-step. excess = observed ratio / null ratio; excess ≈ 1 means spacing alone explains it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import PhaseConfig

EVENT_KINDS = ("born", "died", "transformed", "split", "merge")
WINDOWS = ("from_start", "after_warmup")
NULLS = ("constant", "logspan")


@dataclass
class TurnoverRow:
    """Counts and rates of one (site, transition); site "all" pools the sites."""

    site: str
    transition: int
    step_from: int
    step_to: int
    early: bool          # inside the headline early window
    phase: str           # early | late | warmup (before the headline window's start)
    stable: int
    transformed: int
    born: int
    died: int
    split: int
    merge: int
    events: int
    rate: float          # events per training step
    churn: float         # events / (events + stable)


def window(steps: Sequence[int], cfg: PhaseConfig, which: str) -> tuple[float, float]:
    """The early window (start, end] in training steps: from step 0 or from the end of warm-up."""
    if which not in WINDOWS:
        raise ConfigError(f"unknown early window {which!r}: use one of {WINDOWS}")
    total = cfg.total_steps if cfg.total_steps is not None else steps[-1]
    length = cfg.early_steps if cfg.early_steps is not None else cfg.early_frac * total
    start = 0.0 if which == "from_start" else float(cfg.warmup_steps or 0)
    return start, start + length


def early_cutoff(steps: Sequence[int], cfg: PhaseConfig) -> float:
    """Last step of the headline early window (carrier candidates must be alive by then)."""
    return window(steps, cfg, cfg.headline)[1]


def phase_of(step_from: int, step_to: int, win: tuple[float, float]) -> str:
    """early (inside the window), late (after its end), or warmup (starts before the window)."""
    a, b = win
    if step_from < a:
        return "warmup"
    return "early" if step_to <= b else "late"


def turnover_table(steps: Sequence[int], counts: Mapping[str, Sequence[Mapping[str, int]]],
                   cfg: PhaseConfig) -> list[TurnoverRow]:
    """One row per (site, transition) plus pooled "all" rows; counts[site][t] from Match.counts()."""
    check_steps(steps)
    win = window(steps, cfg, cfg.headline)
    rows: list[TurnoverRow] = []
    n_trans = len(steps) - 1
    pooled = [dict.fromkeys(("stable",) + EVENT_KINDS, 0) for _ in range(n_trans)]
    for site, per_t in counts.items():
        if len(per_t) != n_trans:
            raise ConfigError(f"site {site!r}: {len(per_t)} transitions of counts for {len(steps)} checkpoints")
        for t, c in enumerate(per_t):
            rows.append(_row(site, t, steps, c, win))
            for k in pooled[t]:
                pooled[t][k] += int(c.get(k, 0))
    rows.extend(_row("all", t, steps, pooled[t], win) for t in range(n_trans))
    return rows


def check_steps(steps: Sequence[int]) -> None:
    if len(steps) < 2 or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ConfigError(f"checkpoint steps must increase strictly (at least two), got {list(steps)}")


def _row(site: str, t: int, steps: Sequence[int], c: Mapping[str, int], win: tuple[float, float]) -> TurnoverRow:
    e = sum(int(c.get(k, 0)) for k in EVENT_KINDS)
    s = int(c.get("stable", 0))
    delta = steps[t + 1] - steps[t]
    ph = phase_of(steps[t], steps[t + 1], win)
    return TurnoverRow(site, t, steps[t], steps[t + 1], ph == "early", ph, s, int(c.get("transformed", 0)),
                       int(c.get("born", 0)), int(c.get("died", 0)), int(c.get("split", 0)),
                       int(c.get("merge", 0)), e, e / delta, e / (e + s) if e + s else 0.0)


def null_events(steps: Sequence[int], kind: str) -> np.ndarray:
    """Events per transition under a spacing null (any scale): constant, or ∝ ln(1+s_{t+1}) - ln(1+s_t)."""
    s = np.asarray(steps, dtype=float)
    if kind == "constant":
        return np.ones(len(s) - 1)
    if kind == "logspan":
        return np.diff(np.log1p(s))
    raise ConfigError(f"unknown turnover null {kind!r}: use one of {NULLS}")


def ratios(steps: Sequence[int], events: Sequence[float], win: tuple[float, float]) -> dict[str, float | None]:
    """Mean-rate and step-weighted early/late ratios of one event series on a grid; None where undefined."""
    d = np.diff(np.asarray(steps, dtype=float))
    e = np.asarray(events, dtype=float)
    ph = [phase_of(steps[t], steps[t + 1], win) for t in range(len(d))]
    early = np.array([p == "early" for p in ph])
    late = np.array([p == "late" for p in ph])
    if not early.any() or not late.any():
        return {"ratio": None, "ratio_step_weighted": None}
    rate = e / d
    return {"ratio": _div(rate[early].mean(), rate[late].mean()),
            "ratio_step_weighted": _div(e[early].sum() / d[early].sum(), e[late].sum() / d[late].sum())}


def phase_summary(rows: Sequence[TurnoverRow], steps: Sequence[int], cfg: PhaseConfig, site: str = "all",
                  which: str | None = None) -> dict[str, Any]:
    """Early vs late turnover of one site in one early window, beside both spacing nulls, in plain numbers.

    Keys: window, n_early, n_late, early/late mean rate and churn, ratio and ratio_step_weighted, for each
    null `ratio_null_<null>` / `ratio_step_weighted_null_<null>` and `excess_<null>` (= ratio / null),
    and `note`: a sentence where the window holds no transition or the late phase has no events.
    """
    which = which or cfg.headline
    win = window(steps, cfg, which)
    sel = sorted((r for r in rows if r.site == site), key=lambda r: r.transition)
    if len(sel) != len(steps) - 1:
        raise ConfigError(f"site {site!r}: {len(sel)} turnover rows for {len(steps)} checkpoints")
    ph = [phase_of(r.step_from, r.step_to, win) for r in sel]
    early = [r for r, p in zip(sel, ph) if p == "early"]
    late = [r for r, p in zip(sel, ph) if p == "late"]
    obs = ratios(steps, [r.events for r in sel], win)
    out: dict[str, Any] = {"window": which, "window_start_step": win[0], "window_end_step": win[1],
                           "n_early": len(early), "n_late": len(late),
                           "early_mean_rate": _mean([r.rate for r in early]),
                           "late_mean_rate": _mean([r.rate for r in late]),
                           "early_mean_churn": _mean([r.churn for r in early]),
                           "late_mean_churn": _mean([r.churn for r in late]), **obs}
    for null in NULLS:
        nr = ratios(steps, null_events(steps, null), win)
        out[f"ratio_null_{null}"] = nr["ratio"]
        out[f"ratio_step_weighted_null_{null}"] = nr["ratio_step_weighted"]
        out[f"excess_{null}"] = _div(obs["ratio"], nr["ratio"])
        out[f"excess_step_weighted_{null}"] = _div(obs["ratio_step_weighted"], nr["ratio_step_weighted"])
    out["note"] = None
    if not early:
        out["note"] = (f"not measured: no transition lies inside the early window ({win[0]:g}, {win[1]:g}] "
                       f"({which.replace('_', ' ')})")
    elif not late:
        out["note"] = f"not measured: no transition ends after the early window's end (step {win[1]:g})"
    elif obs["ratio"] is None:
        out["note"] = "not measured: the late phase has no events (ratio undefined)"
    return out


def null_band(rows: Sequence[TurnoverRow], steps: Sequence[int], site: str = "all",
              q: float = 0.95) -> list[dict[str, float]]:
    """Per transition: the rate each spacing null predicts (scaled to the observed total of events) and
    the central q Poisson range of events / Δ under either null (the band of the turnover figure)."""
    from scipy.stats import poisson

    sel = sorted((r for r in rows if r.site == site), key=lambda r: r.transition)
    total = sum(r.events for r in sel)
    d = np.diff(np.asarray(steps, dtype=float))
    out = []
    mus = {null: total * null_events(steps, null) / null_events(steps, null).sum() for null in NULLS}
    for t, r in enumerate(sel):
        lo = min(float(poisson.ppf((1 - q) / 2, mus[n][t])) for n in NULLS)
        hi = max(float(poisson.ppf((1 + q) / 2, mus[n][t])) for n in NULLS)
        out.append({"step_from": r.step_from, "step_to": r.step_to, "rate": r.rate,
                    **{f"rate_null_{n}": float(mus[n][t] / d[t]) for n in NULLS},
                    "band_low": lo / d[t], "band_high": hi / d[t]})
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def _div(a: float | None, b: float | None) -> float | None:
    """a / b; None where either is missing or b is 0 (a ratio without a denominator is not measured)."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or b == 0:
        return None
    return float(a / b)

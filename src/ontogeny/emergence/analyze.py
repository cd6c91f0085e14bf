"""Sweep analysis: per-config emergence times (spread across seeds), plateau vs S (power law) and the
alignment gain of solved runs; seed 004's qualitative claims are judged in `ontogeny.emergence.claims`.

Censoring: a run that never crosses a threshold counts at its step budget (the paper's convention for
Pythia runs that never solve, spec section 1.6), and its config's solve rate drops.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ontogeny.capabilities.detect import power_law_fit

CONFIG_KEYS = ("task", "S", "s", "arch", "n_heads", "d_head", "bias")


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in CONFIG_KEYS)


def _censored(row: dict[str, Any], col: str) -> float:
    v = row[col]
    return float(row["budget"]) if v is None else float(v)


def by_config(rows: Sequence[dict[str, Any]], col: str = "t_50") -> list[dict[str, Any]]:
    """Per configuration: seeds, solve rate, median / min / max emergence time (censored at the budget),
    the spread max/min over solving seeds, and the median final output loss."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[_key(r)].append(r)
    out = []
    for key, rs in sorted(groups.items(), key=lambda kv: kv[0]):
        times = [_censored(r, col) for r in rs]
        solved = [float(r[col]) for r in rs if r[col] is not None]
        out.append(
            {
                **dict(zip(CONFIG_KEYS, key)),
                "n_seeds": len(rs),
                "solve_rate": len(solved) / len(rs),
                "t_median": statistics.median(times),
                "t_min": min(times),
                "t_max": max(times),
                "spread": (max(solved) / max(min(solved), 1.0)) if len(solved) >= 2 else None,
                "final_loss_out": statistics.median(r["final_loss_out"] for r in rs),
            }
        )
    return out


def select(cfgs, **kw):
    """The per-config rows whose fields equal every keyword."""
    return [c for c in cfgs if all(c[k] == v for k, v in kw.items())]


def plateau_scaling(
    cfgs: Sequence[dict[str, Any]], arch: str = "transformer", s: int = 2, bias: float = 0.0
) -> dict[str, Any]:
    """Fit median emergence time = b S^a over the S values where at least half of the seeds solve."""
    pts = sorted(
        (c["S"], c["t_median"])
        for c in select(cfgs, arch=arch, s=s, bias=bias, task="linear_map")
        if c["solve_rate"] >= 0.5 and (c["n_heads"], c["d_head"]) == modal_pair(cfgs)
    )
    fit = power_law_fit([p[0] for p in pts], [max(p[1], 1.0) for p in pts])
    return {
        "arch": arch,
        "s": s,
        "bias": bias,
        "S": [p[0] for p in pts],
        "t_median": [p[1] for p in pts],
        **fit,
    }


def modal_pair(cfgs):
    """The most common (n_heads, d_head): the sweep's reference width."""
    vals = [(c["n_heads"], c["d_head"]) for c in cfgs]
    return max(set(vals), key=vals.count) if vals else None


def alignment_gain(rows: Sequence[dict[str, Any]], curves: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Parent mass and IoU at step 0 and at the end, for solved and unsolved transformer runs (no bias):
    if emergence is the learning of the sparse pattern, solvers should gain far more alignment."""
    first: dict[str, dict] = {}
    last: dict[str, dict] = {}
    for c in curves:
        if c["run_id"] not in first or c["step"] < first[c["run_id"]]["step"]:
            first[c["run_id"]] = c
        if c["run_id"] not in last or c["step"] > last[c["run_id"]]["step"]:
            last[c["run_id"]] = c
    out = {}
    for label, keep in (("solved", True), ("unsolved", False)):
        ids = [
            r["run_id"]
            for r in rows
            if r["arch"] == "transformer" and r["bias"] == 0 and r["solved"] == keep and r["run_id"] in first
        ]
        for m in ("parent_mass", "iou"):
            out[f"{label}_{m}_start"] = float(np.mean([first[i][m] for i in ids])) if ids else float("nan")
            out[f"{label}_{m}_end"] = float(np.mean([last[i][m] for i in ids])) if ids else float("nan")
        out[f"{label}_n"] = float(len(ids))
    return out

"""Is the scaffold load-bearing? Joint cross-layer ablation of carriers vs count-matched controls.

At the final checkpoint all carriers are removed at every site at once (error terms kept) and the
Δ next-token loss and KL are compared with n_controls random populations of eligible non-scaffold
features, same count per site and matched firing-frequency bins (spec A7, a PROPOSAL). The "per-firing
single-feature" contrast ablates each carrier and n_single random non-scaffold features one at a time
and divides ΔCE (summed over tokens) by the feature's firing count: carriers need not stand out there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ontogeny.causal.ablate import AblationRunner, compare, matched_controls
from ontogeny.lifehistory.analysis import LifeHistory
from ontogeny.lifehistory.config import AblationConfig


def eligible_controls(lh: LifeHistory) -> dict[str, np.ndarray]:
    """Alive features at the last checkpoint that are not in the final scaffold, per site."""
    out = {}
    for site in lh.inputs.sites:
        alive = lh.matches[site][-1].alive_b.copy()
        for s, f in lh.scaffold_final:
            if s == site:
                alive[f] = False
        out[site] = alive
    return out


def carriers_by_site(lh: LifeHistory) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for c in lh.carriers:
        out.setdefault(c.site, []).append(c.feature)
    return out


def load_bearing(runner: AblationRunner, lh: LifeHistory, cfg: AblationConfig, seed: int = 0,
                 progress: Callable[[str, int, int], None] | None = None) -> tuple[list[dict], dict[str, Any]]:
    """Rows of the ablations table and a summary (z-score, percentile, ratio; single-feature contrast)."""
    tick = progress or (lambda stage, done, total: None)
    targets = carriers_by_site(lh)
    rows: list[dict] = []
    if not targets:
        return rows, {"error": "no carriers to ablate"}
    n_rows = sum(b.numel() for b in runner.batches)
    freq = {s: (runner.firings[s].double() / n_rows).numpy() for s in lh.inputs.sites if s in runner.firings}
    eligible = eligible_controls(lh)
    controls = matched_controls(freq, targets, eligible, cfg.n_controls, cfg.n_freq_bins, seed)
    n_feat = sum(len(v) for v in targets.values())

    car = runner.effect(targets, cfg.mode)
    rows.append({"population": "carriers", "kind": "joint", "site": None, "feature": None, "n_features": n_feat,
                 "delta_ce": car.delta_ce, "kl": car.kl, "n_firings": None, "delta_ce_per_firing": None,
                 "is_carrier": True})
    ctrl_ce, ctrl_kl = [], []
    for c, pop in enumerate(controls):
        e = runner.effect(pop, cfg.mode)
        ctrl_ce.append(e.delta_ce); ctrl_kl.append(e.kl)
        rows.append({"population": f"control_{c:04d}", "kind": "joint", "site": None, "feature": None,
                     "n_features": n_feat, "delta_ce": e.delta_ce, "kl": e.kl, "n_firings": None,
                     "delta_ce_per_firing": None, "is_carrier": False})
        tick("controls", c + 1, len(controls))

    rng = np.random.default_rng(seed + 1)
    singles = [(s, f, True) for s, fs in targets.items() for f in fs]
    others = [(s, int(f)) for s in lh.inputs.sites for f in np.flatnonzero(eligible[s])]
    pick = rng.choice(len(others), size=min(cfg.n_single, len(others)), replace=False) if others else []
    singles += [(others[i][0], others[i][1], False) for i in sorted(pick)]
    per_firing: dict[bool, list[float]] = {True: [], False: []}
    for n, (site, f, is_car) in enumerate(singles):
        e = runner.effect({site: [f]}, cfg.mode)
        fires = int(runner.firings[site][f])
        pf = e.delta_ce * runner.n_tokens / fires if fires else None
        if pf is not None:
            per_firing[is_car].append(pf)
        rows.append({"population": "single", "kind": "single", "site": site, "feature": f, "n_features": 1,
                     "delta_ce": e.delta_ce, "kl": e.kl, "n_firings": fires, "delta_ce_per_firing": pf,
                     "is_carrier": is_car})
        tick("single features", n + 1, len(singles))
    summary: dict[str, Any] = {"joint_delta_ce": compare(car.delta_ce, ctrl_ce), "joint_kl": compare(car.kl, ctrl_kl),
                               "n_carriers": n_feat, "n_controls": len(controls), "mode": cfg.mode}
    others_pf = np.asarray(per_firing[False])
    if per_firing[True] and len(others_pf):
        pct = [100.0 * float((others_pf < v).mean()) for v in per_firing[True]]
        summary["single_per_firing_carrier_percentile_mean"] = float(np.mean(pct))
    single_sum = sum(r["delta_ce"] for r in rows if r["kind"] == "single" and r["is_carrier"])
    summary["carriers_single_delta_ce_sum"] = float(single_sum)
    return rows, summary

"""Turn a LifeHistory into flat rows and write them as Parquet tables stamped with provenance.

Tables: features, matches, events, turnover, lineages, scaffold, hierarchy, recruitment, survival,
predictions (and ablations, written by the load-bearing stage). Each is written atomically; its
schema metadata holds the provenance JSON (config, versions, input hashes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ontogeny.lifehistory.analysis import LifeHistory
from ontogeny.lifehistory.config import MatchConfig
from ontogeny.lifehistory.match import direction_class
from ontogeny.lifehistory.predict import FEATURES
from ontogeny.lifehistory.scaffold import site_layer
from ontogeny.store.tables import write_table


def _f(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def feature_rows(lh: LifeHistory, fire_eps: float = 1e-6) -> list[dict]:
    """One row per alive feature per (site, checkpoint): firing share, mean code when firing, lineage."""
    inp = lh.inputs
    lineage_of = {(lin.site, k, lin.feature_at(k)): lin.lineage_id for lin in lh.lineages
                  for k in range(lin.birth_index, lin.end_index + 1)}
    rows = []
    for site in inp.sites:
        K = len(inp.steps)
        for k in range(K):
            alive = lh.matches[site][k].alive_a if k < K - 1 else lh.matches[site][-1].alive_b
            codes = inp.codes[site][k]
            fires = codes.abs() > fire_eps
            n_fire = fires.sum(0).double()
            mean = ((codes * fires).double().sum(0) / n_fire.clamp_min(1)).numpy()
            frac = (n_fire / codes.shape[0]).numpy()
            for f in np.flatnonzero(alive):
                rows.append({"site": site, "checkpoint": k, "step": inp.steps[k], "feature": int(f),
                             "firing_frac": float(frac[f]), "mean_act": float(mean[f]),
                             "lineage_id": lineage_of.get((site, k, int(f)))})
    return rows


def match_rows(lh: LifeHistory) -> tuple[list[dict], list[dict]]:
    """(matches, events): continuing Hungarian pairs, and every classified fate with its r and cosine."""
    steps = lh.inputs.steps
    lineage_of = {(lin.site, k, lin.feature_at(k)): lin.lineage_id for lin in lh.lineages
                  for k in range(lin.birth_index, lin.end_index + 1)}
    matches, events = [], []
    for site, ms in lh.matches.items():
        for t, m in enumerate(ms):
            base = {"site": site, "transition": t, "step_from": steps[t], "step_to": steps[t + 1]}
            for i, j, r, cos, cls in m.pairs:
                row = {**base, "feature_from": i, "feature_to": j, "r": r, "cos": _f(cos), "class": cls,
                       "lineage_id": lineage_of.get((site, t, i)), **{k: v for k, v in m.null.items()}}
                matches.append(row)
                events.append({**base, "event": cls, "feature_from": i, "feature_to": j, "r": r, "cos": _f(cos),
                               "lineage_id": lineage_of.get((site, t, i))})
            for kind, items in (("split", m.splits), ("merge", m.merges)):
                for i, j, r, cos in items:
                    events.append({**base, "event": kind, "feature_from": i, "feature_to": j, "r": r,
                                   "cos": _f(cos), "lineage_id": lineage_of.get((site, t + 1, j)) if kind == "split"
                                   else lineage_of.get((site, t, i))})
            for i, j, r, cos in m.died:
                events.append({**base, "event": "died", "feature_from": i, "feature_to": None, "r": _f(r),
                               "cos": _f(cos), "lineage_id": lineage_of.get((site, t, i))})
            for j, i, r, cos in m.born:
                events.append({**base, "event": "born", "feature_from": None, "feature_to": j, "r": _f(r),
                               "cos": _f(cos), "lineage_id": lineage_of.get((site, t + 1, j))})
    return matches, events


def lineage_rows(lh: LifeHistory) -> list[dict]:
    """One row per lineage: origin, birth/death steps, lifespan, fate, carrier and scaffold membership."""
    steps = lh.inputs.steps
    carriers = {c.lineage_id for c in lh.carriers}
    rows = []
    for lin in lh.lineages:
        observed = lin.fate != "censored"
        death = steps[lin.end_index + 1] if observed else None
        fs, ds = lh.settle.get(lin.lineage_id, (None, None))
        rows.append({"lineage_id": lin.lineage_id, "site": lin.site, "origin": lin.origin,
                     "parent_lineage": lin.parent if lin.parent >= 0 else None,
                     "birth_step": steps[lin.birth_index], "last_step": steps[lin.end_index], "death_step": death,
                     "fate": lin.fate, "merged_into": lin.merged_into if lin.merged_into >= 0 else None,
                     "n_checkpoints": len(lin.features),
                     "lifespan_steps": (death if observed else steps[-1]) - steps[lin.birth_index],
                     "censored": not observed, "all_stable": lin.all_stable,
                     "n_transformed": sum(c == "transformed" for c in lin.classes),
                     "min_r": _f(min(lin.r)) if lin.r else None,
                     "min_cos": _f(float(np.nanmin(lin.cos))) if lin.cos and not np.isnan(lin.cos).all() else None,
                     "is_carrier": lin.lineage_id in carriers,
                     "in_scaffold_final": lin.end_index == len(steps) - 1
                     and (lin.site, lin.features[-1]) in lh.scaffold_final,
                     "recruited_step": lh.recruited_step.get(lin.lineage_id),
                     "function_settled_step": fs, "direction_settled_step": ds,
                     "features": list(lin.features)})
    return rows


def scaffold_rows(lh: LifeHistory) -> list[dict]:
    sites = lh.inputs.sites
    return [{**asdict(c), "layer": site_layer(c.site, sites.index(c.site))} for c in lh.carriers]


def hierarchy_rows(lh: LifeHistory) -> list[dict]:
    """Edges of the final hierarchy, with lineages and whether the parent is in the scaffold."""
    K = len(lh.inputs.steps) - 1
    h = lh.hierarchies[K]
    lineage_of = {(lin.site, lin.features[-1]): lin.lineage_id for lin in lh.lineages if lin.end_index == K}
    rows = []
    for p, c, p_in, p_out in h.edges():
        (ps, pf), (cs, cf) = h.nodes[p], h.nodes[c]
        rows.append({"parent_site": ps, "parent_feature": pf, "parent_lineage": lineage_of.get((ps, pf)),
                     "child_site": cs, "child_feature": cf, "child_lineage": lineage_of.get((cs, cf)),
                     "p_parent_given_child": p_in, "p_child_given_parent": p_out,
                     "in_scaffold": (ps, pf) in lh.scaffold_final})
    return rows


def survival_rows(lh: LifeHistory) -> list[dict]:
    return [{"group": g, "checkpoints": float(t), "survival": float(s)}
            for g, (ts, ss) in lh.survival.items() for t, s in zip(ts, ss)]


def prediction_rows(lh: LifeHistory) -> list[dict]:
    p = lh.prediction
    if p is None:
        return []
    return [{"lineage_id": lid, "is_carrier": bool(y), "p_carrier_oof": float(pr),
             **{name: float(v) for name, v in zip(FEATURES, x)}}
            for lid, y, pr, x in zip(p.lineage_ids, p.labels, p.proba, p.X)]


def summary(lh: LifeHistory) -> dict[str, Any]:
    """Headline numbers: phase ratios, carrier count, final recruitment, prediction scores, null."""
    p = lh.prediction
    nulls = [m.null for ms in lh.matches.values() for m in ms if m.null]
    return {"steps": lh.inputs.steps, "sites": lh.inputs.sites, "early_cutoff_step": lh.cutoff,
            "turnover": lh.phase, "n_lineages": len(lh.lineages), "n_carriers": len(lh.carriers),
            "recruitment_final": lh.recruitment[-1]["recruitment"],
            "null_stable_mean_per_transition": float(np.mean([n["null_stable_mean"] for n in nulls])) if nulls
            else None,
            "stable_per_transition": float(np.mean([r.stable for r in lh.turnover if r.site != "all"])),
            "prediction": None if p is None else {
                "fold_accuracy": p.fold_accuracy, "fold_auc": p.fold_auc, "accuracy": p.accuracy,
                "null_accuracy_mean": p.null_accuracy_mean, "p_value": p.p_value, "n_folds": p.n_folds,
                "n_carriers": int(sum(p.labels)), "n_noncarriers": int(len(p.labels) - sum(p.labels))},
            "prediction_error": lh.prediction_error}


def write_tables(lh: LifeHistory, out_dir: Path, stamp: Mapping[str, Any], mcfg: MatchConfig) -> dict[str, Path]:
    """Write every life-history table under out_dir (normally <run>/tables); returns name -> path."""
    out_dir = Path(out_dir)
    matches, events = match_rows(lh)
    for row in matches:
        row["direction_class"] = direction_class(row["cos"], mcfg) if row["cos"] is not None else None
    tables = {"features": feature_rows(lh, mcfg.fire_eps), "matches": matches, "events": events,
              "turnover": [asdict(r) for r in lh.turnover], "lineages": lineage_rows(lh),
              "scaffold": scaffold_rows(lh), "hierarchy": hierarchy_rows(lh), "recruitment": lh.recruitment,
              "survival": survival_rows(lh), "predictions": prediction_rows(lh)}
    return {name: write_table(out_dir / f"{name}.parquet", rows, stamp) for name, rows in tables.items()}

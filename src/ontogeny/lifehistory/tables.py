"""Turn a LifeHistory into flat rows and write them as Parquet tables stamped with provenance.

Tables: features, matches, events, turnover, turnover_phases, turnover_null, lineages, scaffold,
carrier_curve, hierarchy, hierarchy_sensitivity, recruitment, survival, predictions,
prediction_features, precedence (and ablations, written by the load-bearing stage). Each is written
atomically; its schema metadata holds the provenance JSON (config, versions, input hashes). `summary`
gives every headline number beside its null, and a sentence in words wherever one is not measured.
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
from ontogeny.lifehistory.precedence import precedence_summary
from ontogeny.lifehistory.scaffold import site_layer
from ontogeny.lifehistory.turnover import null_band
from ontogeny.store.tables import write_table


def _f(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


def clean(x: Any) -> Any:
    """NaN and infinities become None (said in words by the reader), recursively; numpy scalars plain."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return _f(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


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
    pers = set(lh.persistent_ids)
    prec = {p.lineage_id: p for p in lh.precedence}
    rows = []
    for lin in lh.lineages:
        p = prec.get(lin.lineage_id)
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
                     "is_persistent": lin.lineage_id in pers, "is_carrier": lin.lineage_id in carriers,
                     "in_scaffold_final": lin.end_index == len(steps) - 1
                     and (lin.site, lin.features[-1]) in lh.scaffold_final,
                     "recruited_step": lh.recruited_step.get(lin.lineage_id),
                     "function_settled_step": fs, "direction_settled_step": ds,
                     "function_step": p.function_step if p else None, "direction_step": p.direction_step if p else None,
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
             **{name: float(v) for name, v in zip(p.features, x)}}
            for lid, y, pr, x in zip(p.lineage_ids, p.labels, p.proba, p.X)]


def phase_rows(lh: LifeHistory) -> list[dict]:
    """Early vs late turnover per (window, site) beside both spacing nulls."""
    return [clean({**v, "site": site}) for w in lh.phase.values() for site, v in w.items()]


def precedence_rows(lh: LifeHistory) -> list[dict]:
    carriers = {c.lineage_id for c in lh.carriers}
    return [{**asdict(p), "is_carrier": p.lineage_id in carriers} for p in lh.precedence]


def _events(lh: LifeHistory) -> dict[str, int]:
    rows = [r for r in lh.turnover if r.site == "all"]
    return {k: int(sum(getattr(r, k) for r in rows)) for k in ("born", "died", "transformed", "split", "merge")}


def summary(lh: LifeHistory) -> dict[str, Any]:
    """Headline numbers, each beside its null (`<name>_null...`), and `notes`: what was not measured, in words."""
    cfg = lh.cfg
    notes: list[str] = []
    head = lh.phase[cfg.phase.headline]["all"]
    if head["note"]:
        notes.append(f"turnover ratio {head['note']}")
    other = "from_start" if cfg.phase.headline == "after_warmup" else "after_warmup"
    K = len(lh.inputs.steps) - 1
    n_edges = lh.hierarchies[K].n_edges
    if n_edges == 0:
        notes.append("the final hierarchy has no edges at the default thresholds (see hierarchy_sensitivity)")
    if not lh.carriers:
        notes.append(f"no carriers: none of the {len(lh.persistent_ids)} persistent lineages reaches "
                     f"{cfg.scaffold.min_reach} descendant(s) in the final hierarchy, so nothing is recruited")
    null = lh.recruitment_null
    rec = lh.recruitment[-1]["recruitment"]
    if lh.carriers and not null.size:
        notes.append("recruitment null not measured (scaffold.n_null = 0 or no persistent lineages)")
    p = lh.prediction
    if p is None:
        notes.append(f"carrier prediction {lh.prediction_error}")
    prec_all = precedence_summary(lh.precedence, "all")
    carriers = {c.lineage_id for c in lh.carriers}
    prec_car = precedence_summary([r for r in lh.precedence if r.lineage_id in carriers], "carriers")
    if prec_all["note"]:
        notes.append(f"function vs direction {prec_all['note']}")
    nulls = [m.null for ms in lh.matches.values() for m in ms if m.null]
    ev = _events(lh)
    out = {
        "steps": lh.inputs.steps, "sites": lh.inputs.sites, "early_cutoff_step": lh.cutoff,
        "turnover_window": cfg.phase.headline, "turnover_window_start_step": head["window_start_step"],
        "turnover_window_end_step": head["window_end_step"], "turnover_n_early": head["n_early"],
        "turnover_n_late": head["n_late"],
        "turnover_ratio": head["ratio"], "turnover_ratio_null_constant": head["ratio_null_constant"],
        "turnover_ratio_null_logspan": head["ratio_null_logspan"],
        "turnover_excess_constant": head["excess_constant"], "turnover_excess_logspan": head["excess_logspan"],
        "turnover_ratio_step_weighted": head["ratio_step_weighted"],
        "turnover_ratio_step_weighted_null_constant": head["ratio_step_weighted_null_constant"],
        "turnover_ratio_step_weighted_null_logspan": head["ratio_step_weighted_null_logspan"],
        "churn_early": head["early_mean_churn"], "churn_late": head["late_mean_churn"],
        f"turnover_ratio_{other}": lh.phase[other]["all"]["ratio"],
        f"turnover_excess_constant_{other}": lh.phase[other]["all"]["excess_constant"],
        "turnover": {w: v for w, v in lh.phase.items()},
        "n_lineages": len(lh.lineages), "n_births": ev["born"], "n_deaths": ev["died"],
        "n_transforms": ev["transformed"], "n_splits": ev["split"], "n_merges": ev["merge"],
        "stable_per_transition": float(np.mean([r.stable for r in lh.turnover if r.site != "all"])),
        "null_stable_mean_per_transition": float(np.mean([n["null_stable_mean"] for n in nulls])) if nulls else None,
        "n_persistent": len(lh.persistent_ids), "n_edges_final": n_edges, "n_carriers": len(lh.carriers),
        "carrier_selection": cfg.scaffold.selection,
        "recruitment": rec, "recruitment_null": float(null.mean()) if null.size else None,
        "recruitment_null_p95": float(np.percentile(null, 95)) if null.size else None,
        "recruitment_p_value": float((1 + (null >= rec - 1e-12).sum()) / (1 + null.size)) if null.size else None,
        "n_recruited": lh.recruitment[-1]["n_recruited"],
        "prediction_accuracy": p.accuracy if p else None,
        "prediction_accuracy_null": p.null_accuracy_mean if p else None,
        "prediction_p_value": p.p_value if p else None,
        "prediction_auc": p.auc if p else None, "prediction_auc_null": p.null_auc_mean if p else None,
        "prediction_auc_p_value": p.p_value_auc if p else None,
        "prediction_features": list(p.features) if p else list(cfg.predict.features),
        "prediction_top_feature": p.importance[0]["feature"] if p and p.importance else None,
        "prediction": None if p is None else {
            "fold_accuracy": p.fold_accuracy, "fold_auc": p.fold_auc, "accuracy": p.accuracy, "auc": p.auc,
            "null_accuracy_mean": p.null_accuracy_mean, "null_auc_mean": p.null_auc_mean, "p_value": p.p_value,
            "p_value_auc": p.p_value_auc, "n_folds": p.n_folds, "importance": p.importance,
            "n_carriers": int(sum(p.labels)), "n_noncarriers": int(len(p.labels) - sum(p.labels))},
        "prediction_error": lh.prediction_error,
        "precedence_function_first": prec_all["function_first"],
        "precedence_function_first_null": prec_all["function_first_null"],
        "precedence_direction_first": prec_all["direction_first"], "precedence_sign_p": prec_all["sign_p"],
        "precedence_median_lag_checkpoints": prec_all["median_lag_checkpoints"],
        "precedence_n_measured": prec_all["n_measured"],
        "precedence_carriers_function_first": prec_car["function_first"],
        "precedence_carriers_sign_p": prec_car["sign_p"],
        "notes": notes}
    return clean(out)


def write_tables(lh: LifeHistory, out_dir: Path, stamp: Mapping[str, Any], mcfg: MatchConfig) -> dict[str, Path]:
    """Write every life-history table under out_dir (normally <run>/tables); returns name -> path."""
    out_dir = Path(out_dir)
    matches, events = match_rows(lh)
    for row in matches:
        row["direction_class"] = direction_class(row["cos"], mcfg) if row["cos"] is not None else None
    tables = {"features": feature_rows(lh, mcfg.fire_eps), "matches": matches, "events": events,
              "turnover": [asdict(r) for r in lh.turnover], "turnover_phases": phase_rows(lh),
              "turnover_null": [{"site": s, **r} for s in [*lh.inputs.sites, "all"]
                                for r in null_band(lh.turnover, lh.inputs.steps, s)],
              "lineages": lineage_rows(lh), "scaffold": scaffold_rows(lh), "carrier_curve": lh.carrier_curve,
              "hierarchy": hierarchy_rows(lh), "hierarchy_sensitivity": lh.sensitivity,
              "recruitment": lh.recruitment, "survival": survival_rows(lh), "predictions": prediction_rows(lh),
              "prediction_features": lh.prediction.importance if lh.prediction else [],
              "precedence": precedence_rows(lh)}
    return {name: write_table(out_dir / f"{name}.parquet", rows, stamp) for name, rows in tables.items()}


def _w(x: Any, digits: int = 4) -> Any:
    """A number for a person: rounded, or "not measured" in words."""
    if x is None:
        return "not measured"
    return round(x, digits) if isinstance(x, float) else x


def summary_tables(out: Mapping[str, Any]) -> list[tuple[str, list[dict]]]:
    """The summary as (title, rows) for a console or a report: each headline beside its null."""
    head = [
        {"quantity": "turnover ratio (early/late events per step)", "value": _w(out["turnover_ratio"]),
         "null": f"constant {_w(out['turnover_ratio_null_constant'])}; log-span {_w(out['turnover_ratio_null_logspan'])}",
         "excess": f"{_w(out['turnover_excess_constant'])} / {_w(out['turnover_excess_logspan'])}"},
        {"quantity": "churn early / late (events/(events+stable))", "value": _w(out["churn_early"]),
         "null": "", "excess": _w(out["churn_late"])},
        {"quantity": "hierarchy edges (final)", "value": out["n_edges_final"], "null": "", "excess": ""},
        {"quantity": f"carriers ({out['carrier_selection']}) of persistent lineages",
         "value": out["n_carriers"], "null": f"of {out['n_persistent']}", "excess": ""},
        {"quantity": "recruitment (recruited / alive non-carriers)", "value": _w(out["recruitment"]),
         "null": f"random persistent sets {_w(out['recruitment_null'])} (p95 {_w(out['recruitment_null_p95'])})",
         "excess": f"p = {_w(out['recruitment_p_value'])}"},
        {"quantity": "carrier prediction AUC (onset firing)", "value": _w(out["prediction_auc"]),
         "null": f"permuted labels {_w(out['prediction_auc_null'])}", "excess": f"p = {_w(out['prediction_auc_p_value'])}"},
        {"quantity": "carrier prediction accuracy", "value": _w(out["prediction_accuracy"]),
         "null": f"permuted labels {_w(out['prediction_accuracy_null'])}", "excess": f"p = {_w(out['prediction_p_value'])}"},
        {"quantity": "function first (share of lineages)", "value": _w(out["precedence_function_first"]),
         "null": _w(out["precedence_function_first_null"]), "excess": f"sign p = {_w(out['precedence_sign_p'])}"},
        {"quantity": "events: born / died / transformed / split / merge",
         "value": f"{out['n_births']} / {out['n_deaths']} / {out['n_transforms']} / {out['n_splits']} / "
                  f"{out['n_merges']}", "null": "", "excess": ""},
        {"quantity": "stable matches per transition", "value": _w(out["stable_per_transition"]),
         "null": f"token-permuted {_w(out['null_stable_mean_per_transition'])}", "excess": ""},
    ]
    win = f"early window ({out['turnover_window']}): steps ({out['turnover_window_start_step']:g}, " \
          f"{out['turnover_window_end_step']:g}]"
    tables = [(f"Life history: headline numbers beside their nulls — {win}", head)]
    abl = out.get("ablation") or {}
    if "joint_delta_ce" in abl:
        tables.append(("Joint cross-layer ablation: carriers vs count-matched controls",
                       [{"metric": m, **{k: _w(v) for k, v in abl[m].items()}} for m in ("joint_delta_ce", "joint_kl")]))
    return tables

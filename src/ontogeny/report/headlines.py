"""The numbers a reader looks for first, per section, read from the unit results in manifest/.

Every value is text: a missing or non-finite number is said in words ("not measured"), never `nan`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ontogeny.store import layout

# Capability metrics whose change point is always shown (others only when abrupt).
KEY_CAPABILITIES = ("induction_score", "rep_loss_second", "prefix_matching_max")
MISSING = "not measured"


def fmt(v: Any, missing: str = MISSING) -> str:
    """A value as short text; None, NaN and inf are said in words."""
    if v is None:
        return missing
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return missing
        if math.isinf(v):
            return "infinite"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x, missing) for x in v) if v else "none"
    return str(v)


def manifest(run_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(layout.manifest_dir(run_dir).glob("*.json")):
        e = json.loads(p.read_text())
        out[e["unit"]] = e
    return out


def headlines(run_dir: str | Path) -> list[tuple[str, str, str]]:
    """(label, value, what it means) rows, in reading order (for a summary table on the terminal)."""
    return [row[1:] for row in sectioned_headlines(run_dir)]


def abrupt_text(e: dict[str, Any]) -> str:
    """Whether a capability jump is abrupt, in words, with the grid's limit where it decides the answer."""
    if e.get("abrupt") or not e.get("resolution_limited"):
        return f"abrupt: {fmt(e.get('abrupt'))}"
    return (f"abrupt: no by the width rule (10–90% rise {fmt(e.get('width'))} steps, "
            f"{fmt(e.get('width_ratio'))} of the step), but from the first checkpoint past 10% of the rise to "
            f"the first past 90% is at most one checkpoint interval ({fmt(e.get('spacing'))} steps): as sharp "
            "as the checkpoints can show")


def dictionary_headlines(d: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Held-out quality range of the per-checkpoint dictionaries, each beside its reference point."""
    if not d.get("dictionaries"):
        return []

    def span(key: str) -> str:
        lo, hi = d.get(f"{key}_min"), d.get(f"{key}_max")
        return fmt(lo) if lo is None or hi is None or lo == hi else f"{fmt(lo)} … {fmt(hi)}"

    toks = d.get("training_tokens_min")
    trained = f"each trained on ≥ {toks:,} tokens" if toks else "training tokens not recorded"
    return [
        ("lifehistory", "dictionaries: held-out FVU", span("fvu"),
         f"{d['dictionaries']} dictionaries at {len(d.get('steps', []))} checkpoints, {trained}; "
         "reference: 1 = predicting every activation by its mean, 0 = exact"),
        ("lifehistory", "dictionaries: CE loss recovered (spliced)", span("ce_recovered"),
         "the model's loss with each site replaced by its reconstruction, on held-out tokens; "
         "reference: 0 = the site zero-ablated, 1 = the clean model (not measured where zero-ablating "
         "the site moves the loss by under 0.05 nats, as at the first checkpoints)"),
        ("lifehistory", "dictionaries: L0 / dead fraction", f"{span('l0')} / {span('dead_frac')}",
         "mean active latents per token, and the share of latents that never fire on the held-out tokens"),
    ]


def sectioned_headlines(run_dir: str | Path) -> list[tuple[str, str, str, str]]:
    """(section key, label, value, what it means) rows, in reading order."""
    units = manifest(Path(run_dir))
    rows: list[tuple[str, str, str, str]] = []

    def res(name: str) -> dict[str, Any]:
        return units.get(name, {}).get("result", {}) or {}

    s = res("series")
    if s.get("steps"):
        rows.append(("series", "checkpoints", fmt(len(s["steps"])), f"steps {s['steps'][0]} … {s['steps'][-1]}"))
    if s.get("induction_jump_step") is not None:
        rows.append(("series", "induction emerges (training log)", f"step {s['induction_jump_step']}",
                     "largest change point of the series' induction score on whole-vocabulary spans at "
                     "held-out periods (loss on a span's first copy minus its repeat; "
                     f"{fmt(s.get('induction_final'))} nats at the end)"))
    rows += census_headlines(res("census"))
    rows += dictionary_headlines(res("dictionaries"))
    lh = res("lifehistory")
    if lh:
        rows += lifehistory_headlines(lh)
    llc = res("llc")
    if llc.get("llc"):
        step_rows = [r for k in sorted(units) if k.startswith("llc/step_")
                     for r in (units[k].get("result") or {}).get("rows", [])]
        rows += llc_headlines(llc, step_rows, units.get("llc", {}).get("config"))
    for e in res("capabilities").get("events", []):
        if e.get("jump_step") is not None and (e.get("abrupt") or e.get("metric") in KEY_CAPABILITIES):
            rows.append(("capabilities", f"emergence step: {e['metric']}", fmt(e["jump_step"]),
                         f"largest change point (Δ {fmt(e.get('delta'))}, {abrupt_text(e)})"))
    cc = res("crosscoder")
    if cc.get("reldec_classes"):
        rows.append(("crosscoder", "crosscoder presence classes",
                     fmt([f"{k}: {v}" for k, v in sorted(cc["reldec_classes"].items())]),
                     f"alive latents by the checkpoints their decoder norm is material in (norm / max ≥ "
                     f"{fmt(cc.get('presence_tau'))}) over checkpoints {fmt(cc.get('steps'))}"))
    for task, t in sorted((cc.get("tasks") or {}).items()):
        if isinstance(t, dict) and t.get("relie_classes"):
            rows.append(("crosscoder", f"RelIE classes: {task}",
                         fmt([f"{k}: {v}" for k, v in sorted(t["relie_classes"].items())]),
                         f"latents by where their indirect effect on {task} lies; 'no effect': total |IE| below "
                         f"the random-direction noise floor {fmt(t.get('noise_floor'))}"))
    for i, row in enumerate(res("susceptibility").get("separation", [])[:2]):
        n_ind = row.get("n_induction_heads")
        gap = fmt(row.get("standardised_gap"), "not measured (no head passes the threshold)" if not n_ind else MISSING)
        rows.append(("susceptibility", f"induction heads on response PC{i + 1}",
                     f"gap {gap}; ρ {fmt(row.get('spearman_induction'))}",
                     f"standardised gap between the {fmt(n_ind, 'no')} heads with induction score ≥ "
                     f"{fmt(row.get('threshold'))} and the others; Spearman ρ of loading vs induction score"))
    return rows


def lifehistory_headlines(lh: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The life-history headline numbers, each beside its null (keys of `run_lifehistory`'s summary)."""
    sec = "lifehistory"
    rows = [
        (sec, "turnover ratio (early / late events per step)", fmt(lh.get("turnover_ratio")),
         f"early window {lh.get('turnover_window', '')} (steps {fmt(lh.get('turnover_window_start_step'))}–"
         f"{fmt(lh.get('turnover_window_end_step'))}); checkpoint spacing alone gives "
         f"{fmt(lh.get('turnover_ratio_null_constant'))} (constant events per transition) or "
         f"{fmt(lh.get('turnover_ratio_null_logspan'))} (events ∝ log-step span): excess "
         f"{fmt(lh.get('turnover_excess_constant'))} / {fmt(lh.get('turnover_excess_logspan'))} (paper: ~40× raw)"),
        (sec, "churn early / late", f"{fmt(lh.get('churn_early'))} / {fmt(lh.get('churn_late'))}",
         "events / (events + stable matches) per transition, by phase (no spacing in it)"),
        (sec, "carrier scaffold size", fmt(lh.get("n_carriers")),
         f"persistent lineages ranked by reach, {lh.get('carrier_selection', '')}; of "
         f"{fmt(lh.get('n_persistent'))} persistent; {fmt(lh.get('n_edges_final'))} hierarchy edges at the end"),
        (sec, "recruitment under carriers", fmt(lh.get("recruitment")),
         f"recruited / alive non-carriers at the end; random persistent sets of the same size: "
         f"{fmt(lh.get('recruitment_null'))} (p95 {fmt(lh.get('recruitment_null_p95'))}, "
         f"p = {fmt(lh.get('recruitment_p_value'))}; paper: 64%)"),
        (sec, "carriers predicted from onset firing (AUC)", fmt(lh.get("prediction_auc")),
         f"stratified folds; permuted labels {fmt(lh.get('prediction_auc_null'))}, "
         f"p = {fmt(lh.get('prediction_auc_p_value'))}; top statistic {fmt(lh.get('prediction_top_feature'))}"),
        (sec, "function before direction", fmt(lh.get("precedence_function_first")),
         f"share of lineages whose firing matches their final feature before their decoder direction does "
         f"(null 0.5, sign p = {fmt(lh.get('precedence_sign_p'))}; median lag "
         f"{fmt(lh.get('precedence_median_lag_checkpoints'))} checkpoints)"),
    ]
    abl = lh.get("ablation") or {}
    joint = abl.get("joint_delta_ce")
    if joint:
        rows.append((sec, "carrier joint ablation z-score", fmt(joint.get("z")),
                     f"Δ next-token loss of removing all carriers at every layer ({fmt(joint.get('value'))}) vs "
                     f"count-matched random populations ({fmt(joint.get('control_mean'))} ± "
                     f"{fmt(joint.get('control_sd'))}); percentile {fmt(joint.get('percentile'))}"))
    elif abl.get("error"):
        rows.append((sec, "carrier joint ablation", MISSING, str(abl["error"])))
    for note in lh.get("notes") or []:
        rows.append((sec, "note", "—", str(note)))
    return rows


def _forms_text(f: dict[str, Any]) -> str:
    """"; it forms between step a and b (...)" from a census change point, or "" when not measured."""
    if f.get("step") is None:
        return ""
    return (f"; {f.get('component', 'it')} forms between checkpoints {f['from_step']} and {f['step']} "
            f"(change point of its score over checkpoints: {f['before']:.2f} before, {f['after']:.2f} "
            f"after; {100 * f['jump_share']:.0f}% of the rise within that one interval)")


def _periods_text(c: dict[str, Any]) -> str:
    """" 11, 20, 32 (offsets 0, 9)" from the census headline, or "" when it does not say."""
    if not c.get("census_periods"):
        return ""
    return (f" {', '.join(map(str, c['census_periods']))} (random-prefix offsets "
            f"{', '.join(map(str, c.get('census_offsets') or []))})")


def census_headlines(c: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The head census at the last checkpoint: the circuit, the head, its score against the threshold, and
    the held-out copy gain; when no head passes, the sentence says so."""
    if not c.get("best_induction_head"):
        return []
    named = c.get("named_heads") or {}
    gains = c.get("copy_gain_by_period") or {}
    rows = []
    for kind, label, key, thr in (("previous_token", "previous-token head", "best_prev_token", "prev_token_threshold"),
                                  ("induction", "induction head (attention to i−P+1)", "best_induction",
                                   "induction_threshold")):
        passed = named.get(kind) or []
        verdict = (f"{len(passed)} head(s) pass: {', '.join(passed)}" if passed
                   else f"no head reaches {fmt(c.get(thr))}: this series has no classic {label} at this scale")
        verdict += _forms_text(c.get(f"{kind}_forms") or {})
        if kind == "induction" and c.get("best_induction_ablation") is not None:
            verdict += (f"; zeroing {c.get('best_induction_head')} raises the second-copy loss by "
                        f"{fmt(c['best_induction_ablation'])} nats")
        rows.append(("capabilities", f"best {label}", f"{c.get(key + '_head')}: {fmt(c.get(key))}",
                     f"census at step {fmt(c.get('census_step'))} on whole-vocabulary random spans at held-out "
                     f"periods{_periods_text(c)}; {verdict}"))
    shifts = c.get("best_induction_shift_by_period") or {}
    rows.append(("capabilities", "copy gain on whole-vocabulary spans",
                 fmt([f"P={p}: {fmt(g)}" for p, g in sorted(gains.items(), key=lambda kv: int(kv[0]))]),
                 "loss on a span's first copy minus its repeat (nats), per period"
                 + _forms_text({**(c.get("copy_gain_forms") or {}), "component": "the copy gain"})
                 + "; the best induction "
                 "head's attention shift per period (0 = classic i−P+1): "
                 + fmt([f"P={p}: {v}" for p, v in sorted(shifts.items(), key=lambda kv: int(kv[0]))])))
    return rows


def _pct(x: float | None) -> str:
    return MISSING if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def llc_headlines(llc: dict[str, Any], step_rows: list[dict[str, Any]],
                  config: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """The LLC curve beside its references, so a reader can tell a finding from an artefact.

    Row 1: λ̂ per checkpoint with the sampler settings and the regular-model value d/2 of the sampled
    parameters (λ̂ ≪ d/2 is what a singular, degenerate minimum gives; λ̂ near d/2 would be a regular one).
    Row 2: the convergence figures (largest between-chain std and first/second-half difference, as shares
    of λ̂, and how many checkpoints converged), all measured in this run. A check against a long run is a
    separate measurement (docs/slt.md, "Demo check against a long run"), not something a report can claim
    for its own run. `step_rows` are the per-checkpoint LLC rows (manifest units llc/step_*), `config` the
    LLC section as run; missing figures are said in words.
    """
    full = [r for r in step_rows if r.get("component", "full") == "full"]
    sg = (config or {}).get("sgld") or {}
    n_params = next((r.get("n_params") for r in full if r.get("n_params")), None)
    burn = sorted({r["burnin_draws"] for r in full if r.get("burnin_draws") is not None})
    nb = sorted({r["n_beta"] for r in full if r.get("n_beta") is not None})
    nb_text = fmt(nb[0]) if len(nb) == 1 else fmt(nb) if nb else fmt(sg.get("n_beta"), "n/ln n")
    burn_text = f"{burn[0]}" if len(burn) == 1 else f"{burn[0]}–{burn[-1]}" if burn else MISSING
    settings = "sampler settings not recorded" if not sg else (
        f"nβ {nb_text}, ε {fmt(sg.get('lr'))}, γ {fmt(sg.get('gamma'))}, {fmt(sg.get('num_chains'))} chains × "
        f"{fmt(sg.get('num_draws'))} draws after {fmt(sg.get('num_burnin_steps'), '0')} burn-in steps "
        f"(detected burn-in dropped: {burn_text} draws)")
    regular = (f"a regular model with these {n_params:,} sampled parameters would have λ = d/2 = "
               f"{n_params / 2:,.0f}; λ̂ far below it is the degenerate (singular) minimum the LLC measures"
               if n_params else "the regular-model value d/2 is not recorded (number of sampled parameters missing)")
    rows = [("llc", "LLC through training", fmt([round(x, 1) if x is not None else None for x in llc["llc"]]),
             f"λ̂ at steps {fmt(llc.get('steps'))}; {settings}; reference: {regular}")]

    def worst(key: str) -> tuple[float | None, Any]:
        vals = [(abs(r[key]) / abs(r["llc_mean"]), r.get("step")) for r in full
                if r.get(key) is not None and r.get("llc_mean") and math.isfinite(r[key])]
        return max(vals, key=lambda v: v[0]) if vals else (None, None)

    if full:
        (sd, sd_step), (hd, hd_step) = worst("llc_std"), worst("llc_half_diff")
        n_conv = sum(bool(r.get("converged")) for r in full)
        tol = sg.get("convergence_tol")
        def at(x: float | None, step: Any, what: str) -> str:
            return f"{what} {MISSING}" if x is None else f"{what} {_pct(x)} of λ̂ (step {fmt(step)})"

        conv = (f"{at(sd, sd_step, 'largest between-chain std')}, "
                f"{at(hd, hd_step, 'largest first/second-half difference')}; "
                f"tolerance {_pct(tol) + ' of λ̂' if tol else MISSING}")
        value = f"{n_conv} of {len(full)} converged"
    else:
        conv, value = "convergence figures not recorded for this run", MISSING
    rows.append(("llc", "LLC convergence", value, conv))
    return rows

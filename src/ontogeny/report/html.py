"""The study report: one self-contained HTML page (plotly.js inlined, works offline) plus PNG copies.

Built from the run directory alone: figures/*.json (plotly figures), figures/*.png, the unit results in
manifest/ and study.json. Nothing here imports the analyses.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

from ontogeny.store.run import atomic_path

# Section of the report for each figure-name prefix, in display order.
SECTIONS = [
    ("series", "Training of the series"),
    ("capabilit", "Capability curves and emergence"),
    ("lifehistory", "Feature life histories"),
    ("crosscod", "Crosscoders through time"),
    ("llc", "Local learning coefficient"),
    ("response", "Susceptibilities"),
    ("pc_scatter", "Susceptibilities"),
    ("emergence", "Emergence lab (synthetic tasks)"),
]


# Capability metrics whose change point is always shown (others only when abrupt).
KEY_CAPABILITIES = ("induction_score", "rep_loss_second", "prefix_matching_max")


def _section_of(name: str) -> str:
    for prefix, title in SECTIONS:
        if name.startswith(prefix):
            return title
    return "Other figures"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _manifest(run_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted((run_dir / "manifest").glob("*.json")):
        e = json.loads(p.read_text())
        out[e["unit"]] = e
    return out


def headlines(run_dir: Path) -> list[tuple[str, str, str]]:
    """(label, value, what it means) for the numbers a reader looks for first."""
    units = _manifest(run_dir)
    rows: list[tuple[str, str, str]] = []

    def res(name: str) -> dict[str, Any]:
        return units.get(name, {}).get("result", {}) or {}

    s = res("series")
    if s:
        rows.append(("checkpoints", _fmt(len(s["steps"])), f"steps {s['steps'][0]} … {s['steps'][-1]}"))
    if s.get("induction_jump_step") is not None:
        rows.append(("induction emerges (training log)", f"step {s['induction_jump_step']}",
                     f"largest change point of the series' induction score (loss on a span's first copy minus "
                     f"its repeat; {_fmt(s['induction_final'])} nats at the end)"))
    lh = res("lifehistory")
    if lh:
        t = (lh.get("turnover") or {}).get("all") or {}
        ratio = t.get("ratio")
        if ratio is not None:
            rows.append(("turnover ratio (early / late)", _fmt(ratio),
                         f"lineage events per training step before step {_fmt(lh.get('early_cutoff_step'))} "
                         "over those after it (paper: ~40×)"))
        rows.append(("carrier scaffold size", _fmt(lh.get("n_carriers")),
                     "lineages alive and stable from onset to the end (top N across sites)"))
        if lh.get("recruitment_final") is not None:
            rows.append(("recruitment under carriers", f"{100 * lh['recruitment_final']:.1f}%",
                         "share of active features at the last checkpoint that sit under a carrier (paper: 64%)"))
        joint = (lh.get("ablation") or {}).get("joint_delta_ce")
        if joint:
            rows.append(("carrier joint ablation z-score", _fmt(joint.get("z")),
                         f"Δ next-token loss of removing all carriers at every layer ({_fmt(joint.get('value'))}) vs "
                         f"count-matched random populations ({_fmt(joint.get('control_mean'))} ± "
                         f"{_fmt(joint.get('control_sd'))}); percentile {_fmt(joint.get('percentile'))}"))
        p = lh.get("prediction") or {}
        if p.get("fold_accuracy"):
            rows.append(("carriers predicted from onset firing", _fmt(sum(p["fold_accuracy"]) / len(p["fold_accuracy"])),
                         f"mean {p.get('n_folds')}-fold accuracy (chance ≈ {_fmt(p.get('null_accuracy_mean'))})"))
    llc = res("llc")
    if llc:
        rows.append(("LLC through training", _fmt([round(x, 1) for x in llc["llc"]]),
                     f"λ̂ at steps {_fmt(llc['steps'])}"))
    cap = res("capabilities")
    for e in cap.get("events", []):
        if e.get("jump_step") is not None and (e.get("abrupt") or e["metric"] in KEY_CAPABILITIES):
            rows.append((f"emergence step: {e['metric']}", _fmt(e["jump_step"]),
                         f"largest change point (Δ {_fmt(e.get('delta'))}, abrupt={e.get('abrupt')})"))
    cc = res("crosscoder")
    if cc.get("reldec_classes"):
        rows.append(("crosscoder RelDec classes", _fmt([f"{k}: {v}" for k, v in sorted(cc["reldec_classes"].items())]),
                     f"latents per class over checkpoints {_fmt(cc.get('steps'))} "
                     "(RelDec > 0.7 emerging, < 0.3 discontinued, else shared)"))
    sus = res("susceptibility")
    for i, row in enumerate(sus.get("separation", [])[:2]):
        rows.append((f"induction heads on response PC{i + 1}",
                     f"gap {_fmt(row.get('standardised_gap'))}, ρ {_fmt(row.get('spearman_induction'))}",
                     f"standardised gap between the {row.get('n_induction_heads')} heads with induction score ≥ "
                     f"{_fmt(row.get('threshold'))} and the others; Spearman ρ of loading vs induction score"))
    return rows


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write `<out_dir or run_dir/report>/index.html` and PNG copies of every figure; returns the page."""
    import plotly.offline

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    figs = sorted((run_dir / "figures").glob("*.json"))
    sections: dict[str, list[tuple[str, str]]] = {}
    for f in figs:
        sections.setdefault(_section_of(f.stem), []).append((f.stem, f.read_text()))
    study = json.loads((run_dir / "study.json").read_text()) if (run_dir / "study.json").exists() else {}

    parts = [f"<h1>ontogeny study: {html.escape(run_dir.name)}</h1>",
             "<h2>Headline numbers</h2><table class='h'><tr><th>measure</th><th>value</th><th>meaning</th></tr>"]
    for label, value, meaning in headlines(run_dir):
        parts.append(f"<tr><td>{html.escape(label)}</td><td><b>{html.escape(value)}</b></td>"
                     f"<td>{html.escape(meaning)}</td></tr>")
    parts.append("</table>")
    order = [title for _, title in SECTIONS] + ["Other figures"]
    n = 0
    for title in dict.fromkeys(order):
        if title not in sections:
            continue
        parts.append(f"<h2>{html.escape(title)}</h2>")
        for name, fig_json in sections[title]:
            div = f"fig{n}"
            n += 1
            parts.append(f"<div class='fig'><h3>{html.escape(name)}</h3><div id='{div}' class='plot'></div>"
                         f"<script>(function(){{var f={fig_json};"
                         f"Plotly.newPlot('{div}', f.data, f.layout, {{responsive: true}});}})();</script></div>")
    parts.append("<h2>Configuration and versions</h2><pre>" +
                 html.escape(json.dumps({k: study.get(k) for k in ("config", "versions")}, indent=2)) +
                 "</pre>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ontogeny report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
            "table.h{border-collapse:collapse}table.h td,table.h th{border:1px solid #ccc;padding:4px 8px;"
            "text-align:left}.plot{height:420px}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}"
            "</style><script>" + plotly.offline.get_plotlyjs() + "</script></head><body>" +
            "\n".join(parts) + f"<p>{n} figures.</p></body></html>")
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page)
    png_dir = out_dir / "figures"
    png_dir.mkdir(exist_ok=True)
    for png in (run_dir / "figures").glob("*.png"):
        shutil.copy2(png, png_dir / png.name)
    return out_dir / "index.html"

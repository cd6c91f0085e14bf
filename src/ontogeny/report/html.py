"""The study report: `report/index.html` (plotly.js inlined, works offline), PNG copies, feature pages.

Built from the run directory alone: figures/*.json (plotly figure data), the unit results in manifest/,
study.json, and the feature-page data in features/ (`ontogeny.report.features`). Nothing here imports
the analyses. Layout: a sidebar of contents; one section per analysis with its headline numbers first,
then each figure with a sentence on what it shows and what would count as the paper's claim holding;
the feature browser; the configuration as a collapsible table. Every data value is pasted through
`safe.script_json` and every page carries a hash-based Content-Security-Policy.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from ontogeny.report.headlines import fmt, headlines, sectioned_headlines  # noqa: F401 (headlines re-exported)
from ontogeny.report.safe import page, script_json
from ontogeny.report.sections import SECTION_ORDER, note_for, section_of
from ontogeny.store import layout
from ontogeny.store.run import atomic_path

CSS = """body{font-family:system-ui,sans-serif;margin:0;color:#222}#toc{position:fixed;top:0;left:0;width:220px;
height:100vh;overflow:auto;background:#f4f5f7;border-right:1px solid #ddd;padding:1em;box-sizing:border-box;font-size:14px}
#toc a{display:block;color:#1d3557;text-decoration:none;margin:.3em 0}#toc a.sub{margin-left:1em;font-size:12px;color:#555;overflow-wrap:anywhere}
main{margin-left:240px;max-width:1050px;padding:1em 1.5em}table.h{border-collapse:collapse;margin:.5em 0}
table.h td,table.h th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}.plot{height:430px}
.fig{margin:1.5em 0;border-top:1px solid #eee}.shows{margin:.2em 0}.claim{margin:.2em 0;color:#555;font-style:italic}
table.cfg td{font-family:ui-monospace,monospace;font-size:12px;border-bottom:1px solid #eee;padding:2px 10px}
.lede{color:#444}a.browse{font-weight:bold}"""


def _log_step_axes(fig: dict[str, Any]) -> dict[str, Any]:
    """Set a log x axis where the axis is titled as steps and its values are positive and span >= 2 decades.

    Why: checkpoints are log-spaced, so on a linear axis the early ones sit on top of each other (issue
    17). Analyses should set it themselves; this catches a figure that did not, and leaves axes holding
    step 0 alone (a log axis would drop it).
    """
    from ontogeny.report.render import decode_array

    layout = fig.setdefault("layout", {})
    for tr in fig.get("data") or []:
        key = "xaxis" + (tr.get("xaxis", "x")[1:] if len(tr.get("xaxis", "x")) > 1 else "")
        ax = layout.setdefault(key, {})
        title = ax.get("title")
        title = (title.get("text") if isinstance(title, dict) else title) or ""
        if "step" not in str(title).lower() or ax.get("type") or ax.get("tickvals") is not None:
            continue
        try:
            xs = [float(v) for v in decode_array(tr.get("x"))]
        except (TypeError, ValueError):
            continue
        xs = [x for x in xs if math.isfinite(x)]
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax["type"] = "log"
    return fig


def _config_rows(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        out = []
        for k in sorted(obj):
            out += _config_rows(obj[k], f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        return [r for i, x in enumerate(obj) for r in _config_rows(x, f"{prefix}[{i}]")]
    return [(prefix, fmt(obj, "none") if not isinstance(obj, str) else obj)]


def _features(run_dir: Path, out_dir: Path, compute: bool) -> dict[str, Any] | None:
    """Feature pages from run_dir/features/ (computed first when missing and `compute`); None if impossible."""
    from ontogeny.report.features import feature_pages_data
    from ontogeny.report.pages import write_feature_pages

    data_dir = layout.features_dir(run_dir)
    if not (data_dir / "index.json").exists():
        if not compute or not layout.table_path(run_dir, "lineages").exists():
            return None
        feature_pages_data(run_dir)
    return write_feature_pages(data_dir, out_dir / "features")


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, png: bool = True,
                 features: bool = True) -> Path:
    """Write `<out_dir or run_dir/report>/index.html`, `figures/*.png` and `features/`; returns the page.

    `features`: compute the feature-page data when the study has not (`run_dir/features/` missing).
    """
    import plotly.offline

    from ontogeny.report.render import render_png

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else layout.report_dir(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for f in sorted(layout.figures_dir(run_dir).glob("*.json")):
        try:
            fig = json.loads(f.read_text())
        except ValueError as e:
            raise ValueError(f"figure {f} is not valid JSON: {e}") from e
        figs.setdefault(section_of(f.stem), []).append((f.stem, _log_step_axes(fig)))
    record = layout.study_record(run_dir)
    study = json.loads(record.read_text()) if record.exists() else {}
    feat = _features(run_dir, out_dir, features)
    heads: dict[str, list[tuple[str, str, str]]] = {}
    for sec, label, value, meaning in sectioned_headlines(run_dir):
        heads.setdefault(sec, []).append((label, value, meaning))

    toc = ["<nav id='toc'><b>ontogeny report</b>"]
    parts = [f"<h1>ontogeny study: {html.escape(run_dir.name)}</h1>"]
    scripts = [plotly.offline.get_plotlyjs()]
    n = 0
    for key, title, lede in SECTION_ORDER:
        if key not in figs and key not in heads and not (key == "lifehistory" and feat):
            continue
        toc.append(f"<a href='#sec-{key}'>{html.escape(title)}</a>")
        parts.append(f"<section id='sec-{key}'><h2>{html.escape(title)}</h2><p class='lede'>{html.escape(lede)}</p>")
        if heads.get(key):
            parts.append("<table class='h'><tr><th>headline</th><th>value</th><th>meaning</th></tr>")
            for label, value, meaning in heads[key]:
                parts.append(f"<tr><td>{html.escape(label)}</td><td><b>{html.escape(value)}</b></td>"
                             f"<td>{html.escape(meaning)}</td></tr>")
            parts.append("</table>")
        for name, fig in figs.get(key, []):
            div = f"fig{n}"
            n += 1
            note = note_for(name)
            toc.append(f"<a class='sub' href='#{div}-box'>{html.escape(name)}</a>")
            text = (f"<p class='shows'>{html.escape(note.shows)}</p><p class='claim'>Claim holds if: "
                    f"{html.escape(note.claim)}</p>") if note else ""
            link = ""
            if feat and name.startswith(("lifehistory_river", "lifehistory_scaffold")):
                link = "<p><a class='browse' href='features/index.html'>Open the feature browser →</a></p>"
            parts.append(f"<div class='fig' id='{div}-box'><h3>{html.escape(name)}</h3>{text}{link}"
                         f"<div id='{div}' class='plot'></div></div>")
            scripts.append(f"(function(){{var f={script_json(fig)};var d=document.getElementById('{div}');"
                           "Plotly.newPlot(d,f.data,f.layout||{},{responsive:true});"
                           "d.on('plotly_click',function(e){var c=e.points&&e.points[0]&&e.points[0].customdata;"
                           "var m=e.points&&e.points[0]&&e.points[0].data.meta;"
                           "if(m==='lineage_id'&&c!==undefined){location.href='features/lineage_'+"
                           "String(Array.isArray(c)?c[0]:c).padStart(6,'0')+'.html';}});})();")
            if png:
                render_png(fig, out_dir / "figures" / f"{name}.png")
        if key == "lifehistory" and feat:
            parts.append(f"<h3 id='browser'>Feature browser</h3><p><a class='browse' href='features/index.html'>"
                         f"Browse all {feat['n_lineages']} lineages</a> ({feat['n_pages']} with a page: what each "
                         "feature is at several checkpoints of its life).</p>")
        parts.append("</section>")
    if feat:
        toc.append("<a href='features/index.html'>Feature browser</a>")
    toc.append("<a href='#config'>Configuration</a></nav>")
    cfg_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                       for k, v in _config_rows({"config": study.get("config"), "versions": study.get("versions")}))
    parts.append(f"<section id='config'><h2>Configuration and versions</h2><details><summary>"
                 f"{cfg_rows.count('<tr>')} settings (click to show)</summary><table class='cfg'>{cfg_rows}</table>"
                 f"</details><p>{n} figures.</p></section>")
    body = "".join(toc) + "<main>" + "\n".join(parts) + "</main>"
    with atomic_path(out_dir / layout.report_page(run_dir).name) as tmp:
        tmp.write_text(page("ontogeny report", body, scripts, CSS))
    return out_dir / "index.html"

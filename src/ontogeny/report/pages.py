"""The feature browser and one static page per lineage, rendered from the feature-page JSON.

Why static files: the report must open offline from `report/` with no server, and browsers refuse
`fetch()` of local files; so each lineage page is plain HTML (inline SVG charts, no script at all) and
the browser is one page holding every lineage's row as data (a few hundred bytes each: thousands of
lineages stay a small page), filtered, sorted and paginated in the page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ontogeny.report.headlines import fmt
from ontogeny.report.safe import page, script_json
from ontogeny.store.run import atomic_path

CSS = """body{font-family:system-ui,sans-serif;margin:0;color:#222}main{max-width:1150px;margin:auto;padding:1em 1.5em}
a{color:#1a5fb4}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
th{background:#f3f3f3}th.sort{cursor:pointer}.muted{color:#777}.ctx{font-family:ui-monospace,monospace;font-size:13px;
white-space:pre;line-height:1.9;overflow-x:auto;border-bottom:1px solid #eee;padding:2px 0}
.tok{border-radius:2px;padding:1px 0}.tok.hl{outline:2px solid #c01c28;font-weight:bold}.ws{color:#999}
.snap{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}.row{display:flex;gap:2em;flex-wrap:wrap}
nav.top{background:#1d3557;color:#fff;padding:.5em 1.5em}nav.top a{color:#fff;margin-right:1.5em}
.pager button{margin:0 .2em}input[type=search]{width:22em;padding:4px}"""

WS = {" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"}


def token_html(tok: str) -> str:
    """A token as HTML: escaped, whitespace drawn visibly (· space, ↵ newline, ⇥ tab)."""
    out = []
    for ch in tok:
        if ch in WS:
            out.append(f"<span class='ws'>{WS[ch]}</span>")
        else:
            out.append(html.escape(ch))
    return "".join(out) or "<span class='ws'>∅</span>"


def context_html(ctx: dict[str, Any], scale: float) -> str:
    """One context: each token coloured by its activation (orange, alpha ∝ value / scale)."""
    parts = []
    for i, (tok, v) in enumerate(zip(ctx["tokens"], ctx["values"])):
        a = 0.0 if not scale else max(0.0, min(1.0, float(v) / scale))
        cls = "tok hl" if i == ctx["target"] else "tok"
        style = f"background:rgba(255,140,0,{a:.2f})" if a > 0 else ""
        parts.append(f"<span class='{cls}' style='{style}' title='activation {float(v):.3g}'>{token_html(tok)}</span>")
    return (f"<div class='ctx' data-seq='{ctx['seq']}' data-pos='{ctx['pos']}'>"
            f"<span class='muted'>{float(ctx['max']):6.3f} │ </span>{''.join(parts)}</div>")


def _svg_line(xs_labels: list[str], series: list[tuple[str, list[float | None], str]], width: int = 520,
              height: int = 190, ymax: float | None = None) -> str:
    """A small inline SVG line chart over checkpoint positions (evenly spaced: the steps are log-spaced)."""
    n = len(xs_labels)
    left, right, top, bottom = 44, 10, 12 + 13 * len(series), 34
    vals = [v for _, ys, _ in series for v in ys if v is not None]
    hi = ymax if ymax is not None else (max(vals) if vals else 1.0) or 1.0
    def X(i: float) -> float:
        return left + (width - left - right) * (i / max(n - 1, 1))
    def Y(v: float) -> float:
        return top + (height - top - bottom) * (1 - v / hi)
    out = [f"<svg width='{width}' height='{height}' role='img' style='background:#fff'>",
           f"<line x1='{left}' y1='{Y(0)}' x2='{width - right}' y2='{Y(0)}' stroke='#999'/>",
           f"<text x='4' y='{Y(hi) + 4}' font-size='10'>{hi:.3g}</text><text x='4' y='{Y(0)}' font-size='10'>0</text>"]
    for i, lab in enumerate(xs_labels):
        out.append(f"<text x='{X(i)}' y='{height - 18}' font-size='10' text-anchor='middle'>{html.escape(lab)}</text>")
    out.append(f"<text x='{(left + width) / 2}' y='{height - 4}' font-size='10' text-anchor='middle'>"
               "checkpoint step (log-spaced)</text>")
    for j, (name, ys, color) in enumerate(series):
        pts = [(X(i + (0.5 if len(ys) == n - 1 else 0)), Y(v)) for i, v in enumerate(ys) if v is not None]
        if len(pts) > 1:
            out.append("<polyline fill='none' stroke='{}' stroke-width='2' points='{}'/>".format(
                color, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
        out += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'/>" for x, y in pts]
        out.append(f"<text x='{left}' y='{11 + 13 * j}' font-size='11' fill='{color}'>"
                   f"{html.escape(name)}</text>")
    out.append("</svg>")
    return "".join(out)


def _svg_hist(hist: dict[str, Any], width: int = 300, height: int = 150) -> str:
    counts, edges = hist.get("counts") or [], hist.get("edges") or []
    if not counts:
        return "<p class='muted'>no non-zero activation on the evaluation set at this checkpoint</p>"
    top, bottom, left = 8, 28, 8
    bw = (width - 2 * left) / len(counts)
    hi = max(counts) or 1
    out = [f"<svg width='{width}' height='{height}' role='img' class='hist'>"]
    for i, c in enumerate(counts):
        h = (height - top - bottom) * c / hi
        out.append(f"<rect x='{left + i * bw:.1f}' y='{height - bottom - h:.1f}' width='{bw - 1:.1f}' height='{h:.1f}' "
                   f"fill='#e66100'><title>{edges[i]:.3g}–{edges[i + 1]:.3g}: {c}</title></rect>")
    out.append(f"<text x='{left}' y='{height - 12}' font-size='10'>{edges[0]:.3g}</text>"
               f"<text x='{width - left}' y='{height - 12}' font-size='10' text-anchor='end'>{edges[-1]:.3g}</text>"
               f"<text x='{width / 2}' y='{height - 1}' font-size='10' text-anchor='middle'>activation (non-zero)"
               "</text></svg>")
    return "".join(out)


def _logits_html(snap: dict[str, Any]) -> str:
    lg = snap.get("logits")
    if not lg:
        return f"<p class='muted'>{html.escape(snap.get('logits_missing') or 'not measured')}</p>"
    cells = []
    for title, rows in (("promoted", lg["promoted"]), ("suppressed", lg["suppressed"])):
        body = "".join(f"<tr><td class='ctx'>{token_html(t)}</td><td>{v:+.3g}</td></tr>" for t, v in rows)
        cells.append(f"<table class='logits {title}'><tr><th>{title}</th><th>W_U·d</th></tr>{body}</table>")
    return "<div class='row'>" + "".join(cells) + "</div>"


def lineage_page(data: dict[str, Any]) -> str:
    """The HTML of one lineage's page (no script)."""
    lin = data["lineage"]
    lid = int(lin["lineage_id"])
    steps = data["steps"]
    life = {r["step"]: r for r in data["life"]}
    trans = {}
    for t in data["transitions"]:
        trans.setdefault(t["step_to"], []).append(t)
    rows = []
    for s in steps:
        r = life[s]
        ts = trans.get(s, [])
        tr_txt = "; ".join(f"r {fmt(t['r'])}, cos {fmt(t['cos'])} ({html.escape(str(t['class']))}, "
                           f"{fmt(t['feature_from'], 'none')}→{fmt(t['feature_to'], 'none')})" for t in ts)
        rows.append(f"<tr class='{'alive' if r['alive'] else 'dead'}' data-step='{s}'><td>{s}</td>"
                    f"<td>{'alive' if r['alive'] else 'not alive'}</td><td>{fmt(r['feature'], '—')}</td>"
                    f"<td>{fmt(100 * r['firing_frac'], '—') + '%' if r['firing_frac'] is not None else '—'}</td>"
                    f"<td>{tr_txt or ('—' if s == steps[0] or not r['alive'] else 'no match recorded')}</td></tr>")
    labels = [str(s) for s in steps]
    firing = [r["firing_frac"] for r in data["life"]]
    r_by = [max((t["r"] for t in trans.get(s, []) if t["r"] is not None), default=None) for s in steps[1:]]
    c_by = [max((t["cos"] for t in trans.get(s, []) if t["cos"] is not None), default=None) for s in steps[1:]]
    chart_fire = _svg_line(labels, [("firing frequency", firing, "#e66100")])
    chart_match = _svg_line(labels, [("r (activation corr.)", r_by, "#1a5fb4"), ("decoder cosine", c_by, "#26a269")],
                            ymax=1.0)
    facts = [("site", lin["site"]), ("kinds", ", ".join(data["reasons"])), ("origin", lin.get("origin")),
             ("parent lineage", fmt(lin.get("parent_lineage"), "none")), ("born at step", fmt(lin.get("birth_step"))),
             ("last alive at step", fmt(lin.get("last_step"))),
             ("died at step", fmt(lin.get("death_step"), "did not die (alive at the last checkpoint)")),
             ("fate", lin.get("fate")), ("merged into", fmt(lin.get("merged_into"), "none")),
             ("lifespan", f"{fmt(lin.get('lifespan_steps'))} steps over {fmt(lin.get('n_checkpoints'))} checkpoints"),
             ("carrier", fmt(lin.get("is_carrier"))), ("in the final scaffold", fmt(lin.get("in_scaffold_final"))),
             ("recruited under a carrier at step",
              fmt(lin.get("recruited_step"), "is a carrier" if lin.get("is_carrier") else "never"))]
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    snaps = []
    for sn in data["snapshots"]:
        scale = max([c["max"] for c in sn["contexts"]], default=0.0)
        ctxs = "".join(context_html(c, scale) for c in sn["contexts"]) or \
            "<p class='muted'>the feature does not fire on the evaluation set at this checkpoint</p>"
        h = sn["histogram"]
        snaps.append(f"<section class='snap' data-step='{sn['step']}'><h3>step {sn['step']} · feature {sn['feature']}</h3>"
                     f"<p>fires on {fmt(100 * h['firing_frac'])}% of {h['n_tokens']} evaluation tokens; "
                     f"largest activation {fmt(sn['max_act'])}</p><h4>Top-activating contexts</h4>"
                     f"<p class='muted'>activating token outlined; orange = activation (darker = larger); "
                     f"· space, ↵ newline, ⇥ tab</p>{ctxs}<div class='row'><div><h4>Activation histogram</h4>"
                     f"{_svg_hist(h)}</div><div><h4>Output tokens (decoder direction through the unembedding)</h4>"
                     f"{_logits_html(sn)}</div></div></section>")
    body = (f"<nav class='top'><a href='index.html'>← feature browser</a><a href='../index.html'>report</a></nav><main>"
            f"<h1>Lineage {lid}</h1><table class='facts'>{fact_rows}</table>"
            f"<h2>Life line</h2><div class='row'><div>{chart_fire}</div><div>{chart_match}</div></div>"
            f"<table class='lifeline'><tr><th>step</th><th>state</th><th>feature</th><th>firing</th>"
            f"<th>match from the previous checkpoint</th></tr>{''.join(rows)}</table>"
            f"<h2>At {len(data['snapshots'])} checkpoints of its life</h2>{''.join(snaps)}</main>")
    return page(f"ontogeny · lineage {lid}", body, [], CSS)


BROWSER_JS = r"""
const D = JSON.parse(document.getElementById('rows').textContent);
const COLS = [['lineage_id','id'],['site','site'],['birth_step','birth'],['death_step','death'],
  ['lifespan_steps','lifespan (steps)'],['n_checkpoints','checkpoints'],['kind','class'],['is_carrier','carrier'],
  ['recruited_step','recruited at'],['mean_firing','mean firing']];
const PER = 50; let page = 0, key = 'lineage_id', dir = 1, rows = D.lineages;
D.lineages.forEach(r => { r.kind = (r.kinds.length ? r.kinds.join(', ') : r.fate) ;
  r.text = [r.lineage_id, r.site, r.kind, r.fate, r.origin, r.is_carrier ? 'carrier' : ''].join(' ').toLowerCase(); });
function show(r, k) {
  const v = r[k];
  if (k === 'death_step') return v === null ? 'alive at end' : v;
  if (k === 'recruited_step') return v !== null ? v : (r.is_carrier ? 'is a carrier' : 'never');
  if (k === 'is_carrier') return v ? 'yes' : 'no';
  if (k === 'mean_firing') return v === null ? 'not measured' : (100 * v).toFixed(2) + '%';
  return v === null ? 'none' : v;
}
function td(text) { const e = document.createElement('td'); e.textContent = String(text); return e; }
function draw() {
  const q = document.getElementById('q').value.trim().toLowerCase();
  rows = D.lineages.filter(r => !q || q.split(/\s+/).every(w => r.text.includes(w)));
  rows.sort((a, b) => { const x = a[key], y = b[key];
    if (x === y) return a.lineage_id - b.lineage_id; if (x === null) return 1; if (y === null) return -1;
    return (x < y ? -1 : 1) * dir; });
  const n = Math.max(1, Math.ceil(rows.length / PER)); page = Math.min(page, n - 1);
  const tb = document.getElementById('body'); tb.replaceChildren();
  for (const r of rows.slice(page * PER, (page + 1) * PER)) {
    const tr = document.createElement('tr'); tr.dataset.id = r.lineage_id;
    for (const [k] of COLS) tr.appendChild(td(show(r, k)));
    const c = document.createElement('td');
    if (r.page) { const a = document.createElement('a'); a.className = 'open';
      a.href = 'lineage_' + String(r.lineage_id).padStart(6, '0') + '.html'; a.textContent = 'open'; c.appendChild(a); }
    else { c.textContent = 'no page'; c.className = 'muted'; }
    tr.appendChild(c); tb.appendChild(tr);
  }
  document.getElementById('count').textContent = rows.length + ' of ' + D.lineages.length + ' lineages · page ' +
    (page + 1) + ' of ' + n;
}
const head = document.getElementById('head');
for (const [k, label] of COLS) { const th = document.createElement('th'); th.textContent = label; th.className = 'sort';
  th.dataset.key = k; th.addEventListener('click', () => { dir = key === k ? -dir : 1; key = k; draw(); });
  head.appendChild(th); }
const th = document.createElement('th'); th.textContent = 'page'; head.appendChild(th);
document.getElementById('q').addEventListener('input', () => { page = 0; draw(); });
document.getElementById('prev').addEventListener('click', () => { page = Math.max(0, page - 1); draw(); });
document.getElementById('next').addEventListener('click', () => { page += 1; draw(); });
draw();
"""


def browser_page(index: dict[str, Any]) -> str:
    """The feature browser: every lineage's row, searchable, sortable, paginated; links to lineage pages."""
    n_pages = sum(1 for r in index["lineages"] if r.get("page"))
    data = f'<script type="application/json" id="rows">{script_json(index)}</script>'
    body = ("<nav class='top'><a href='../index.html'>← report</a></nav><main><h1>Feature browser</h1>"
            f"<p>Every lineage of the study ({len(index['lineages'])}); {n_pages} have a page (the carriers, the "
            "largest lineages of each kind and any named in the study's <code>features.lineages</code>). "
            "Click a column to sort; search matches id, site, class and fate (words combine).</p>"
            "<p><input type='search' id='q' placeholder='search, e.g. carrier blocks.0'> "
            "<span class='pager'><button id='prev'>◀ previous</button><button id='next'>next ▶</button></span> "
            "<span id='count' class='muted'></span></p>"
            f"<table id='lineages'><thead><tr id='head'></tr></thead><tbody id='body'></tbody></table>{data}</main>")
    return page("ontogeny · feature browser", body, [BROWSER_JS], CSS)


def write_feature_pages(data_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Render `data_dir/index.json` and every `lineage_*.json` into `out_dir` (HTML, atomically)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = json.loads((data_dir / "index.json").read_text())
    n = 0
    for f in sorted(data_dir.glob("lineage_*.json")):
        with atomic_path(out_dir / f"{f.stem}.html") as tmp:
            tmp.write_text(lineage_page(json.loads(f.read_text())))
        n += 1
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(browser_page(index))
    return {"browser": out_dir / "index.html", "n_pages": n, "n_lineages": len(index["lineages"])}

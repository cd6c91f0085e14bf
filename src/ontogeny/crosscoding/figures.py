"""Figure data of a crosscode study (plotly JSON via `store.figures.write_figure`), from its table rows alone.

crosscoder_reldec_hist: one-vs-all RelDec of the alive latents (the continuous measure, ideal 1/K when
shared); crosscoder_presence: presence classes of the alive latents; crosscoder_presence_sensitivity: the
class counts against tau; crosscoder_relie_taxonomy: RelIE classes (with "no effect") of each task's alive
latents; crosscoder_top_features: per presence class, the most active latents with their contexts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from ontogeny.crosscoding.config import CrosscodeConfig
from ontogeny.crosscoding.presence import NO_EFFECT, class_order
from ontogeny.store.figures import write_figure


def _ordered(classes: set[str], cfg: CrosscodeConfig) -> list[str]:
    known = [c for c in class_order(cfg.names) + [NO_EFFECT] if c in classes]
    return known + sorted(classes - set(known))


def reldec_hist(rows: list[dict], cfg: CrosscodeConfig) -> go.Figure:
    alive = [r for r in rows if r["freq"] > 0]
    fig = go.Figure([go.Histogram(x=[r[f"reldec_{n}"] for r in alive], name=f"RelDec {n}",
                                  xbins={"start": 0, "end": 1, "size": 0.025}, opacity=0.6) for n in cfg.names])
    fig.add_vline(x=1 / len(cfg.names), line_dash="dash", annotation_text="1/K (shared)")
    fig.update_layout(barmode="overlay", title="One-vs-all relative decoder norm of alive latents",
                      xaxis_title="||d_m|| / sum_m' ||d_m'||", yaxis_title="latents")
    return fig


def presence_bar(rows: list[dict], cfg: CrosscodeConfig) -> go.Figure:
    counts = Counter(r["reldec_class"] for r in rows if r["freq"] > 0)
    classes = _ordered(set(counts), cfg)
    fig = go.Figure(go.Bar(x=classes, y=[counts[c] for c in classes]))
    fig.update_layout(title=f"Presence classes of alive latents (norm_m / max norm >= {cfg.presence_tau:g})",
                      yaxis_title="latents")
    return fig


def sensitivity_lines(sens_rows: list[dict], cfg: CrosscodeConfig) -> go.Figure:
    taus = sorted({r["tau"] for r in sens_rows})
    classes = _ordered({r["class"] for r in sens_rows}, cfg)
    n = {(r["tau"], r["class"]): r["latents"] for r in sens_rows}
    fig = go.Figure([go.Scatter(x=taus, y=[n.get((t, c), 0) for t in taus], mode="lines+markers", name=c)
                     for c in classes])
    fig.add_vline(x=cfg.presence_tau, line_dash="dash", annotation_text="tau used")
    fig.update_layout(title="Presence classes against the threshold tau", xaxis_title="tau",
                      yaxis_title="alive latents")
    return fig


def relie_taxonomy(rows: list[dict], alive: set[int], cfg: CrosscodeConfig) -> go.Figure:
    counts: dict[str, Counter] = {}
    for r in rows:
        if r["latent"] in alive:
            counts.setdefault(r["task"], Counter())[r["relie_class"]] += 1
    classes = _ordered({c for cnt in counts.values() for c in cnt}, cfg)
    fig = go.Figure([go.Bar(name=t, x=classes, y=[cnt.get(c, 0) for c in classes]) for t, cnt in counts.items()])
    fig.update_layout(barmode="group", title="RelIE classes of alive latents per task ('no effect': summed |IE| "
                      "at or below the random-direction noise floor)", yaxis_title="latents")
    return fig


def top_features(lat_rows: list[dict], ctx_rows: list[dict], cfg: CrosscodeConfig) -> go.Figure:
    by_lat: dict[int, list[str]] = {}
    for r in ctx_rows:
        by_lat.setdefault(r["latent"], []).append(r["context"].replace("\n", "\\n"))
    by_class: dict[str, list[dict]] = {}
    for r in lat_rows:
        if r["freq"] > 0 and r["latent"] in by_lat:
            by_class.setdefault(r["reldec_class"], []).append(r)
    table: list[list[Any]] = []
    for cls in _ordered(set(by_class), cfg):
        for r in sorted(by_class[cls], key=lambda r: -r["mean_act"])[:cfg.features_per_class]:
            rel = " / ".join(f"{r[f'reldec_{n}']:.2f}" for n in cfg.names)
            table.append([cls, r["latent"], rel, f"{r['freq']:.4f}", " | ".join(by_lat[r["latent"]][:3])])
    header = ["class", "latent", "RelDec " + "/".join(cfg.names), "freq", "top contexts"]
    cols = list(zip(*table)) if table else [[] for _ in header]
    fig = go.Figure(go.Table(header={"values": header}, cells={"values": cols, "align": "left"},
                             columnwidth=[2, 1, 2, 1, 10]))
    fig.update_layout(title="Top latents per presence class, with their top-activating contexts")
    return fig


def write_figures(folder: Path, tables: dict[str, list[dict]], cfg: CrosscodeConfig) -> dict[str, Path]:
    """All crosscode figures that the tables support, as `<figure>.<site>.<steps>[.<name>].json`."""
    suffix = "." + cfg.tag
    lat = tables["crosscoder_latents"]
    figs = {"crosscoder_reldec_hist": reldec_hist(lat, cfg), "crosscoder_presence": presence_bar(lat, cfg)}
    if tables.get("crosscoder_presence_sensitivity"):
        figs["crosscoder_presence_sensitivity"] = sensitivity_lines(tables["crosscoder_presence_sensitivity"], cfg)
    if tables.get("crosscoder_effects"):
        alive = {r["latent"] for r in lat if r["freq"] > 0}
        figs["crosscoder_relie_taxonomy"] = relie_taxonomy(tables["crosscoder_effects"], alive, cfg)
    if tables.get("crosscoder_contexts"):
        figs["crosscoder_top_features"] = top_features(lat, tables["crosscoder_contexts"], cfg)
    return {f"{name}.json": write_figure(folder, name + suffix, fig) for name, fig in figs.items()}

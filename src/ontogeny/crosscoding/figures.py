"""Figures of a crosscode study (plotly HTML + matplotlib PNG), built from its table rows alone.

crosscoder_reldec_hist: RelDec of the alive latents, with the class cuts; crosscoder_relie_taxonomy: RelIE
classes of each task's top-|IE| latents; crosscoder_top_features: per RelDec class, the most active
latents with their top-activating contexts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from ontogeny.crosscoding.config import CrosscodeConfig  # noqa: E402
from ontogeny.report.figures import save_figure  # noqa: E402


def _save(fig_plotly: go.Figure, fig_mpl, folder: Path, name: str) -> dict[str, Path]:
    paths = save_figure(folder, name, fig_plotly, fig_mpl)
    return {f"{name}.{kind}": path for kind, path in paths.items()}


def _reldec_series(rows: list[dict], cfg: CrosscodeConfig) -> dict[str, list[float]]:
    alive = [r for r in rows if r["freq"] > 0]
    names = cfg.names
    if len(names) == 2:
        col = f"reldec_{names[0]}_{names[1]}"
        return {f"RelDec = |d_{names[1]}| / (|d_{names[0]}| + |d_{names[1]}|)": [r[col] for r in alive]}
    return {f"RelDec one-vs-all, {n}": [r[f"reldec_{n}"] for r in alive] for n in names}


def reldec_hist(rows: list[dict], cfg: CrosscodeConfig, folder: Path, suffix: str = "") -> dict[str, Path]:
    series = _reldec_series(rows, cfg)
    fig = go.Figure([go.Histogram(x=v, name=k, xbins={"start": 0, "end": 1, "size": 0.025}, opacity=0.6)
                     for k, v in series.items()])
    for x in (cfg.low, cfg.high):
        fig.add_vline(x=x, line_dash="dash")
    fig.update_layout(barmode="overlay", title="Relative decoder norm of alive latents",
                      xaxis_title="RelDec", yaxis_title="latents")
    mfig, ax = plt.subplots(figsize=(6, 3.5))
    for k, v in series.items():
        ax.hist(v, bins=40, range=(0, 1), alpha=0.6, label=k)
    for x in (cfg.low, cfg.high):
        ax.axvline(x, ls="--", c="k", lw=0.8)
    ax.set_xlabel("RelDec")
    ax.set_ylabel("latents")
    ax.legend(fontsize=7)
    return _save(fig, mfig, folder, "crosscoder_reldec_hist" + suffix)


def relie_taxonomy(rows: list[dict], folder: Path, suffix: str = "") -> dict[str, Path]:
    counts: dict[str, Counter] = {}
    for r in rows:
        if r["top"]:
            counts.setdefault(r["task"], Counter())[r["relie_class"]] += 1
    classes = sorted({c for cnt in counts.values() for c in cnt})
    fig = go.Figure([go.Bar(name=t, x=classes, y=[cnt.get(c, 0) for c in classes]) for t, cnt in counts.items()])
    fig.update_layout(barmode="group", title="RelIE classes of each task's top-|IE| latents",
                      yaxis_title="latents")
    mfig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(counts))
    for i, (t, cnt) in enumerate(counts.items()):
        ax.bar([j + i * width for j in range(len(classes))], [cnt.get(c, 0) for c in classes], width, label=t)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(classes))], classes, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("latents")
    if counts:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no latent passed the IE threshold", ha="center", transform=ax.transAxes)
    return _save(fig, mfig, folder, "crosscoder_relie_taxonomy" + suffix)


def top_features(lat_rows: list[dict], ctx_rows: list[dict], cfg: CrosscodeConfig, folder: Path,
                 suffix: str = "") -> dict[str, Path]:
    by_lat: dict[int, list[str]] = {}
    for r in ctx_rows:
        by_lat.setdefault(r["latent"], []).append(r["context"].replace("\n", "\\n"))
    table: list[list[Any]] = []
    by_class: dict[str, list[dict]] = {}
    for r in lat_rows:
        if r["freq"] > 0 and r["latent"] in by_lat:
            by_class.setdefault(r["reldec_class"], []).append(r)
    for cls in sorted(by_class):
        for r in sorted(by_class[cls], key=lambda r: -r["mean_act"])[:cfg.features_per_class]:
            rel = " / ".join(f"{r[f'reldec_{n}']:.2f}" for n in cfg.names)
            table.append([cls, r["latent"], rel, f"{r['freq']:.4f}", " | ".join(by_lat[r["latent"]][:3])])
    header = ["class", "latent", "RelDec " + "/".join(cfg.names), "freq", "top contexts"]
    cols = list(zip(*table)) if table else [[] for _ in header]
    fig = go.Figure(go.Table(header={"values": header}, cells={"values": cols, "align": "left"},
                             columnwidth=[2, 1, 2, 1, 10]))
    fig.update_layout(title="Top latents per RelDec class, with their top-activating contexts")
    mfig, ax = plt.subplots(figsize=(11, 0.17 * len(table) + 0.6))
    ax.axis("off")
    lines = ["  ".join(str(c)[:90] for c in row) for row in table] or ["(no alive latents)"]
    ax.text(0, 1, "\n".join(lines), family="monospace", fontsize=7, va="top")
    return _save(fig, mfig, folder, "crosscoder_top_features" + suffix)


def write_figures(folder: Path, tables: dict[str, list[dict]], cfg: CrosscodeConfig) -> dict[str, Path]:
    """All crosscode figures that the tables support, named `<figure>.<site>.<steps>.{html,png}`."""
    suffix = "." + cfg.tag
    out = reldec_hist(tables["crosscoder_latents"], cfg, folder, suffix)
    if tables.get("crosscoder_effects"):
        out.update(relie_taxonomy(tables["crosscoder_effects"], folder, suffix))
    out.update(top_features(tables["crosscoder_latents"], tables.get("crosscoder_contexts", []), cfg, folder,
                            suffix))
    return out

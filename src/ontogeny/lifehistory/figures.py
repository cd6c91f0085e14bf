"""Life-history figures from table rows: lineage river, turnover vs log step, survival, ablation vs controls.

Each figure is drawn twice from the same rows: plotly (all four in one self-contained HTML page) and
matplotlib (one PNG each), so PNGs need no browser. Figures read tables, never live analysis objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go

from ontogeny.report.figures import save_figure

Rows = Sequence[Mapping[str, Any]]


def river(lineages: Rows, steps: Sequence[int], n_cohorts: int = 6) -> tuple[go.Figure, Any]:
    """Alive lineages per checkpoint, stacked by birth cohort, with carriers as their own bottom band."""
    K = len(steps)
    step_index = {s: k for k, s in enumerate(steps)}
    births = sorted({step_index[r["birth_step"]] for r in lineages})
    edges = np.unique(np.quantile(births, np.linspace(0, 1, n_cohorts + 1)).round().astype(int)) if births else [0]
    bands: dict[str, np.ndarray] = {"carriers": np.zeros(K)}
    for r in lineages:
        b, e = step_index[r["birth_step"]], step_index[r["last_step"]]
        if r["is_carrier"]:
            name = "carriers"
        else:
            c = int(np.searchsorted(edges[1:-1], b, side="right")) if len(edges) > 2 else 0
            lo = steps[edges[c]] if c < len(edges) else steps[b]
            name = f"born ≥ step {lo}"
        bands.setdefault(name, np.zeros(K))[b:e + 1] += 1
    x = list(range(K))
    pfig = go.Figure()
    for name, y in bands.items():
        pfig.add_trace(go.Scatter(x=x, y=y, name=name, stackgroup="one", mode="lines"))
    pfig.update_layout(title="Lineage river: alive features by birth cohort", xaxis_title="checkpoint (step)",
                       yaxis_title="alive lineages", xaxis=dict(tickvals=x, ticktext=[str(s) for s in steps]))
    mfig, ax = plt.subplots(figsize=(8, 4))
    ax.stackplot(x, *bands.values(), labels=list(bands))
    ax.set_xticks(x, [str(s) for s in steps], rotation=60, fontsize=7)
    ax.set(title="Lineage river: alive features by birth cohort", xlabel="checkpoint (step)", ylabel="alive lineages")
    ax.legend(fontsize=7, loc="upper left")
    mfig.tight_layout()
    return pfig, mfig


def turnover(rows: Rows, cutoff: float) -> tuple[go.Figure, Any]:
    """Events per training step for each transition against its end step (log axis), early cut-off marked."""
    sites = list(dict.fromkeys(r["site"] for r in rows))
    pfig = go.Figure()
    mfig, ax = plt.subplots(figsize=(8, 4))
    ylog = any(r["rate"] > 0 for r in rows)  # a log axis needs something above zero
    for s in sites:
        sel = [r for r in rows if r["site"] == s and (r["rate"] > 0 or not ylog)]
        xs, ys = [r["step_to"] for r in sel], [r["rate"] for r in sel]
        pfig.add_trace(go.Scatter(x=xs, y=ys, name=s, mode="lines+markers"))
        ax.plot(xs, ys, marker="o", label=s)
    pfig.add_vline(x=cutoff, line_dash="dash")
    pfig.update_layout(title="Turnover rate (born+died+transformed+split+merge per step)",
                       xaxis_title="step (end of transition)", yaxis_title="events / step", xaxis_type="log",
                       yaxis_type="log" if ylog else "linear")
    ax.axvline(cutoff, ls="--", color="grey", label=f"early cut-off ({cutoff:g})")
    ax.set(xscale="log", yscale="log" if ylog else "linear", title="Turnover rate", xlabel="step (end of transition)",
           ylabel="events / step")
    ax.legend(fontsize=7)
    mfig.tight_layout()
    return pfig, mfig


def survival(rows: Rows) -> tuple[go.Figure, Any]:
    """Kaplan-Meier survival of lineages (checkpoints alive), all / carriers / others."""
    pfig = go.Figure()
    mfig, ax = plt.subplots(figsize=(6, 4))
    for g in dict.fromkeys(r["group"] for r in rows):
        sel = [r for r in rows if r["group"] == g]
        xs, ys = [r["checkpoints"] for r in sel], [r["survival"] for r in sel]
        pfig.add_trace(go.Scatter(x=xs, y=ys, name=g, mode="lines", line_shape="hv"))
        ax.step(xs, ys, where="post", label=g)
    pfig.update_layout(title="Lineage survival (Kaplan-Meier)", xaxis_title="checkpoints alive",
                       yaxis_title="S(t)", yaxis_range=[0, 1.05])
    ax.set(title="Lineage survival (Kaplan-Meier)", xlabel="checkpoints alive", ylabel="S(t)", ylim=(0, 1.05))
    ax.legend(fontsize=7)
    mfig.tight_layout()
    return pfig, mfig


def ablation(rows: Rows, metric: str = "delta_ce") -> tuple[go.Figure, Any]:
    """Distribution of the joint-ablation effect over control populations, the carriers' effect marked."""
    joint = [r for r in rows if r["kind"] == "joint"]
    ctrl = [r[metric] for r in joint if r["population"].startswith("control")]
    car = [r[metric] for r in joint if r["population"] == "carriers"]
    pfig = go.Figure(go.Histogram(x=ctrl, name="count-matched controls"))
    mfig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(ctrl, bins=30, color="grey", label="count-matched controls")
    for v in car:
        pfig.add_vline(x=v, line_color="red", annotation_text="carriers")
        ax.axvline(v, color="red", label="carriers")
    pfig.update_layout(title=f"Joint cross-layer ablation: {metric}", xaxis_title=metric, yaxis_title="populations")
    ax.set(title=f"Joint cross-layer ablation: {metric}", xlabel=metric, ylabel="populations")
    ax.legend(fontsize=7)
    mfig.tight_layout()
    return pfig, mfig


def write_figures(figs: Mapping[str, tuple[go.Figure, Any]], out_dir: Path) -> dict[str, Path]:
    """Each figure as `lifehistory_<name>.{json,html,png}` (see `ontogeny.report.figures`)."""
    out: dict[str, Path] = {}
    for name, (pfig, mfig) in figs.items():
        paths = save_figure(out_dir, f"lifehistory_{name}", pfig, mfig)
        out[name] = paths["png"]
        out[f"{name}_html"] = paths["html"]
    return out

"""Life-history figures as plotly figure data, built from table rows (never from live analysis objects).

river (alive lineages by birth cohort), turnover (events per step against the spacing-null band, log
axes), survival (Kaplan-Meier), ablation (carriers vs count-matched controls), carriers (the carrier-
count sensitivity curve), sensitivity (hierarchy edges over tau_in x activity threshold) and precedence
(lag from function to direction). Written as JSON by `store.figures.write_figure`; the report renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ontogeny.store.figures import write_figure

Rows = Sequence[Mapping[str, Any]]


def river(lineages: Rows, steps: Sequence[int], n_cohorts: int = 6) -> go.Figure:
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
    fig = go.Figure()
    for name, y in bands.items():
        fig.add_trace(go.Scatter(x=x, y=y.tolist(), name=name, stackgroup="one", mode="lines"))
    fig.update_layout(title="Lineage river: alive features by birth cohort", xaxis_title="checkpoint (step)",
                      yaxis_title="alive lineages", xaxis=dict(tickvals=x, ticktext=[str(s) for s in steps]))
    return fig


def turnover(null_rows: Rows, window: tuple[float, float] | None = None, site: str = "all") -> go.Figure:
    """Events per training step per transition (at its end step), the two spacing nulls scaled to the
    same total of events, and the 95% Poisson band under either null; the early window shaded."""
    sel = [r for r in null_rows if r["site"] == site]
    xs = [r["step_to"] for r in sel]
    pos = lambda v: max(v, 1e-9)  # noqa: E731 (log axis)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=[pos(r["band_high"]) for r in sel], mode="lines", line=dict(width=0),
                             showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=xs, y=[pos(r["band_low"]) for r in sel], mode="lines", line=dict(width=0),
                             fill="tonexty", fillcolor="rgba(128,128,128,0.3)", name="spacing nulls, 95% band"))
    fig.add_trace(go.Scatter(x=xs, y=[pos(r["rate_null_constant"]) for r in sel], mode="lines",
                             line=dict(dash="dash", color="grey"), name="null: constant events / transition"))
    fig.add_trace(go.Scatter(x=xs, y=[pos(r["rate_null_logspan"]) for r in sel], mode="lines",
                             line=dict(dash="dot", color="black"), name="null: events ∝ log-step span"))
    fig.add_trace(go.Scatter(x=xs, y=[pos(r["rate"]) for r in sel], mode="lines+markers", name=f"observed ({site})"))
    if window is not None and window[1] > max(window[0], 1e-9):
        fig.add_vrect(x0=max(window[0], min(xs) if xs else 1), x1=window[1], fillcolor="orange", opacity=0.15,
                      line_width=0, annotation_text="early window")
    fig.update_layout(title="Turnover (born+died+transformed+split+merge per step) against the spacing nulls",
                      xaxis_title="step (end of transition)", yaxis_title="events / step")
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def survival(rows: Rows) -> go.Figure:
    """Kaplan-Meier survival of lineages (checkpoints alive), all / carriers / others."""
    fig = go.Figure()
    for g in dict.fromkeys(r["group"] for r in rows):
        sel = [r for r in rows if r["group"] == g]
        fig.add_trace(go.Scatter(x=[r["checkpoints"] for r in sel], y=[r["survival"] for r in sel], name=g,
                                 mode="lines", line_shape="hv"))
    fig.update_layout(title="Lineage survival (Kaplan-Meier)", xaxis_title="checkpoints alive", yaxis_title="S(t)",
                      yaxis_range=[0, 1.05])
    return fig


def ablation(rows: Rows, metric: str = "delta_ce") -> go.Figure:
    """Distribution of the joint-ablation effect over control populations, the carriers' effect marked."""
    joint = [r for r in rows if r["kind"] == "joint"]
    fig = go.Figure(go.Histogram(x=[r[metric] for r in joint if r["population"].startswith("control")],
                                 name="count-matched controls"))
    for v in [r[metric] for r in joint if r["population"] == "carriers"]:
        fig.add_vline(x=v, line_color="red", annotation_text="carriers")
    fig.update_layout(title=f"Joint cross-layer ablation: {metric}", xaxis_title=metric, yaxis_title="populations")
    return fig


def carriers(curve: Rows) -> go.Figure:
    """Carrier-count sensitivity: reach of the n-th persistent lineage and final recruitment with the top n."""
    fig = go.Figure()
    n = [r["n_carriers"] for r in curve]
    fig.add_trace(go.Scatter(x=n, y=[r["reach"] for r in curve], name="reach of the n-th", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=n, y=[r["recruitment_final"] for r in curve], name="final recruitment (top n)",
                             mode="lines+markers", yaxis="y2"))
    chosen = sum(bool(r["chosen"]) for r in curve)
    if chosen:
        fig.add_vline(x=chosen, line_dash="dash", annotation_text=f"chosen: {chosen}")
    fig.update_layout(title="Carriers: persistent lineages ranked by reach", xaxis_title="carriers kept (n)",
                      yaxis_title="descendants", yaxis2=dict(title="recruitment", overlaying="y", side="right"))
    return fig


def sensitivity(rows: Rows) -> go.Figure:
    """Edges of the final hierarchy over tau_in (x) for each activity threshold (one line each)."""
    fig = go.Figure()
    for act in sorted({r["active_threshold"] for r in rows}):
        sel = sorted((r for r in rows if r["active_threshold"] == act), key=lambda r: r["tau_in"])
        fig.add_trace(go.Scatter(x=[r["tau_in"] for r in sel], y=[r["n_edges"] for r in sel], mode="lines+markers",
                                 name=f"active > {act:g} x max", text=[f"{r['n_carriers']} carriers" for r in sel]))
    fig.update_layout(title="Hierarchy sensitivity: edges in the final hierarchy", xaxis_title="tau_in",
                      yaxis_title="edges")
    return fig


def precedence(rows: Rows) -> go.Figure:
    """Lag (checkpoints) from the first match of function (r) to the first match of direction (cosine)."""
    fig = go.Figure()
    for name, sel in (("all lineages", rows), ("carriers", [r for r in rows if r["is_carrier"]])):
        lags = [r["lag_checkpoints"] for r in sel if r["lag_checkpoints"] is not None]
        if lags:
            fig.add_trace(go.Histogram(x=lags, name=name, opacity=0.7))
    fig.update_layout(title="Function precedes direction? lag = direction step - function step", barmode="overlay",
                      xaxis_title="lag (checkpoints; > 0: function first)", yaxis_title="lineages")
    return fig


def write_figures(figs: Mapping[str, go.Figure], out_dir: Path) -> dict[str, Path]:
    """Each figure as `<out_dir>/lifehistory_<name>.json` (plotly figure data); returns name -> path."""
    return {name: write_figure(out_dir, f"lifehistory_{name}", fig) for name, fig in figs.items()}

"""SLT figures as plotly figure data (`store.figures.write_figure`): LLC curve, SGLD traces, calibration,
response-matrix heatmap and the PC scatter of heads.

Why: analyses describe figures; `ontogeny.report` renders them (HTML and PNG). Inputs are table rows
(lists of dicts, as read from the run's Parquet files) or an estimate's per-draw trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ontogeny.store.figures import write_figure


def _log_spaced(xs: Sequence[float]) -> bool:
    xs = [x for x in xs if x is not None]
    return bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20


def llc_curve(rows: list[dict], out_dir: Path) -> Path:
    """LLC (mean ± between-chain std) against training step, one line per component; unconverged marked ×."""
    fig = go.Figure()
    comps = list(dict.fromkeys(r["component"] for r in rows))
    for comp in comps:
        g = sorted((r for r in rows if r["component"] == comp), key=lambda r: r["step"])
        symbols = ["circle" if r.get("converged", True) else "x" for r in g]
        fig.add_trace(go.Scatter(x=[r["step"] for r in g], y=[r["llc_mean"] for r in g], name=str(comp),
                                 mode="lines+markers", marker={"symbol": symbols},
                                 error_y={"type": "data", "array": [r["llc_std"] for r in g]}))
    steps = [r["step"] for r in rows]
    fig.update_layout(title="Local learning coefficient through training (× = not converged)",
                      xaxis_title="step", yaxis_title="LLC λ̂")
    if _log_spaced(steps):
        fig.update_xaxes(type="log")
    return write_figure(out_dir, "llc_curve", fig)


def trace_plot(traces: Mapping[str, tuple[list[list[float]], int]], out_dir: Path, name: str = "llc_traces") -> Path:
    """Per-chain traces of nβ·(L − L(w*)) against draw, one panel per estimate, the detected burn-in shaded.

    `traces` maps a label (e.g. 'step 1600 full') to (x[chain][draw], burn-in draws).
    """
    labels = list(traces)
    fig = make_subplots(rows=len(labels), cols=1, subplot_titles=labels, shared_xaxes=False)
    for i, lab in enumerate(labels, start=1):
        x_CD, burn = traces[lab]
        for c, xs in enumerate(x_CD):
            fig.add_trace(go.Scatter(x=list(range(1, len(xs) + 1)), y=xs, mode="lines", name=f"chain {c}",
                                     legendgroup=f"chain {c}", showlegend=i == 1, line={"width": 1}), row=i, col=1)
        if burn > 0:
            fig.add_vrect(x0=0.5, x1=burn + 0.5, fillcolor="grey", opacity=0.2, line_width=0, row=i, col=1)
        fig.update_yaxes(title_text="nβ(L − L*)", row=i, col=1)
    fig.update_xaxes(title_text="draw", row=len(labels), col=1)
    fig.update_layout(title="SGLD traces per chain (grey: detected burn-in)", height=max(300, 220 * len(labels)))
    return write_figure(out_dir, name, fig)


def calibration_plot(rows: list[dict], out_dir: Path, name: str = "llc_calibration") -> Path:
    """Estimate against step size ε, one line per γ; failed grid points hollow, the chosen one starred."""
    fig = go.Figure()
    for gam in sorted({r["gamma"] for r in rows}):
        g = sorted((r for r in rows if r["gamma"] == gam), key=lambda r: r["lr"])
        fig.add_trace(go.Scatter(
            x=[r["lr"] for r in g], y=[r["llc_mean"] for r in g], name=f"γ = {gam:g}", mode="lines+markers",
            error_y={"type": "data", "array": [r["llc_std"] for r in g]},
            marker={"size": [16 if r["chosen"] else 9 for r in g],
                    "symbol": ["star" if r["chosen"] else ("circle" if r["passed"] else "circle-open") for r in g]},
            text=[r["reason"] for r in g], hovertemplate="ε %{x:.2g}: λ̂ %{y:.4g}<br>%{text}"))
    fig.update_layout(title="SGLD calibration: λ̂ against ε per γ (hollow: failed a criterion, ★ chosen)",
                      xaxis_title="step size ε", yaxis_title="LLC λ̂")
    fig.update_xaxes(type="log")
    return write_figure(out_dir, name, fig)


def response_heatmap(matrix_PK, probes: list[str], components: list[str], out_dir: Path,
                     name: str = "response_matrix") -> Path:
    """Heatmap of the response matrix χ[probe, component] (diverging colours centred on 0)."""
    matrix_PK = matrix_PK.detach().cpu().numpy() if hasattr(matrix_PK, "detach") else matrix_PK
    fig = go.Figure(go.Heatmap(z=matrix_PK.tolist(), x=components, y=probes, colorscale="RdBu_r", zmid=0.0,
                               colorbar={"title": "χ"}))
    fig.update_layout(title="Response matrix (susceptibility χ, probe × head)")
    return write_figure(out_dir, name, fig)


def pc_scatter(rows: list[dict], out_dir: Path, name: str = "pc_scatter_heads") -> Path:
    """Heads at their loadings on PC1/PC2 of the token-level response matrix, coloured by induction score."""
    fig = go.Figure(go.Scatter(
        x=[r["pc1"] for r in rows], y=[r["pc2"] for r in rows], mode="markers+text",
        text=[r["component"] for r in rows], textposition="top center",
        marker={"size": 12, "color": [r["induction_score"] for r in rows], "colorscale": "Viridis",
                "showscale": True, "colorbar": {"title": "induction"}}))
    fig.update_layout(title="Heads in response-matrix PC space", xaxis_title="PC1 loading",
                      yaxis_title="PC2 loading")
    return write_figure(out_dir, name, fig)

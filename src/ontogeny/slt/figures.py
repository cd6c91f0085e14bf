"""SLT figures from tables: the LLC curve, the response-matrix heatmap and the PC scatter of heads.

Each figure is written twice, atomically: plotly HTML (self-contained, interactive) and a matplotlib PNG
(no kaleido needed). Inputs are table rows (lists of dicts, as read from the run's Parquet files).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import plotly.graph_objects as go

from ontogeny.report.figures import save_figure


def _save(fig_plotly: go.Figure, fig_mpl, out_dir: Path, name: str) -> list[Path]:
    return list(save_figure(out_dir, name, fig_plotly, fig_mpl, dpi=120).values())


def llc_curve(rows: list[dict], out_dir: Path) -> list[Path]:
    """LLC (mean ± std over chains) against training step, one line per component."""
    fig = go.Figure()
    f, ax = plt.subplots(figsize=(7, 4))
    comps = list(dict.fromkeys(r["component"] for r in rows))
    for comp in comps:
        g = sorted((r for r in rows if r["component"] == comp), key=lambda r: r["step"])
        x, y, e = [r["step"] for r in g], [r["llc_mean"] for r in g], [r["llc_std"] for r in g]
        fig.add_trace(go.Scatter(x=x, y=y, name=str(comp), mode="lines+markers",
                                 error_y={"type": "data", "array": e}))
        ax.errorbar(x, y, yerr=e, marker="o", label=str(comp), capsize=2)
    steps = [r["step"] for r in rows]
    log_x = min(steps) > 0 and max(steps) / min(steps) > 20
    fig.update_layout(title="Local learning coefficient through training", xaxis_title="step",
                      yaxis_title="LLC λ̂", xaxis_type="log" if log_x else "linear")
    ax.set_xlabel("step")
    ax.set_ylabel("LLC")
    ax.set_title("Local learning coefficient through training")
    if log_x:
        ax.set_xscale("log")
    if len(comps) <= 12:
        ax.legend(fontsize=7)
    return _save(fig, f, out_dir, "llc_curve")


def response_heatmap(matrix_PK, probes: list[str], components: list[str], out_dir: Path,
                     name: str = "response_matrix") -> list[Path]:
    """Heatmap of the response matrix χ[probe, component] (diverging colours centred on 0)."""
    matrix_PK = matrix_PK.detach().cpu().numpy() if hasattr(matrix_PK, "detach") else matrix_PK
    z = matrix_PK.tolist()
    vmax = float(abs(matrix_PK).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=components, y=probes, colorscale="RdBu_r", zmid=0.0,
                               colorbar={"title": "χ"}))
    fig.update_layout(title="Response matrix (susceptibility χ, probe × head)")
    f, ax = plt.subplots(figsize=(max(5, 0.5 * len(components) + 2), 0.5 * len(probes) + 2))
    im = ax.imshow(matrix_PK, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(components)), components, rotation=90)
    ax.set_yticks(range(len(probes)), probes)
    f.colorbar(im, ax=ax, label="χ")
    ax.set_title("Response matrix (probe × head)")
    return _save(fig, f, out_dir, name)


def pc_scatter(rows: list[dict], out_dir: Path, name: str = "pc_scatter_heads") -> list[Path]:
    """Heads at their loadings on PC1/PC2 of the token-level response matrix, coloured by induction score."""
    x, y = [r["pc1"] for r in rows], [r["pc2"] for r in rows]
    c, names = [r["induction_score"] for r in rows], [r["component"] for r in rows]
    fig = go.Figure(go.Scatter(
        x=x, y=y, mode="markers+text", text=names,
        textposition="top center", marker={"size": 12, "color": c,
                                           "colorscale": "Viridis", "showscale": True,
                                           "colorbar": {"title": "induction"}}))
    fig.update_layout(title="Heads in response-matrix PC space", xaxis_title="PC1 loading",
                      yaxis_title="PC2 loading")
    f, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(x, y, c=c, cmap="viridis", s=60)
    for xi, yi, n in zip(x, y, names):
        ax.annotate(str(n), (xi, yi), fontsize=8, xytext=(3, 3), textcoords="offset points")
    f.colorbar(sc, ax=ax, label="induction score")
    ax.set_xlabel("PC1 loading")
    ax.set_ylabel("PC2 loading")
    ax.set_title("Heads in response-matrix PC space")
    return _save(fig, f, out_dir, name)

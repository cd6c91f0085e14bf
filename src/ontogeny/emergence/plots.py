"""A figure as data (panels of named traces), rendered twice: interactive plotly HTML and a static
matplotlib PNG (plotly's PNG export needs kaleido and a browser, which ontogeny does not require)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence



@dataclass
class Trace:
    """One line or set of markers."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    mode: Literal["lines", "markers", "lines+markers"] = "lines"
    color: str | None = None
    dash: bool = False
    symbol: str = "circle"  # plotly marker symbol; "x" is drawn as a cross in both renderers
    showlegend: bool = True


@dataclass
class Figure:
    """A single-panel figure with axis labels and optional log axes."""

    title: str
    xlabel: str
    ylabel: str
    traces: list[Trace] = field(default_factory=list)
    logx: bool = False
    logy: bool = False
    hlines: list[tuple[float, str]] = field(default_factory=list)
    xticklabels: list[str] | None = None  # categorical x: labels for x = 0, 1, 2, ...


def to_plotly(fig: Figure):
    import plotly.graph_objects as go

    out = go.Figure()
    for t in fig.traces:
        out.add_trace(
            go.Scatter(
                x=list(t.x),
                y=list(t.y),
                name=t.name,
                mode=t.mode,
                showlegend=t.showlegend,
                line={"color": t.color, "dash": "dash" if t.dash else "solid"},
                marker={"color": t.color, "symbol": t.symbol, "size": 8},
            )
        )
    for y, label in fig.hlines:
        out.add_hline(y=y, line_dash="dot", annotation_text=label)
    out.update_layout(
        title=fig.title, xaxis_title=fig.xlabel, yaxis_title=fig.ylabel, template="plotly_white"
    )
    if fig.xticklabels:
        out.update_xaxes(
            tickmode="array", tickvals=list(range(len(fig.xticklabels))), ticktext=fig.xticklabels
        )
    if fig.logx:
        out.update_xaxes(type="log")
    if fig.logy:
        out.update_yaxes(type="log")
    return out


def to_matplotlib(fig: Figure):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, ax = plt.subplots(figsize=(8, 5) if fig.xticklabels else (7, 4.5), dpi=110)
    for t in fig.traces:
        label = t.name if t.showlegend else None
        ls = "--" if t.dash else "-"
        marker = {"x": "x", "line-ew-open": "_", "diamond": "D"}.get(t.symbol, "o")
        if t.mode == "markers":
            ax.scatter(
                list(t.x),
                list(t.y),
                label=label,
                color=t.color,
                marker=marker,
                s=300 if marker == "_" else 24,
                linewidths=2 if marker == "_" else None,
            )
        else:
            ax.plot(
                list(t.x),
                list(t.y),
                ls,
                label=label,
                color=t.color,
                marker=marker if "markers" in t.mode else None,
                ms=4,
                lw=1.2,
            )
    for y, label in fig.hlines:
        ax.axhline(y, ls=":", color="grey", lw=1)
        ax.annotate(label, (1.0, y), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8)
    if fig.xticklabels:
        ax.set_xticks(range(len(fig.xticklabels)))
        ax.set_xticklabels(fig.xticklabels, rotation=60, ha="right", fontsize=7)
    ax.set_title(fig.title, fontsize=10)
    ax.set_xlabel(fig.xlabel)
    ax.set_ylabel(fig.ylabel)
    if fig.logx:
        ax.set_xscale("log")
    if fig.logy:
        ax.set_yscale("log")
    if any(t.showlegend for t in fig.traces):
        ax.legend(fontsize=7, loc="best")
    f.tight_layout()
    return f


def save(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write the figure as plotly JSON + HTML and a matplotlib PNG (see `ontogeny.report.figures`)."""
    from ontogeny.report.figures import save_figure

    return list(save_figure(folder, name, to_plotly(fig), to_matplotlib(fig)).values())

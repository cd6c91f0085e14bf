"""A small figure spec for the lab's many line plots (named traces, log axes, reference lines), turned
into plotly figure data and written with `ontogeny.store.figures.write_figure`; the report renders it."""

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


def save(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write the figure's plotly JSON under `folder` (one path, in a list for the callers' convenience)."""
    from ontogeny.store.figures import write_figure

    return [write_figure(folder, name, to_plotly(fig))]

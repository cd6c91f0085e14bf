"""Figure data on disk: an analysis builds a plotly figure and writes it here as JSON; nothing is drawn.

Why: analyses must not depend on the report. They describe a figure (plotly's JSON schema is the
figure-data format); `ontogeny.report` is the one place that renders it (interactive HTML for the
report, a PNG copy through one matplotlib renderer), so no figure is drawn twice by hand.
"""

from __future__ import annotations

from pathlib import Path

from ontogeny.store.run import atomic_path


def write_figure(fig_dir: str | Path, name: str, fig) -> Path:
    """Write `fig_dir/<name>.json` (plotly figure JSON) atomically and return its path.

    `fig` is a `plotly.graph_objects.Figure` (or anything with `to_json()`). Use a log x axis
    (`fig.update_xaxes(type="log")`) wherever the x values are log-spaced checkpoint steps.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name {name!r} must be a plain file stem")
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    path = fig_dir / f"{name}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(fig.to_json())
    return path

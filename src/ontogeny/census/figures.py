"""The census' table (`heads`, `heads_copy`) and figure (score per head over checkpoints, log step axis).

Why: one figure shows when each head becomes a previous-token or induction head and whether the copy
needs it; the tables are what capabilities, susceptibilities and the report read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ontogeny.census.heads import head_means

PANELS = (("prev_token", "previous-token score (attention to i-1)"),
          ("induction", "induction score (attention to i-P+1)"),
          ("ablation_copy_increase", "copy-loss increase when zero-ablated (nats)"))


def census_figure(head_rows: Sequence[Mapping[str, Any]], copy_rows: Sequence[Mapping[str, Any]]):
    """Plotly figure: one line per head for each score (probe-averaged), and the copy gain; log x axis.

    Step 0 cannot sit on a log axis and is drawn at step 1 (said in the axis title).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    means = head_means(head_rows)
    panels = [p for p in PANELS if any(r[p[0]] is not None for r in means)]
    titles = [t for _, t in panels] + ["copy gain: first-copy loss - second-copy loss (nats)"]
    fig = make_subplots(rows=len(titles), cols=1, shared_xaxes=True, subplot_titles=titles)
    comps = sorted({(r["layer"], r["head"]) for r in means})
    for i, (metric, _) in enumerate(panels, start=1):
        for layer, head in comps:
            rs = sorted((r for r in means
                         if (r["layer"], r["head"]) == (layer, head) and r[metric] is not None),
                        key=lambda r: r["step"])
            fig.add_trace(go.Scatter(x=[max(r["step"], 1) for r in rs], y=[r[metric] for r in rs],
                                     mode="lines+markers", name=f"l{layer}h{head}",
                                     legendgroup=f"l{layer}h{head}",
                                     showlegend=i == 1, line={"dash": "solid" if layer % 2 else "dot"}),
                          row=i, col=1)
    probes = sorted({(r["period"], r["offset"]) for r in copy_rows})
    for period, offset in probes:
        rs = sorted((r for r in copy_rows if (r["period"], r["offset"]) == (period, offset)),
                    key=lambda r: r["step"])
        fig.add_trace(go.Scatter(x=[max(r["step"], 1) for r in rs], y=[r["copy_gain"] for r in rs],
                                 mode="lines+markers", name=f"P={period}, offset {offset}"),
                      row=len(titles), col=1)
    fig.update_xaxes(type="log")
    fig.update_xaxes(title_text="training step (log; step 0 drawn at 1)", row=len(titles), col=1)
    fig.update_layout(title="Head census: held-out periods, spans from the whole vocabulary",
                      height=260 * len(titles))
    return fig


def write_census(head_rows: Sequence[Mapping[str, Any]], copy_rows: Sequence[Mapping[str, Any]],
                 tables_dir: str | Path, fig_dir: str | Path, stamp: Mapping[str, Any]) -> dict[str, Path]:
    """Write tables `heads` (one row per checkpoint, head and probe) and `heads_copy` (per checkpoint
    and probe) and figure `heads`; returns their paths."""
    from ontogeny.store.figures import write_figure
    from ontogeny.store.tables import write_table

    tables_dir = Path(tables_dir)
    return {"heads": write_table(tables_dir / "heads.parquet", head_rows, stamp),
            "heads_copy": write_table(tables_dir / "heads_copy.parquet", copy_rows, stamp),
            "figure": write_figure(fig_dir, "heads", census_figure(head_rows, copy_rows))}

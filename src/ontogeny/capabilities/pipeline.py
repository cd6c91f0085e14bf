"""The capabilities unit: curves over a series, their emergence events, tables and figure data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ontogeny.capabilities.config import CapabilityConfig
from ontogeny.capabilities.curves import capability_curves
from ontogeny.capabilities.events import capability_events
from ontogeny.capabilities.probes import PROBES
from ontogeny.store.figures import write_figure
from ontogeny.store.run import file_hash, provenance
from ontogeny.store.tables import write_table


def capability_figure(steps: list[int], ys: list[float], metric: str, event: dict[str, Any]):
    """One capability curve with its biggest jump marked; log step axis (checkpoints are log-spaced;
    step 0 is drawn at 1)."""
    import plotly.graph_objects as go

    x = [max(s, 1) for s in steps]
    jump = event["jump_step"]
    title = f"{metric} over checkpoints (" + (f"biggest jump at step {jump})" if jump is not None
                                             else "too few checkpoints for a change point)")
    fig = go.Figure(go.Scatter(x=x, y=ys, name=metric, mode="lines+markers"))
    if jump is not None:
        fig.add_trace(go.Scatter(x=[max(jump, 1)] * 2, y=[min(ys), max(ys)], name="biggest jump",
                                 mode="lines", line={"color": "grey", "dash": "dash"}))
    fig.update_layout(title=title, xaxis_title="checkpoint step", yaxis_title=metric, template="plotly_white")
    fig.update_xaxes(type="log")
    return fig


def capabilities_run(
    series,
    out_dir: str | Path,
    cfg: CapabilityConfig,
    thresholds: dict[str, float] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Capability curves, per-head scores and their emergence events for a series; writes
    `tables/capabilities*.parquet` and `figures/capability_<metric>.json`."""
    out_dir = Path(out_dir)
    rows, heads, skipped = capability_curves(series, cfg, on_step)
    events = capability_events(rows, thresholds=thresholds)
    inputs = {
        c.describe(): (file_hash(c.path) if c.revision is None else c.revision) for c in series.checkpoints
    }
    prov = provenance(cfg.model_dump(mode="json"), inputs)
    tables = out_dir / "tables"
    write_table(tables / "capabilities.parquet", rows, prov)
    write_table(tables / "capability_heads.parquet", heads, prov)
    write_table(
        tables / "capability_events.parquet",
        [{**e, "all_jumps": json.dumps(e["all_jumps"])} for e in events],
        prov,
    )
    steps = [r["step"] for r in rows]
    by_metric = {e["metric"]: e for e in events}
    headline = [m for name in cfg.probes for m in PROBES[name].headline if m in rows[0]]
    figs = [
        write_figure(out_dir / "figures", f"capability_{metric}",
                     capability_figure(steps, [r[metric] for r in rows], metric, by_metric[metric]))
        for metric in headline
    ]
    return {"rows": rows, "events": events, "skipped": skipped, "figures": [str(p) for p in figs],
            "provenance": prov}

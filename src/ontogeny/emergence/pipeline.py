"""Run-directory steps of the emergence lab: analyse a sweep folder, and compute capability curves
over a checkpoint series, each writing Parquet tables under `tables/` and figures under `figures/`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ontogeny.emergence.analyze import alignment_gain, by_config, claims, plateau_scaling
from ontogeny.emergence.capabilities import CapabilityConfig, capability_curves
from ontogeny.emergence.events import capability_events
from ontogeny.emergence.figures import PALETTE, write_figures
from ontogeny.emergence.plots import Figure, Trace, save
from ontogeny.store.tables import read_table, write_table
from ontogeny.store.run import file_hash, provenance, write_json


def analyze_sweep(out_dir: str | Path, col: str = "t_50") -> dict[str, Any]:
    """Per-config table, claims table, power-law fits and figures from a sweep folder's tables."""
    out_dir = Path(out_dir)
    tables = out_dir / "tables"
    runs = read_table(tables / "emergence_runs.parquet")
    curves = read_table(tables / "emergence_curves.parquet")
    rows = read_table(tables / "emergence_rows.parquet")
    prov = provenance(
        {"col": col},
        {
            f"tables/{n}": file_hash(tables / n)
            for n in ("emergence_runs.parquet", "emergence_curves.parquet", "emergence_rows.parquet")
        },
    )
    cfgs = by_config(runs, col)
    cl = claims(runs, col)
    fits = [
        plateau_scaling(cfgs, arch=a, s=2, bias=b) for a, b in sorted({(c["arch"], c["bias"]) for c in cfgs})
    ]
    write_table(tables / "emergence_configs.parquet", cfgs, prov)
    write_table(tables / "emergence_claims.parquet", [{**c, "holds": str(c["holds"])} for c in cl], prov)
    summary = {
        "col": col,
        "n_runs": len(runs),
        "fits": fits,
        "alignment": alignment_gain(runs, curves),
        "claims": cl,
        "provenance": prov,
    }
    write_json(out_dir / "emergence_analysis.json", summary)
    summary["figures"] = [str(p) for p in write_figures(runs, curves, rows, out_dir / "figures", col)]
    summary["configs"] = cfgs
    return summary


def capabilities_run(
    series,
    out_dir: str | Path,
    cfg: CapabilityConfig,
    thresholds: dict[str, float] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Capability curves, per-head prefix matching and their emergence events for a series."""
    out_dir = Path(out_dir)
    rows, heads = capability_curves(series, cfg, on_step)
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
    figs = []
    steps = [r["step"] for r in rows]
    for i, metric in enumerate(
        m
        for m in (
            "induction_score",
            "rep_acc",
            "prefix_matching_max",
            "digit_p",
            "bracket_acc",
            "pairs_logit_diff",
        )
        if m in rows[0]
    ):
        ev = next(e for e in events if e["metric"] == metric)
        fig = Figure(
            f"{metric} over checkpoints (biggest jump at step {ev['jump_step']})",
            "checkpoint step",
            metric,
            logx=min(steps) > 0,
        )
        fig.traces.append(
            Trace(
                metric,
                steps,
                [r[metric] for r in rows],
                mode="lines+markers",
                color=PALETTE[i % len(PALETTE)],
            )
        )
        if ev["jump_step"] is not None:
            ys = [r[metric] for r in rows]
            fig.traces.append(
                Trace("biggest jump", [ev["jump_step"]] * 2, [min(ys), max(ys)], color="grey", dash=True)
            )
        figs += save(fig, out_dir / "figures", f"capability_{metric}")
    return {"rows": rows, "events": events, "figures": [str(p) for p in figs], "provenance": prov}

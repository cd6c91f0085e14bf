"""Run-directory step of the emergence lab: analyse a sweep folder into Parquet tables under `tables/`
and figure data under `figures/` (capability curves over a checkpoint series are `ontogeny.capabilities`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ontogeny.emergence.analyze import alignment_gain, by_config, plateau_scaling
from ontogeny.emergence.claims import claims
from ontogeny.emergence.figures import write_figures
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

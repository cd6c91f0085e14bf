"""Wall time of the main job (`ontogeny demo`) from an empty run directory, per stage.

Target (issue 8): the demo finishes in at most 10 minutes on 2 CPU cores from a fresh install. The
figure printed is the demo's own wall time (install time is pip's, printed separately by `make demo`);
the ratio is against that 600 s budget, and per-stage seconds come from the run's manifest.
Run: python benchmarks/demo.py [--run-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import emit

BUDGET_S = 600.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", type=Path, default=None, help="where to run (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="ontogeny-demo-")) / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ontogeny", "demo", "--run-dir", str(run_dir), "--report",
                    str(run_dir / "report_copy")], check=True)
    wall = time.perf_counter() - t0
    stages: dict[str, float] = defaultdict(float)
    for p in (run_dir / "manifest").glob("*.json"):
        e = json.loads(p.read_text())
        stages[e["unit"].split("/")[0]] += e["seconds"]
    emit("demo", {"wall_s": wall, "budget_s": BUDGET_S, "ratio_to_budget": wall / BUDGET_S,
                  "stage_seconds": dict(sorted(stages.items(), key=lambda kv: -kv[1])),
                  "report": str(run_dir / "report" / "index.html")})
    if not args.keep and args.run_dir is None:
        shutil.rmtree(run_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

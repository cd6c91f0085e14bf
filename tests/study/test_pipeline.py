"""The study end to end on a tiny series: outputs, resume, partial recompute, Ray (kill: tests/reliability)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ontogeny.store.run import file_hash
from ontogeny.store.tables import query
from ontogeny.study.demo import tiny_config
from ontogeny.study.manifest import Manifest
from ontogeny.study.pipeline import run_study

STEPS = [0, 1, 2, 4, 20, 40]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_study_writes_every_artifact(tiny_study):
    run_dir, out = tiny_study
    assert out["steps"] == STEPS and not out["skipped"]
    for s in STEPS:
        assert (run_dir / "dictionaries" / f"step_{s:06d}" / "blocks.0.hook_resid_post" / "cfg.json").exists()
    for table in ("features", "matches", "lineages", "events", "scaffold", "llc", "capabilities", "crosscoder_latents*",
                  "susceptibility_heads"):
        assert list((run_dir / "tables").glob(f"{table}.parquet")), table
    page = (run_dir / "report" / "index.html").read_text()
    assert "<th>headline</th>" in page and "Plotly.newPlot" in page
    assert "<script src=" not in page  # self-contained: plotly.js is inlined, nothing is fetched
    series = Manifest(run_dir).entry("series")["result"]
    assert series["induction_jump_step"] in STEPS[1:]  # a change point of the logged induction curve
    assert json.loads((run_dir / "figures" / "series_training.json").read_text())["data"]
    study = json.loads((run_dir / "study.json").read_text())
    assert study["status"] == "complete" and study["versions"]["torch"]
    cols, rows = query(run_dir, "SELECT step, llc_mean FROM llc ORDER BY step")
    assert cols == ["step", "llc_mean"] and [r[0] for r in rows] == [0, 40]


def test_rerun_skips_everything(tiny_study, tmp_path):
    run_dir = copy_run(tiny_study[0], tmp_path / "run")
    out = run_study(tiny_config(), run_dir)
    assert out["ran"] == [] and len(out["skipped"]) == len(Manifest(run_dir).all())


def test_changed_config_recomputes_only_dependents(tiny_study, tmp_path):
    run_dir = copy_run(tiny_study[0], tmp_path / "run")
    cfg = tiny_config()
    cfg = cfg.model_copy(update={"dictionaries": cfg.dictionaries.model_copy(update={"k": 3})})
    out = run_study(cfg, run_dir)
    ran = set(out["ran"])
    assert {f"dictionaries/step_{s:06d}" for s in STEPS} <= ran
    assert {"lifehistory", "report"} <= ran
    assert not any(n.startswith(("series", "activations", "llc", "crosscoder", "susceptibility", "capabilities"))
                   for n in ran)


# Kill and resume: tests/reliability/test_kill_resume.py kills the study inside every stage and compares
# every output with this uninterrupted run (it replaced the two-phase test that stood here).


def _close_llc(a: Path, b: Path) -> bool:
    ra = query(a, "SELECT llc_mean FROM llc ORDER BY step")[1]
    rb = query(b, "SELECT llc_mean FROM llc ORDER BY step")[1]
    return all(abs(x[0] - y[0]) < 1e-6 * max(1, abs(y[0])) for x, y in zip(ra, rb))


@pytest.mark.slow
def test_ray_backend_gives_identical_results(tiny_study, tmp_path):
    ray = pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    cfg = tiny_config()
    cfg = cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"backend": "ray"})})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_study(cfg, run_dir)
    finally:
        ray.shutdown()
    ref = tiny_study[0]
    for s in STEPS:
        rel = Path("dictionaries") / f"step_{s:06d}" / "blocks.0.hook_resid_post" / "sae_weights.safetensors"
        assert file_hash(run_dir / rel) == file_hash(ref / rel), rel
    assert _close_llc(run_dir, ref)
    assert (run_dir / "report" / "index.html").exists()


def test_query_command(tiny_study):
    from typer.testing import CliRunner

    from ontogeny.cli import app

    run_dir = tiny_study[0]
    res = CliRunner().invoke(app, ["query", "SELECT count(*) AS n_rows FROM llc", "--run-dir", str(run_dir)])
    assert res.exit_code == 0 and "n_rows" in res.output and "│ 2 " in res.output
    bad = CliRunner().invoke(app, ["query", "SELECT * FROM no_such_table", "--run-dir", str(run_dir)])
    assert bad.exit_code == 2 and "llc" in " ".join(bad.output.split())  # the error lists the tables

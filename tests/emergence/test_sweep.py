import math

import pytest
import typer
from typer.testing import CliRunner

from ontogeny.commands.emergence import register
from ontogeny.emergence import sweep as sweep_mod
from ontogeny.emergence.sweep import Grid, SweepConfig, run_sweep
from ontogeny.store.tables import read_provenance, read_table
from ontogeny.emergence.train import TrainConfig
from ontogeny.errors import ConfigError


def app():
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    cfg = SweepConfig(
        grids=[Grid(S=[4], s=[1], seeds=[0], arch=["transformer", "mixer"])],
        train=TrainConfig(steps=400, log_every=10, eval_seqs=64),
    )
    run_sweep(cfg, out)
    return cfg, out


def test_sweep_learns_the_linear_map_and_logs_emergence(small_sweep):
    cfg, out = small_sweep
    runs = read_table(out / "tables" / "emergence_runs.parquet")
    assert len(runs) == 2 and {r["arch"] for r in runs} == {"transformer", "mixer"}
    for r in runs:
        assert r["floor"] == pytest.approx(math.log(2) * 3 / 7, abs=1e-6)  # ln2 (S-1)/(2S-1)
        assert r["solved"] and r["t_20"] <= r["t_50"] <= r["t_90"] <= r["stopped_at"]
        assert r["final_loss"] == pytest.approx(r["floor"], abs=0.05)
    curves = read_table(out / "tables" / "emergence_curves.parquet")
    for r in runs:  # one curve row per evaluation, step 0 included
        pts = sorted(c["step"] for c in curves if c["run_id"] == r["run_id"])
        assert pts == list(range(0, r["stopped_at"] + 1, 10))
        assert all(0 <= c["parent_mass"] <= c["parent_mass_row"] + 1e-6 <= 1 + 1e-6 for c in curves)
    rows = read_table(out / "tables" / "emergence_rows.parquet")
    assert len(rows) == 2 * 4 and all(r["t_row"] is not None for r in rows)
    assert read_provenance(out / "tables" / "emergence_runs.parquet")["config"]["grids"][0]["S"] == [4]


def test_sweep_resumes_without_retraining(small_sweep, monkeypatch):
    cfg, out = small_sweep
    before = read_table(out / "tables" / "emergence_runs.parquet")

    def boom(spec):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep_mod, "train_run", boom)
    run_sweep(cfg, out, resume=True)
    assert read_table(out / "tables" / "emergence_runs.parquet") == before
    with pytest.raises(AssertionError, match="trained again"):  # without resume every run is a fresh unit
        run_sweep(cfg, out)


def test_cli_sweep_other_tasks_and_analyze(tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        "fractions = [0.2, 0.5, 0.9]\n[train]\nsteps = 20\nlog_every = 10\neval_seqs = 32\n"
        '[[grids]]\ntask = "ca"\nS = [4]\nseeds = [0]\n[[grids]]\ntask = "induction"\nS = [4]\n'
        'seeds = [0]\narch = ["transformer", "mixer"]\n'
    )
    out = tmp_path / "run"
    res = CliRunner().invoke(app(), ["emergence", "sweep", str(out), "--config", str(toml), "--no-analyze"])
    assert res.exit_code == 0, res.output
    runs = read_table(out / "tables" / "emergence_runs.parquet")
    assert sorted(r["task"] for r in runs) == ["ca", "induction", "induction"]
    ca = next(r for r in runs if r["task"] == "ca")
    assert ca["plateau"] == pytest.approx(math.log(4)) and ca["floor"] < ca["plateau"]
    res = CliRunner().invoke(app(), ["emergence", "analyze", str(out), "--col", "t_20"])
    assert res.exit_code == 0, res.output
    assert (out / "tables" / "emergence_claims.parquet").exists()


def test_bad_config_names_the_file_and_key(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("stepz = 3\n")
    res = CliRunner().invoke(app(), ["emergence", "sweep", str(tmp_path / "x"), "--config", str(toml)])
    assert res.exit_code == 2 and "stepz" in res.output and "bad.toml" in res.output
    with pytest.raises(ConfigError, match="s=5"):
        sweep_mod.expand(SweepConfig(grids=[Grid(S=[4], s=[5])]))

"""`ontogeny lifehistory` end to end: a tiny model run directory, and a planted run directory (no model)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import torch
import typer
from typer.testing import CliRunner

from ontogeny.commands.lifehistory import register

SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
STEPS = [0, 1, 4]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_series_dir):
    """One tiny model saved at three steps (so features persist), its activations and TopK dictionaries."""
    from transformers import GPTNeoXForCausalLM

    from ontogeny.dictionaries.config import DictionaryConfig
    from ontogeny.dictionaries.model import Dictionary
    from ontogeny.dictionaries.saelens_io import save_dictionary
    from ontogeny.series.load import load_series
    from ontogeny.series.capture import cache_activations

    run = tmp_path_factory.mktemp("lh_run")
    shutil.copytree(tiny_series_dir / "tokenizer", run / "series" / "tokenizer")
    model = GPTNeoXForCausalLM.from_pretrained(str(tiny_series_dir / "step_000000"))
    for step in STEPS:
        model.save_pretrained(str(run / "series" / f"step_{step:06d}"))
    series = load_series(run / "series")
    ids = torch.randint(0, int(series.config.vocab_size), (24, 16), generator=torch.Generator().manual_seed(0))
    cache_activations(series, ids, SITES, run / "activations")
    for step in STEPS:
        for site in SITES:
            d = Dictionary(DictionaryConfig(rule="topk", d_in=32, d_sae=48, k=6), seed=0)  # shared init
            save_dictionary(d, run / "dictionaries" / f"step_{step:06d}" / site, {"step": step, "site": site})
    return run


def test_lifehistory_command_writes_tables_figures_and_summary(run_dir):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer in group mode, as in the real CLI
    toml = run_dir / "lh.toml"  # random dictionaries organise no hierarchy: let reach-0 lineages carry
    toml.write_text("[scaffold]\nmin_reach = 0\n[predict]\nn_permutations = 0\n")
    args = ["lifehistory", "--run-dir", str(run_dir), "--n-null", "2", "--n-controls", "5", "--n-single", "3",
            "--n-carriers", "4", "--ablation-seqs", "8", "--config", str(toml)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((run_dir / "tables" / "lifehistory_summary.json").read_text())
    # identical checkpoints: every alive feature is one stable lineage, nothing is born or dies
    lineages = pq.read_table(run_dir / "tables" / "lineages.parquet").to_pylist()
    assert all(r["fate"] == "censored" and r["all_stable"] and r["birth_step"] == 0 for r in lineages)
    turnover = pq.read_table(run_dir / "tables" / "turnover.parquet").to_pylist()
    assert all(r["events"] == 0 for r in turnover)
    assert summary["n_lineages"] == len(lineages) and summary["steps"] == STEPS
    matches = pq.read_table(run_dir / "tables" / "matches.parquet")
    assert all(r == pytest.approx(1.0) for r in matches.column("r").to_pylist())
    assert b"ontogeny.provenance" in matches.schema.metadata
    assert summary["n_carriers"] == len(pq.read_table(run_dir / "tables" / "scaffold.parquet")) == 4
    abl = pq.read_table(run_dir / "tables" / "ablations.parquet").to_pylist()
    assert sum(r["population"].startswith("control") for r in abl) == 5
    assert sum(r["kind"] == "single" for r in abl) == 4 + 3
    joint = summary["ablation"]["joint_delta_ce"]
    assert joint["value"] == next(r["delta_ce"] for r in abl if r["population"] == "carriers")
    for name in ("river", "turnover", "survival", "ablation", "carriers", "sensitivity", "precedence"):
        fig = json.loads((run_dir / "figures" / f"lifehistory_{name}.json").read_text())
        assert fig["data"], name  # plotly JSON for the report
    again = CliRunner().invoke(app, args)  # the command's own resume (commands/lifehistory.py), not the stage's
    assert again.exit_code == 0 and "up to date" in again.output
    assert json.loads((run_dir / "tables" / "lifehistory_summary.json").read_text())["n_lineages"] == len(lineages)


def test_lifehistory_command_on_a_planted_run_finds_the_planted_scaffold(tmp_path):
    from ontogeny.lifehistory.synthetic import planted_series, write_planted_run

    ps = planted_series(seed=4, noise=0.1, n_tokens=2000)
    run = write_planted_run(ps, tmp_path / "planted")
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(app, ["lifehistory", "--run-dir", str(run), "--no-ablate", "--set", "match.n_null=2",
                                   "--set", "predict.n_permutations=20", "--max-tokens", "0"])
    assert res.exit_code == 0, res.output
    s = json.loads((run / "tables" / "lifehistory_summary.json").read_text())
    scaffold = pq.read_table(run / "tables" / "scaffold.parquet").to_pylist()
    assert {(r["site"], r["feature"]) for r in scaffold} == ps.carriers
    assert s["n_splits"] == sum(e[2] == "split" for e in ps.events)
    assert "recruitment" in res.output and "not measured: no carriers to ablate" not in res.output


def test_lifehistory_command_names_missing_steps(run_dir):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(app, ["lifehistory", "--run-dir", str(run_dir), "--steps", "0,7"])
    assert res.exit_code == 2 and "[7]" in res.output

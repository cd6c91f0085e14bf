"""`ontogeny crosscode` end to end on the tiny series: tables, figures, resumable crosscoder unit."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from ontogeny.commands.crosscode import register
from ontogeny.series.load import load_series
from ontogeny.series.capture import cache_activations, pack_tokens

SITE = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def run_dir(tiny_series_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("cc_run")
    series = load_series(tiny_series_dir)
    texts = ["def add(a, b):\n    return a + b\n", "x = foo(a, [b, c])\n", "The quick brown fox.\n"] * 40
    tokens = pack_tokens(series.tokenizer, texts, n_seqs=24, ctx=16)
    cache_activations(series, tokens, [SITE], run / "activations")
    return run


def test_crosscode_cli_writes_tables_and_figures(run_dir, tiny_series_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"good": "x = foo(a, b)", "bad": "x = foo(a, b]", "task": "mine"}) + "\n"
                     + json.dumps({"good": "items = [a, b]", "bad": "items = [a, b)", "task": "mine"}) + "\n")
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    args = ["crosscode", str(run_dir), "--steps", "0,1,4", "--site", SITE, "--series", str(tiny_series_dir),
            "--d-sae", "48", "--n-steps", "60", "--batch-size", "64", "--lr", "1e-2", "--tasks", "brackets",
            "--n-pairs", "8", "--pairs", str(pairs), "--ig-steps", "2", "--top-k", "2", "--node-threshold", "0"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    tables = run_dir / "tables"
    tag = f"{SITE}.0-1-4"
    lat = pq.read_table(tables / f"crosscoder_latents.{tag}.parquet").to_pylist()
    assert len(lat) == 48
    for r in lat:
        assert abs(r["reldec_s0"] + r["reldec_s1"] + r["reldec_s4"] - 1) < 1e-6
        assert r["reldec_class"] in {"s0 specific", "s1 specific", "s4 specific", "s0-s1-s4 shared", "s0-s1 shared",
                                     "s1-s4 shared", "s0-s4 shared", "others"}
    eff = pq.read_table(tables / f"crosscoder_effects.{tag}.parquet").to_pylist()
    assert {r["task"] for r in eff} <= {"brackets", "mine"} and "mine" in {r["task"] for r in eff}
    meta = pq.read_schema(tables / f"crosscoder_effects.{tag}.parquet").metadata[b"ontogeny.provenance"]
    assert json.loads(meta)["config"]["steps"] == [0, 1, 4]
    for name in ("crosscoder_reldec_hist", "crosscoder_relie_taxonomy", "crosscoder_top_features"):
        assert (run_dir / "figures" / f"{name}.{tag}.html").stat().st_size > 0
        assert (run_dir / "figures" / f"{name}.{tag}.png").read_bytes()[:4] == b"\x89PNG"
    ctx = pq.read_table(tables / f"crosscoder_contexts.{tag}.parquet").to_pylist()
    assert ctx and all("[[" in r["context"] for r in ctx)
    # a second run with other thresholds reuses the crosscoder unit (no retraining: same weights file)
    w = next((run_dir / "dictionaries" / "crosscoder" / SITE).glob("steps_0-1-4/sae_weights.safetensors"))
    before = w.stat().st_mtime_ns
    res = CliRunner().invoke(app, args[:-2] + ["--node-threshold", "0.5", "--no-ablate"])
    assert res.exit_code == 0, res.output
    assert w.stat().st_mtime_ns == before


def test_crosscode_cli_rejects_unknown_step(run_dir, tiny_series_dir):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(app, ["crosscode", str(run_dir), "--steps", "0,7", "--site", SITE, "--series",
                                   str(tiny_series_dir)])
    assert res.exit_code == 2 and "7" in res.output

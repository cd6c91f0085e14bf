"""`ontogeny crosscode` end to end: on the tiny series (tables, figures, RelIE with 'no effect'), and from
activation files alone (RelDec and presence classes, no models; bad files named, nothing written)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
import typer
from typer.testing import CliRunner

from safetensors.torch import save_file

from ontogeny.commands.crosscode import register
from ontogeny.crosscoding.planted import planted_stack
from ontogeny.crosscoding.presence import NO_EFFECT, class_order
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
    names = ["s0", "s1", "s4"]
    for r in lat:
        assert abs(r["reldec_s0"] + r["reldec_s1"] + r["reldec_s4"] - 1) < 1e-6
        assert r["reldec_class"] in set(class_order(names)) or r["reldec_class"].startswith("intermittent")
        norms = [r[f"dec_norm_{n}"] for n in names]
        assert [r[f"reldec_present_{n}"] for n in names] == [v / max(norms) >= 0.3 for v in norms]
    eff = pq.read_table(tables / f"crosscoder_effects.{tag}.parquet").to_pylist()
    assert {r["task"] for r in eff} <= {"brackets", "mine"} and "mine" in {r["task"] for r in eff}
    for r in eff:
        if r["ie_total"] <= r["noise_floor"]:
            assert r["relie_class"] == NO_EFFECT and r["no_effect"]
        else:
            assert r["relie_class"] != NO_EFFECT
        if r["ie_total"] == 0:
            assert abs(r["relie_s0"] - 1 / 3) < 1e-9         # the documented 1/M, not 0.5
    meta = pq.read_schema(tables / f"crosscoder_effects.{tag}.parquet").metadata[b"ontogeny.provenance"]
    assert json.loads(meta)["config"]["steps"] == [0, 1, 4]
    for name in ("crosscoder_reldec_hist", "crosscoder_presence", "crosscoder_presence_sensitivity",
                 "crosscoder_relie_taxonomy", "crosscoder_top_features"):
        fig = json.loads((run_dir / "figures" / f"{name}.{tag}.json").read_text())
        assert fig["data"], name
    sens = pq.read_table(tables / f"crosscoder_presence_sensitivity.{tag}.parquet").to_pylist()
    alive = sum(r["freq"] > 0 for r in lat)
    for tau in {r["tau"] for r in sens}:
        assert sum(r["latents"] for r in sens if r["tau"] == tau) == alive
    ctx = pq.read_table(tables / f"crosscoder_contexts.{tag}.parquet").to_pylist()
    assert ctx and all("[[" in r["context"] for r in ctx)
    assert "presence classes" in res.output and "RelIE classes" in res.output


def test_crosscode_cli_rejects_unknown_step(run_dir, tiny_series_dir):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(app, ["crosscode", str(run_dir), "--steps", "0,7", "--site", SITE, "--series",
                                   str(tiny_series_dir)])
    assert res.exit_code == 2 and "7" in res.output


def _planted_files(root, k=3, n_tokens=2048, d_in=16):
    p = planted_stack(k, d_in=d_in, n_tokens=n_tokens, n_shared=4, n_each=1, noise=0.05, seed=1)
    for m, step in enumerate([10, 20, 30][:k]):
        (root / f"step_{step:06d}").mkdir(parents=True)
        save_file({"acts": p.acts_NKD[:, m].contiguous()}, str(root / f"step_{step:06d}" / "activations.safetensors"))
    return p


def test_crosscode_from_activation_files_without_models(tmp_path):
    acts_dir, run = tmp_path / "acts", tmp_path / "run"
    _planted_files(acts_dir)
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    args = ["crosscode", str(run), "--activations", str(acts_dir), "--steps", "10,20,30", "--site", SITE,
            "--d-sae", "24", "--n-steps", "40", "--batch-size", "256", "--lr", "1e-2"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    tag = f"{SITE}.10-20-30"
    lat = pq.read_table(run / "tables" / f"crosscoder_latents.{tag}.parquet").to_pylist()
    assert len(lat) == 24 and "reldec_class" in lat[0]
    assert not (run / "tables" / f"crosscoder_effects.{tag}.parquet").exists()
    assert (run / "figures" / f"crosscoder_presence.{tag}.json").exists()
    sp = pq.read_table(run / "tables" / f"crosscoder_sparsity.{tag}.parquet").to_pylist()[0]
    assert (sp["k"], sp["k_chosen"]) == ("not used", "not used")          # relu: no k
    res = CliRunner().invoke(app, args + ["--k", "three"])
    assert res.exit_code == 2 and "--k" in res.output
    # a missing step, then a step with another token count: named errors, nothing written
    bad = tmp_path / "run_bad"
    bad_args = [a if a != str(run) else str(bad) for a in args]
    res = CliRunner().invoke(app, [a if a != "10,20,30" else "10,20,40" for a in bad_args])
    assert res.exit_code != 0 and "step_000040" in res.output.replace("\n", "")
    save_file({"acts": torch.randn(100, 16)}, str(acts_dir / "step_000020" / f"{SITE}.safetensors"))
    res = CliRunner().invoke(app, bad_args)
    assert res.exit_code != 0 and "100 tokens" in res.output.replace("\n", "")
    assert not bad.exists() or not any(bad.rglob("*.parquet"))

"""Head masks select exactly one head's computation; induction scoring on planted patterns; the CLI end to end."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
import typer
from typer.testing import CliRunner

from ontogeny.errors import ConfigError
from ontogeny.series.sites import capture
from ontogeny.slt.heads import component_masks, head_masks, induction_score_from_pattern, n_selected
from ontogeny.testing import tiny_config


@pytest.fixture(scope="module")
def model():
    from transformers import GPTNeoXForCausalLM

    torch.manual_seed(0)
    return GPTNeoXForCausalLM(tiny_config(300)).eval()


def test_head_mask_perturbs_only_that_heads_output(model):
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    site = "blocks.0.attn.hook_z"
    z0 = capture(model, ids, [site])[site]  # [B, T, H, d_head]
    masks = head_masks(model, 0, 2)
    params = dict(model.named_parameters())
    qkv = "gpt_neox.layers.0.attention.query_key_value.weight"
    saved = params[qkv].detach().clone()
    with torch.no_grad():
        params[qkv].add_(masks[qkv].float() * torch.randn_like(saved))
    z1 = capture(model, ids, [site])[site]
    with torch.no_grad():
        params[qkv].copy_(saved)
    changed = (z1 - z0).abs().amax(dim=(0, 1, 3))
    assert changed[2] > 1e-3 and torch.all(changed[[0, 1, 3]] == 0)
    # dense columns of the head: zeroing them equals removing the head's z from the output projection
    d_head = model.config.hidden_size // model.config.num_attention_heads
    assert int(masks["gpt_neox.layers.0.attention.dense.weight"].sum()) == model.config.hidden_size * d_head
    assert n_selected(model, masks) == 3 * d_head * (model.config.hidden_size + 1) + model.config.hidden_size * d_head


def test_component_strings(model):
    assert component_masks(model, "full") is None
    union = component_masks(model, "l0h0+l0h1")
    single = component_masks(model, "l0h0")
    assert n_selected(model, union) == 2 * n_selected(model, single)
    layer = component_masks(model, "l1attn")
    assert all(k.startswith("gpt_neox.layers.1.attention.") for k in layer)
    for bad in ("l9h0", "l0h9", "head3", "l7"):
        with pytest.raises(ConfigError):
            component_masks(model, bad)


def test_induction_score_on_planted_patterns():
    P, T = 5, 10
    pat = torch.zeros(1, 3, T, T)
    for q in range(T):
        pat[0, 1, q, max(q - 1, 0)] = 1.0  # previous-token head
        pat[0, 2, q, 0] = 1.0  # attends to the first token
        pat[0, 0, q, q - P + 1 if q >= P else q] = 1.0  # induction head on the second copy
    scores = induction_score_from_pattern(pat, P)
    torch.testing.assert_close(scores, torch.tensor([1.0, 0.0, 0.0]))


def test_cli_llc_and_susceptibility(tiny_series_dir, tmp_path):
    from ontogeny.commands.slt import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    run = tmp_path / "run"
    common = ["--draws", "8", "--ctx", "32", "--batch-size", "8", "--corpus-size", "tiny"]
    res = runner.invoke(app, ["llc", str(tiny_series_dir), "--out", str(run), "--components", "full,l1h0",
                              "--n-seqs", "16", *common])
    assert res.exit_code == 0, res.output
    llc = pq.read_table(run / "tables" / "llc.parquet").to_pylist()
    assert [(r["step"], r["component"]) for r in llc] == [(s, c) for s in (0, 1, 4) for c in ("full", "l1h0")]
    assert (run / "figures" / "llc_curve.json").stat().st_size > 0
    res = runner.invoke(app, ["susceptibility", str(tiny_series_dir), "--out", str(run), "--components",
                              "l0h0,l1h1,l1h2", "--probes", "prose,synthetic", "--n-probe-seqs", "2", *common])
    assert res.exit_code == 0, res.output
    resp = pq.read_table(run / "tables" / "susceptibility_response.parquet").to_pylist()
    toks = pq.read_table(run / "tables" / "susceptibility_tokens.parquet").to_pylist()
    assert len(resp) == 2 * 3 and len(toks) == 2 * 2 * 31
    # the dataset-level value is the mean of the per-token values (tables agree with each other)
    for r in resp:
        vals = [t[r["component"]] for t in toks if t["probe"] == r["probe"]]
        assert r["chi"] == pytest.approx(sum(vals) / len(vals), rel=1e-9, abs=1e-15)
    for f in ("response_matrix", "pc_scatter_heads"):
        assert (run / "figures" / f"{f}.json").stat().st_size > 0
    # induction heads are the census's (one definition); an untrained model has none, said in words
    sep = pq.read_table(run / "tables" / "susceptibility_separation.parquet").to_pylist()
    assert sep and all(isinstance(r["induction_heads"], str) and r["note"] for r in sep)
    assert "induction heads (head census" in res.output
    assert all(r["n_induction_heads"] > 0 or r["standardised_gap"] is None for r in sep)
    meta = pq.read_schema(run / "tables" / "susceptibility_heads.parquet").metadata
    assert b"ontogeny.provenance" in meta
    res = runner.invoke(app, ["llc", str(tmp_path / "missing"), "--out", str(run)])
    assert res.exit_code == 2 and "does not" in res.output and "missing" in res.output

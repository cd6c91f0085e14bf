"""The `ontogeny` command line: help, `cache` end to end, and errors that name the bad input."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from ontogeny.cli import app
from ontogeny.series.load import load_series
from ontogeny.series.sites import capture
from ontogeny.store.activations import ActivationStore

runner = CliRunner()


def test_help_lists_every_command():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("series", "cache", "dict", "lifehistory", "crosscode", "llc", "susceptibility", "emergence",
                "study", "demo", "query"):
        assert cmd in out, cmd


def test_cache_command_stores_what_a_direct_capture_gives(tiny_series_dir, tmp_path, monkeypatch):
    import ontogeny.series.capture as capture_mod

    ids = torch.randint(0, 300, (4, 8), generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(capture_mod, "series_corpus", lambda root: None)
    monkeypatch.setattr(capture_mod, "shared_token_ids", lambda tok, corpus, cfg: ids[:cfg.n_seqs, :cfg.ctx])
    res = runner.invoke(app, ["cache", str(tiny_series_dir), "--out", str(tmp_path / "acts"), "--sites",
                              "blocks.1.hook_mlp_out", "--steps", "1,4", "--n-seqs", "4", "--ctx", "8"])
    assert res.exit_code == 0, res.output
    store = ActivationStore(tmp_path / "acts")
    assert store.steps == [1, 4]
    model = load_series(tiny_series_dir).model(4)
    torch.testing.assert_close(store.load(4, "blocks.1.hook_mlp_out"),
                               capture(model, ids, ["blocks.1.hook_mlp_out"])["blocks.1.hook_mlp_out"].reshape(32, 32))


def test_cache_command_names_a_bad_site_and_writes_nothing(tiny_series_dir, tmp_path):
    res = runner.invoke(app, ["cache", str(tiny_series_dir), "--out", str(tmp_path / "acts"), "--sites",
                              "blocks.7.hook_resid_post"])
    out = " ".join(res.output.split())  # rich wraps long lines
    assert res.exit_code == 2
    assert "blocks.7.hook_resid_post" in out and "2 layers" in out
    assert not (tmp_path / "acts").exists()


def test_study_command_names_an_unknown_key(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text("[dictionaries]\nrule = 'topk'\nexpansoin = 4\n")
    res = runner.invoke(app, ["study", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and "dictionaries.expansoin: unknown key" in " ".join(res.output.split())
    assert not (tmp_path / "run").exists()

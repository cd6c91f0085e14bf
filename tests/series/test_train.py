"""Training the embedded series: schedule, induction metric against an oracle, files, determinism, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import typer
from safetensors.torch import load_file
from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast
from typer.testing import CliRunner

from ontogeny.commands.series import register
from ontogeny.errors import ConfigError, SeriesError
from ontogeny.series.corpus import build_corpus
from ontogeny.series.data import TokenData
from ontogeny.series.schedule import checkpoint_steps, lr_at
from ontogeny.series.synthetic import copy_losses, induction_metrics, repeated_tokens
from ontogeny.series.tokenizer import train_tokenizer
from ontogeny.series.train import (SeriesConfig, build_model, read_losses, read_record, train_series,
                                   training_jump)


def test_checkpoint_schedule_is_pythia_like():
    assert checkpoint_steps(1000, 250, 64) == [0, 1, 2, 4, 8, 16, 32, 64, 250, 500, 750, 1000]
    assert checkpoint_steps(10, 4, 100) == [0, 1, 2, 4, 8, 10]
    with pytest.raises(ConfigError):
        checkpoint_steps(10, 0, 4)


def test_lr_schedule_values():
    assert lr_at(0, 1.0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, 0.1) == pytest.approx(0.55)  # cosine half-way: (1 + 0.1) / 2
    assert lr_at(110, 1.0, 10, 110, 0.1) == pytest.approx(0.1)


class OracleInduction(torch.nn.Module):
    """Predicts, with probability 1 - eps, the token that followed the last earlier copy of the current one.

    Without an earlier copy it is uniform over the vocabulary: the analytic losses are ln(V) on the first
    copy and -ln(1 - eps + eps/V) on the second.
    """

    def __init__(self, vocab: int, eps: float):
        super().__init__()
        self.vocab, self.eps = vocab, eps

    def forward(self, input_ids):
        B, T = input_ids.shape
        probs = torch.full((B, T, self.vocab), 1.0 / self.vocab)
        for b in range(B):
            for t in range(T):
                prev = [s for s in range(t) if input_ids[b, s] == input_ids[b, t]]
                if prev:
                    probs[b, t] = self.eps / self.vocab
                    probs[b, t, input_ids[b, prev[-1] + 1]] += 1 - self.eps
        return type("Out", (), {"logits": probs.log()})()


def test_induction_score_matches_oracle_analytically():
    V, eps, P = 50, 0.2, 6
    g = torch.Generator().manual_seed(0)
    tokens = repeated_tokens(g, torch.arange(V), 8, P)
    assert torch.equal(tokens[:, :P], tokens[:, P:])
    # spans with a repeated token inside the first copy would let the oracle copy early: use distinct ones
    tokens = torch.stack([torch.randperm(V, generator=g)[:P].repeat(2) for _ in range(8)])
    first, second = copy_losses(OracleInduction(V, eps), tokens, P)
    assert first == pytest.approx(math.log(V), abs=1e-5)
    assert second == pytest.approx(-math.log(1 - eps + eps / V), abs=1e-5)
    # a model with no in-context copying (uniform) scores zero
    m = induction_metrics(OracleInduction(V, 1.0), torch.arange(V), torch.arange(V), [3, 5], n_seqs=4)
    assert m["induction"] == pytest.approx(0.0, abs=1e-5)
    assert m["induction_full"] == pytest.approx(0.0, abs=1e-5)


@pytest.fixture(scope="module")
def cli_series(tmp_path_factory) -> tuple[Path, str]:
    """The tiny series trained through the CLI (`series train --tiny`)."""
    app = typer.Typer()
    register(app)
    out = tmp_path_factory.mktemp("series") / "s"
    res = CliRunner().invoke(app, ["series", "train", "--tiny", "--out", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_series_files_and_record(cli_series):
    out, output = cli_series
    cfg = SeriesConfig.tiny()
    record = read_record(out)
    assert record["steps"] == cfg.steps == [0, 1, 2, 4, 20, 40]
    assert record["corpus_hash"] == build_corpus(cfg.seed, cfg.corpus).hash
    assert sorted(p.name for p in out.glob("step_*")) == [f"step_{s:06d}" for s in cfg.steps]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    rows = read_losses(out)
    assert [r["step"] for r in rows] == cfg.steps
    for col in ("train_loss", "eval_loss", "eval_code", "eval_prose", "induction", "copy_first"):
        assert all(math.isfinite(r[col]) for r in rows), col
    # at initialisation the model is near uniform: loss ~ ln(V)
    assert rows[0]["eval_loss"] == pytest.approx(math.log(cfg.vocab_size), abs=0.15)
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"] - 0.3
    log = pq.read_table(out / "train_log.parquet").to_pylist()
    assert [r["step"] for r in log] == list(range(cfg.n_steps))
    assert "induction" in output and "40" in output


def test_checkpoints_load_and_step0_is_the_seeded_init(cli_series):
    out, _ = cli_series
    tok = PreTrainedTokenizerFast.from_pretrained(str(out / "tokenizer"))
    model = GPTNeoXForCausalLM.from_pretrained(str(out / "step_000000"))
    assert model.config.vocab_size == len(tok)
    fresh = build_model(SeriesConfig.tiny(), len(tok)).state_dict()
    saved = model.state_dict()
    assert saved.keys() == fresh.keys()
    for k, v in saved.items():
        assert torch.equal(v, fresh[k]), k
    last = GPTNeoXForCausalLM.from_pretrained(str(out / "step_000040")).state_dict()
    assert any(not torch.equal(last[k], saved[k]) for k in saved)


def test_training_is_deterministic_and_refuses_to_overwrite(cli_series, tmp_path):
    out, _ = cli_series
    cfg = SeriesConfig.tiny()
    again = train_series(cfg, tmp_path / "again")
    a = load_file(str(out / "step_000040" / "model.safetensors"))
    b = load_file(str(again / "step_000040" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SeriesError, match="series.json"):
        train_series(cfg, again)


def test_killed_run_leaves_only_whole_checkpoints(tmp_path):
    class Killed(Exception):
        pass

    def kill_at_10(step, metrics):
        if step == 10:
            raise Killed

    cfg = SeriesConfig.tiny().model_copy(update={"n_steps": 20})
    with pytest.raises(Killed):
        train_series(cfg, tmp_path / "s", kill_at_10)
    out = tmp_path / "s"
    assert not (out / "series.json").exists()
    assert sorted(p.name for p in out.iterdir()) == ["losses.parquet", "step_000000", "step_000001",
                                                      "step_000002", "step_000004", "tokenizer"]
    for d in out.glob("step_*"):
        GPTNeoXForCausalLM.from_pretrained(str(d))


def test_batches_are_a_function_of_the_step():
    cfg = SeriesConfig.tiny()
    corpus = build_corpus(0, cfg.corpus)
    data = TokenData.build(corpus, train_tokenizer(corpus, 512), cfg.synthetic, 32, 4, seed=0)
    nat, syn = data.batch(5, 8, 6, 16)
    assert nat.shape == (8, 33) and syn.shape == (6, 17)
    again = data.batch(5, 8, 6, 16)
    assert torch.equal(nat, again[0]) and torch.equal(syn, again[1])
    assert not torch.equal(nat, data.batch(6, 8, 6, 16)[0])
    # spans and background come from the alphabet with pool="alphabet" (tiny's), from every token with
    # "vocab" (the default's)
    assert set(syn.flatten().tolist()) <= set(data.alphabet_ids.tolist())
    vocab_pool = cfg.synthetic.model_copy(update={"pool": "vocab"})
    assert SeriesConfig().synthetic.pool == "vocab" and cfg.synthetic.pool == "alphabet"
    full = TokenData.build(corpus, train_tokenizer(corpus, 512), vocab_pool, 32, 4, seed=0)
    full_syn = set(full.batch(5, 8, 6, 16)[1].flatten().tolist())
    assert full_syn <= set(full.vocab_ids.tolist()) and len(full_syn - set(full.alphabet_ids.tolist())) > 20
    stream = data.train_stream.tolist()
    row = nat[0].tolist()  # natural rows are windows of the train stream
    assert any(stream[i: i + 33] == row for i in range(len(stream) - 32))


def test_bad_config_names_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("n_stepz = 3\n")
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["series", "train", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "n_stepz" in res.output
    with pytest.raises(ConfigError, match="n_heads"):
        build_model(SeriesConfig(d_model=30, n_heads=4), 100)
    with pytest.raises(ConfigError, match="context"):
        _ = SeriesConfig(context=16).induction_periods
    res = CliRunner().invoke(app, ["series", "info", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "missing" in res.output


def test_training_jump_finds_a_planted_step_and_its_width():
    rng = np.random.default_rng(0)
    steps = np.arange(1000)
    clean = 5.0 - 3.0 / (1 + np.exp(-(steps - 600) / 10.0))  # logistic drop of 3 nats centred at 600
    jump = training_jump((clean + rng.normal(0, 0.2, 1000)).tolist())
    assert abs(jump["step"] - 600) <= 15
    assert jump["drop"] == pytest.approx(3.0, abs=0.3)
    # 10-90% of a logistic with scale 10 takes 2 * 10 * ln 9 = 44 steps, widened a little by smoothing
    assert 30 <= jump["width"] <= 80
    flat = training_jump(rng.normal(5.0, 0.2, 1000).tolist())
    assert abs(flat["drop"]) < 0.1  # no jump: the best split separates nothing
    assert training_jump([1.0] * 10)["step"] is None

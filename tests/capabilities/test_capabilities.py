import json

import pytest
import torch
import torch.nn.functional as F

from ontogeny.capabilities.config import CapabilityConfig, PromptPair
from ontogeny.capabilities.curves import checkpoint_metrics
from ontogeny.capabilities.probes import (
    PROBES,
    bracket_matching,
    prompt_pairs,
    register_probe,
    repeated_tokens,
    repetition_metrics,
)
from ontogeny.store.tables import read_table
from ontogeny.series.load import load_series

torch.set_num_threads(1)
STEPS = [0, 1, 2, 4, 8, 16, 32, 64]
K0 = 5  # planted: checkpoints from index 5 (step 16) on carry the trained copying model


@pytest.fixture(scope="module")
def planted_series(tmp_path_factory):
    """A series whose first checkpoints are a random model and whose later ones are the same model after a
    short training on repeated random segments (each checkpoint with its own small weight noise)."""
    from transformers import GPTNeoXForCausalLM

    from ontogeny.testing import make_tokenizer, tiny_config

    root = tmp_path_factory.mktemp("planted") / "series"
    tok = make_tokenizer(root / "tokenizer")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(tiny_config(len(tok)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pool = torch.arange(1, len(tok))
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        ids = repeated_tokens(pool, 16, 8, g)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = {k: v.clone() for k, v in model.state_dict().items()}
    for i, step in enumerate(STEPS):
        base = before if i < K0 else after
        model.load_state_dict(
            {k: v + (1e-3 * torch.randn_like(v) if v.is_floating_point() else 0) for k, v in base.items()}
        )
        model.save_pretrained(str(root / f"step_{step:06d}"))
    return root


def test_repetition_metrics_match_a_brute_force_reference(tiny_series_dir):
    model = load_series(tiny_series_dir).model(4)
    ids = repeated_tokens(torch.arange(1, 300), 3, 5, torch.Generator().manual_seed(0))
    m = repetition_metrics(model, ids)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        logits = model(input_ids=ids, output_attentions=True)
    first, second, hits = [], [], []
    for b in range(3):
        for t in range(9):
            lp = F.log_softmax(logits.logits[b, t], -1)[ids[b, t + 1]].item()
            (first if t < 4 else second if t >= 5 else []).append(lp)
            if t >= 5:
                hits.append(float(logits.logits[b, t].argmax() == ids[b, t + 1]))
    assert m["induction_score"] == pytest.approx(
        sum(second) / len(second) - sum(first) / len(first), abs=1e-4
    )
    assert m["rep_acc"] == pytest.approx(sum(hits) / len(hits))
    att = logits.attentions  # per layer [B, H, T, T]
    ref = max(
        sum(att[layer][b, h, t, t - 4].item() for b in range(3) for t in range(5, 10)) / 15
        for layer in range(2)
        for h in range(4)
    )
    assert m["prefix_matching_max"] == pytest.approx(ref, abs=1e-5)


def test_prompt_pairs_and_brackets_are_antisymmetric(tiny_series_dir):
    series = load_series(tiny_series_dir)
    model, tok = series.model(4), series.tokenizer
    ab = prompt_pairs(model, tok, [PromptPair(prompt="def add", correct=" a", incorrect=" b")])
    ba = prompt_pairs(model, tok, [PromptPair(prompt="def add", correct=" b", incorrect=" a")])
    assert ab["pairs_logit_diff"] == pytest.approx(-ba["pairs_logit_diff"], abs=1e-5)
    assert ab["pairs_acc"] + ba["pairs_acc"] == pytest.approx(1.0)
    br = bracket_matching(model, tok, 4, 5, torch.Generator().manual_seed(0))
    assert 0.0 <= br["bracket_acc"] <= 1.0


def test_planted_induction_emergence_is_found(planted_series, tmp_path):
    from typer.testing import CliRunner

    import typer
    from ontogeny.commands.emergence import register

    app = typer.Typer()
    register(app)
    pairs = tmp_path / "pairs.json"
    pairs.write_text(
        json.dumps([{"prompt": "def add(a, b):\n    return a", "correct": " +", "incorrect": " -"}])
    )
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        [
            "emergence",
            "capabilities",
            str(planted_series),
            "--out",
            str(out),
            "--n-prompts",
            "8",
            "--rep-len",
            "8",
            "--pairs",
            str(pairs),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = {r["step"]: r for r in read_table(out / "tables" / "capabilities.parquet")}
    assert rows[64]["induction_score"] > 1.0 > abs(rows[0]["induction_score"])
    ev = {e["metric"]: e for e in read_table(out / "tables" / "capability_events.parquet")}
    for metric in ("induction_score", "rep_acc", "prefix_matching_max"):
        assert ev[metric]["jump_step"] == STEPS[K0], metric
    assert ev["induction_score"]["abrupt"]
    assert json.loads(ev["induction_score"]["all_jumps"]) == [STEPS[K0]]
    heads = read_table(out / "tables" / "capability_heads.parquet")
    assert len(heads) == len(STEPS) * 2 * 4
    fig = json.loads((out / "figures" / "capability_induction_score.json").read_text())
    assert fig["layout"]["xaxis"]["type"] == "log"  # checkpoints are log-spaced


def test_checkpoint_metrics_are_deterministic(tiny_series_dir):
    series = load_series(tiny_series_dir)
    cfg = CapabilityConfig(n_prompts=4, rep_len=4)
    a = checkpoint_metrics(series.model(1), series.tokenizer, cfg)
    b = checkpoint_metrics(series.model(1), series.tokenizer, cfg)
    assert a == b


def test_a_new_probe_is_one_function_and_unavailable_probes_are_named(tiny_series_dir):
    series = load_series(tiny_series_dir)

    @register_probe("test_vocab_size", headline=("vocab",))
    def _vocab(ctx):
        return {"vocab": float(ctx.model.config.vocab_size)}

    try:
        cfg = CapabilityConfig(n_prompts=2, rep_len=4, probes=["test_vocab_size", "pairs"])
        m, skipped = checkpoint_metrics(series.model(1), series.tokenizer, cfg)
        assert m == {"vocab": float(series.model(1).config.vocab_size)}
        assert "pairs" in skipped and "no prompt pairs" in skipped["pairs"]
    finally:
        PROBES.pop("test_vocab_size")
    with pytest.raises(ValueError, match="unknown probe.*test_vocab_size"):
        CapabilityConfig(probes=["test_vocab_size"])

"""The census finds the previous-token and induction heads a tiny model learns on repeated spans.

A 2-layer GPT-NeoX (attention and a narrow MLP, 2 heads per layer, untied, full rotary) is trained for
800 steps on random tokens with a span repeated at periods 3, 4, 6, 7, 8 at random offsets (induction
forms between steps 400 and 600: previous-token score 0.2 -> 0.9); the census probes it at period 5
(held out of training) and 10 (longer than any trained period) and must find a layer-0 previous-token
head, a layer-1 induction head whose zero-ablation costs the copy, and a copy gain; the untrained model
must have none of them (so the thresholds are not met by construction).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ontogeny.census.heads import (CensusConfig, best_head, census_checkpoint, head_means, named_heads,
                                   scores_LH)

V, CTX = 24, 32
CFG = CensusConfig(periods=(5, 10), offsets=(0, 3), n_seqs=32, seed=1)


def batch(rng: np.random.Generator, n: int) -> torch.Tensor:
    out = rng.integers(0, V, size=(n, CTX))
    for row in out:
        p = int(rng.choice([3, 4, 6, 7, 8]))
        reps = int(rng.integers(2, CTX // p + 1))
        start = int(rng.integers(0, CTX - reps * p + 1))
        row[start: start + reps * p] = np.tile(rng.integers(0, V, size=p), reps)
    return torch.from_numpy(out)


def make_model() -> GPTNeoXForCausalLM:
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=CTX, rotary_pct=1.0,
                        use_parallel_residual=True, tie_word_embeddings=False, hidden_dropout=0.0,
                        attention_dropout=0.0)
    return GPTNeoXForCausalLM(cfg)


@pytest.fixture(scope="module")
def models() -> tuple[GPTNeoXForCausalLM, GPTNeoXForCausalLM]:
    torch.set_num_threads(1)
    untrained, model = make_model(), make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    for _ in range(800):
        x = batch(rng, 32)
        logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.transpose(1, 2), x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return untrained.eval(), model.eval()


def test_census_finds_the_trained_heads(models):
    untrained, model = models
    pool = torch.arange(V)
    heads, copies = census_checkpoint(model, pool, CFG, step=800)
    assert {(r["period"], r["offset"]) for r in copies} == {(5, 0), (5, 3), (10, 0), (10, 3)}
    assert min(r["copy_gain"] for r in copies if r["period"] == 5) > 1.5
    assert min(r["copy_gain"] for r in copies) > 0.1
    prev = best_head(heads, "prev_token", layer=0)
    ind = best_head(heads, "induction", layer=1)
    assert prev["prev_token"] > 0.6
    assert ind["induction"] > 0.35
    assert ind["best_shift_p5"] == 0 and ind["best_shift_p10"] == 0  # classic, not shifted
    by = {r["component"]: r for r in head_means(heads)}
    # the causal check: zeroing the previous-token head costs the copy (K-composition feeds the induction
    # heads), zeroing the other layer-0 head does not; zeroing the best induction head costs it too
    other0 = by[f"l0h{1 - prev['head']}"]
    assert prev["ablation_copy_increase"] > 0.5 > other0["ablation_copy_increase"] + 0.3
    assert ind["ablation_copy_increase"] > 0.3
    named = named_heads(heads, CFG)
    assert ind["component"] in named["induction"] and prev["component"] in named["previous_token"]
    LH = scores_LH(heads, "induction")
    assert LH.shape == (2, 2) and LH[1, ind["head"]] == pytest.approx(ind["induction"])

    h0, c0 = census_checkpoint(untrained, pool, CFG, step=0)
    assert named_heads(h0, CFG) == {"previous_token": [], "induction": []}
    assert max(abs(r["copy_gain"]) for r in c0) < 0.3


def test_census_tables_and_figure_round_trip(models, tmp_path):
    import json

    from ontogeny.census.figures import write_census
    from ontogeny.store.tables import read_table

    _, model = models
    cfg = CFG.model_copy(update={"ablate": False})
    heads, copies = census_checkpoint(model, torch.arange(V), cfg, step=8)
    paths = write_census(heads, copies, tmp_path / "tables", tmp_path / "figures", {"test": 1})
    back = read_table(paths["heads"])
    assert len(back) == 2 * 2 * 4 and back[0]["ablation_copy_increase"] is None  # layers x heads x probes
    gains = [r["copy_gain"] for r in read_table(paths["heads_copy"])]
    assert gains == pytest.approx([r["copy_gain"] for r in copies])
    fig = json.loads(paths["figure"].read_text())
    assert fig["layout"]["xaxis"]["type"] == "log"
    assert len(fig["data"]) == 2 * 4 + 4  # two panels of 4 heads (no ablation panel) + 4 copy-gain probes


class TwoStepSeries:
    """A stand-in for a CheckpointSeries: the untrained model up to step 300, the trained one from 400."""

    def __init__(self, untrained, model):
        self.steps = [0, 100, 200, 300, 400, 500, 600]
        self._m = {s: (untrained if s < 400 else model) for s in self.steps}

    def model(self, step):
        return self._m[step]


def test_census_series_ablates_only_where_asked_and_dates_the_formation(models):
    from ontogeny.census.heads import census_series, copy_gain_formation, formation

    series = TwoStepSeries(*models)
    cfg = CFG.model_copy(update={"ablate_checkpoints": 2, "n_seqs": 8})
    heads, copies = census_series(series, cfg, pool=torch.arange(V))
    ablated = sorted({r["step"] for r in heads if r["ablation_copy_increase"] is not None})
    assert ablated == [300, 600]  # the last checkpoint and one evenly spaced earlier one
    ind = formation(heads, "induction", layer=1)
    assert (ind["from_step"], ind["step"]) == (300, 400) and ind["jump_share"] == pytest.approx(1.0)
    assert ind["after"] > 0.35 > ind["before"]
    gain = copy_gain_formation(copies)
    assert (gain["from_step"], gain["step"]) == (300, 400) and gain["after"] > gain["before"] + 0.5

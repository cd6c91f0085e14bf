"""Ablation through spliced dictionaries on a tiny GPT-NeoX: analytic projections and exact no-ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ontogeny.causal.ablate import AblationRunner, ablation_patch, compare, frequency_bins, matched_controls
from ontogeny.errors import ConfigError
from ontogeny.series.sites import patched

SITES = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out")


@pytest.fixture(scope="module")
def model():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, rotary_pct=0.25)
    return GPTNeoXForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 64, (6, 16), generator=torch.Generator().manual_seed(0))


class Linear:
    """An exact (lossless) dictionary: codes = x Q, decode = codes Q^T with Q orthogonal."""

    def __init__(self, d, seed):
        self.Q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))

    def encode(self, x):
        return x @ self.Q

    def decode(self, c):
        return c @ self.Q.T


class Relu:
    """A lossy random ReLU dictionary: its reconstruction differs from x, so the error term matters."""

    def __init__(self, d, f, seed):
        g = torch.Generator().manual_seed(seed)
        self.W_enc, self.W_dec = torch.randn(d, f, generator=g), torch.randn(f, d, generator=g) / f ** 0.5
        self.b_dec = torch.randn(d, generator=g)

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc)

    def decode(self, c):
        return c @ self.W_dec + self.b_dec


def test_removing_nothing_through_a_lossy_dictionary_keeps_the_clean_model(model, ids):
    codecs = {s: Relu(32, 48, i) for i, s in enumerate(SITES)}
    none = torch.tensor([], dtype=torch.long)
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with patched(model, {s: ablation_patch(c, none) for s, c in codecs.items()}):
            kept = model(input_ids=ids).logits
        with patched(model, {s: (lambda x, c=c: c.decode(c.encode(x))) for s, c in codecs.items()}):
            spliced = model(input_ids=ids).logits  # reconstruction without the error term
    torch.testing.assert_close(kept, clean, atol=1e-4, rtol=0)
    assert (spliced - clean).abs().max() > 0.1
    assert AblationRunner(model, ids, codecs, batch_size=4).effect({s: [] for s in SITES}).kl == 0.0


def test_joint_ablation_equals_projecting_out_the_directions(model, ids):
    codecs = {s: Linear(32, i) for i, s in enumerate(SITES)}
    feats = {SITES[0]: [0, 3, 7], SITES[1]: [1, 2]}
    runner = AblationRunner(model, ids, codecs, batch_size=4)
    got = runner.effect(feats)

    def project(site):
        Q_S = codecs[site].Q[:, feats[site]]
        return lambda x: x - (x @ Q_S) @ Q_S.T

    with torch.no_grad(), patched(model, {s: project(s) for s in SITES}):
        logits = model(input_ids=ids).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), -1)
    ce = float(-logp.gather(-1, ids[:, 1:, None]).mean())
    with torch.no_grad():
        clean = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1)
    kl = float((clean.exp() * (clean - logp)).sum(-1).mean())
    assert got.delta_ce == pytest.approx(ce - runner.clean_ce, abs=1e-5)
    assert got.kl == pytest.approx(kl, abs=1e-5)
    assert got.kl > 0


def test_firing_counts_and_mean_ablation(model, ids):
    codecs = {SITES[0]: Relu(32, 48, 0)}
    runner = AblationRunner(model, ids, codecs, batch_size=5)
    with torch.no_grad():
        from ontogeny.series.sites import capture
        acts = capture(model, ids, [SITES[0]])[SITES[0]].reshape(-1, 32)
    codes = codecs[SITES[0]].encode(acts)
    assert torch.equal(runner.firings[SITES[0]], (codes > 1e-6).sum(0))
    torch.testing.assert_close(runner.mean_codes[SITES[0]], codes.mean(0), atol=1e-4, rtol=1e-4)
    # mean-ablating a feature that never varies is a no-op
    dead = int(torch.nonzero(runner.firings[SITES[0]] == 0)[0]) if (runner.firings[SITES[0]] == 0).any() else None
    if dead is not None:
        assert runner.effect({SITES[0]: [dead]}, mode="mean").kl == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="mode"):
        ablation_patch(codecs[SITES[0]], torch.tensor([0]), mode="resample")
    with pytest.raises(ConfigError, match="no dictionary"):
        runner.effect({"blocks.1.hook_resid_post": [0]})


def test_matched_controls_keep_counts_per_site_and_frequency_bins():
    rng = np.random.default_rng(0)
    freq = {"a": rng.random(200), "b": rng.random(120)}
    targets = {"a": [0, 5, 9, 11], "b": [3, 4]}
    eligible = {"a": np.ones(200, bool), "b": np.ones(120, bool)}
    eligible["a"][150:] = False
    ctrls = matched_controls(freq, targets, eligible, n_controls=50, n_bins=5, seed=0)
    assert len(ctrls) == 50
    for site, tgt in targets.items():
        pool = np.flatnonzero(eligible[site] & ~np.isin(np.arange(len(freq[site])), tgt))
        bins = frequency_bins(freq[site], pool, 5)
        for c in ctrls:
            assert len(c[site]) == len(tgt) and len(set(c[site])) == len(tgt)
            assert set(c[site]) <= set(pool)
            assert sorted(bins[c[site]]) == sorted(bins[tgt])
    assert len({tuple(c["a"]) for c in ctrls}) > 40  # random, not one population repeated
    with pytest.raises(ConfigError, match="eligible"):
        matched_controls(freq, {"a": [0, 1]}, {"a": np.zeros(200, bool)}, 1)


def test_compare_z_percentile_ratio():
    out = compare(5.0, [1.0, 2.0, 3.0])
    assert out["z"] == pytest.approx(3.0) and out["percentile"] == 100.0 and out["ratio"] == pytest.approx(2.5)
    assert compare(2.0, [1.0, 2.0, 3.0])["percentile"] == pytest.approx(50.0)

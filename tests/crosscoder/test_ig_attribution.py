"""IG indirect effects on a tiny series: splice identity, IG completeness, ablation vs brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ontogeny.causal.attribution import IGConfig, ig_token_effects, indirect_effects, logit_diff, site_stack
from ontogeny.causal.tasks import MinimalPair, tokenize_pairs
from ontogeny.crosscoding.presence import NO_EFFECT, effect_classes
from ontogeny.crosscoding.reldec import rel_ie
from ontogeny.crosscoding.validate import ablation_effects, spliced_metric
from ontogeny.dictionaries.crosscoder import CrossCoder, CrossCoderConfig
from ontogeny.series.load import load_series
from ontogeny.series.sites import patched

SITE = "blocks.0.hook_resid_post"
PAIRS = [MinimalPair("def add(a, b):\n    return a + b", "def add(a, b):\n    return a - b"),
         MinimalPair("x = foo(a, b)", "x = foo(a, b]"),
         MinimalPair("The quick brown fox jumps", "The quick brown fox walks"),   # answers 4 tokens: dropped
         MinimalPair("items = [a, b]", "items = [a, b)")]


@pytest.fixture(scope="module")
def setup(tiny_series_dir):
    series = load_series(tiny_series_dir)
    from transformers import GPTNeoXForCausalLM

    models = [GPTNeoXForCausalLM.from_pretrained(c.path).eval() for c in series.checkpoints]
    pairs = tokenize_pairs(series.tokenizer, PAIRS)
    torch.manual_seed(0)
    cc = CrossCoder(CrossCoderConfig(n_sources=3, d_in=series.d_model, d_sae=40, dec_init_norm=0.5), seed=0)
    with torch.no_grad():
        cc.b_enc_F.fill_(0.05)
    return models, pairs, cc.eval()


def _batch(pairs):
    ids_BT, last_B = pairs.padded()
    return ids_BT, last_B, torch.tensor(pairs.correct), torch.tensor(pairs.wrong)


def test_pairs_tokenise_at_first_difference(setup, tiny_series_dir):
    _, pairs, _ = setup
    tok = load_series(tiny_series_dir).tokenizer
    assert len(pairs) == 3 and pairs.dropped == 1
    kept = [p for p in PAIRS if "fox" not in p.good]
    for prefix, good, bad, pair in zip(pairs.prefixes, pairs.correct, pairs.wrong, kept):
        assert pair.good.startswith(tok.decode(prefix + [good]))
        assert pair.bad.startswith(tok.decode(prefix + [bad]))
        assert good != bad


def test_splicing_reconstruction_plus_error_is_identity(setup):
    models, pairs, cc = setup
    ids_BT, last_B, correct_B, wrong_B = _batch(pairs)
    x_BTKD = site_stack(models, SITE, ids_BT)
    x_NKD = x_BTKD.reshape(-1, 3, x_BTKD.shape[-1])
    codes = cc.encode(x_NKD).detach()
    err = x_NKD - cc.decode(codes).detach()
    for m, model in enumerate(models):
        clean = logit_diff(model(input_ids=ids_BT).logits, last_B, correct_B, wrong_B)
        spliced = spliced_metric(model, m, cc, SITE, ids_BT, last_B, correct_B, wrong_B, codes, err)
        torch.testing.assert_close(spliced, clean.detach(), rtol=1e-4, atol=1e-4)


def test_integrated_gradients_are_complete(setup):
    """sum over tokens and nodes of IG effects -> mu(patch) - mu(clean) as steps grow (Sundararajan et al.)."""
    models, pairs, cc = setup
    ids_BT, last_B, correct_B, wrong_B = _batch(pairs)
    x_BTKD = site_stack(models, SITE, ids_BT)
    x_NKD = x_BTKD.reshape(-1, 3, x_BTKD.shape[-1])
    codes = cc.encode(x_NKD).detach()
    err = x_NKD - cc.decode(codes).detach()
    m, model = 2, models[2]
    real = torch.arange(ids_BT.shape[1])[None] <= last_B[:, None]
    eff, eff_err = ig_token_effects(model, m, cc, SITE, ids_BT, last_B, correct_B, wrong_B, codes, err, steps=64)
    total_B = (eff.sum(-1) + eff_err).masked_fill(~real, 0).sum(1) + (eff.sum(-1) + eff_err).masked_fill(real, 0).sum(1)
    with torch.no_grad():
        clean = logit_diff(model(input_ids=ids_BT).logits, last_B, correct_B, wrong_B)
        b_dec = cc.b_dec_KD[m]
        with patched(model, {SITE: lambda a: b_dec.expand_as(a).clone()}):
            patched_mu = logit_diff(model(input_ids=ids_BT).logits, last_B, correct_B, wrong_B)
    want = patched_mu - clean
    assert want.abs().min() > 1e-3
    torch.testing.assert_close(total_B, want, rtol=0.05, atol=0.02)


def test_indirect_effects_threshold_and_relie(setup):
    models, pairs, cc = setup
    eff = indirect_effects(models, cc, SITE, pairs, IGConfig(steps=4, node_threshold=0.0, batch_size=2))
    eff_thr = indirect_effects(models, cc, SITE, pairs, IGConfig(steps=4, node_threshold=1e9, batch_size=2))
    assert eff.ie_KF.shape == (3, 40) and np.abs(eff.ie_KF).sum() > 0
    assert np.all(eff_thr.ie_KF == 0)
    np.testing.assert_allclose(rel_ie(eff_thr.ie_KF), 1 / 3)          # the documented 1/M, not 0.5
    assert set(effect_classes(eff_thr.ie_KF.T, ["A", "B", "C"], eff_thr.noise_floor())) == {NO_EFFECT}
    rel = rel_ie(eff.ie_KF)
    nz = np.abs(eff.ie_KF).sum(0) > 0
    np.testing.assert_allclose(rel[nz].sum(1), 1.0)
    assert eff.n_pairs == 3 and eff.n_tokens == sum(len(p) for p in pairs.prefixes)


def test_ablation_matches_brute_force(setup):
    models, pairs, cc = setup
    got = ablation_effects(models, cc, SITE, pairs, [3, 7], batch_size=2)
    ids_BT, last_B, correct_B, wrong_B = _batch(pairs)
    for row, lat in enumerate([3, 7]):
        for m, model in enumerate(models):
            def zero_latent(act, m=m):
                x_NKD = site_stack(models, SITE, ids_BT).reshape(-1, 3, act.shape[-1])
                codes = cc.encode(x_NKD)
                err = x_NKD - cc.decode(codes)
                codes[:, lat] = 0
                return (cc.decode(codes)[:, m] + err[:, m]).reshape(act.shape)
            with torch.no_grad():
                clean = logit_diff(model(input_ids=ids_BT).logits, last_B, correct_B, wrong_B)
                x_new = zero_latent(torch.zeros(*ids_BT.shape, cc.cfg.d_in))
                with patched(model, {SITE: lambda a: x_new.reshape(a.shape)}):
                    abl = logit_diff(model(input_ids=ids_BT).logits, last_B, correct_B, wrong_B)
            assert abs(float((abl - clean).mean()) - got["delta_mu"][row, m]) < 1e-4


def test_null_latents_match_their_own_ig_when_direction_is_the_decoder(setup):
    """The noise-floor null reuses a latent's codes with a random direction; with the latent's own decoder
    row as the 'random' direction its null effect must equal that latent's IE (same formula, two paths)."""
    models, pairs, cc = setup
    from ontogeny.causal import attribution

    cfg = IGConfig(steps=4, node_threshold=0.0, batch_size=2, n_null=6, null_seed=3)
    idx, _ = attribution.null_latents(cc, 6, seed=3)
    own = cc.W_dec_FKD.detach()[idx]
    orig = attribution.null_latents
    attribution.null_latents = lambda c, n, seed=0: (idx, own)
    try:
        eff = indirect_effects(models, cc, SITE, pairs, cfg)
    finally:
        attribution.null_latents = orig
    np.testing.assert_allclose(eff.null_KR, eff.ie_KF[:, idx.numpy()], rtol=1e-4, atol=1e-7)
    real = indirect_effects(models, cc, SITE, pairs, cfg)
    assert real.null_KR.shape == (3, 6) and real.noise_floor(0.95) >= real.noise_floor(0.5) >= 0
    # random directions carry less effect than the latents with the largest |IE|
    assert real.noise_floor(1.0) < np.abs(real.ie_KF).sum(0).max()

"""Absorption: the per-word formula on hand-built cases, and the whole metric on planted absorption."""

from __future__ import annotations

import string

import pytest
import torch

from ontogeny.dictionaries.absorption import (
    AbsorptionConfig,
    absorption_fractions,
    absorption_from_activations,
    alpha_tokens,
    build_prompt,
    word_activations,
)
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary

torch.set_num_threads(1)


def test_absorption_fraction_formula_by_hand():
    cfg = AbsorptionConfig()
    W_dec = torch.tensor([[1.0, 0, 0, 0], [0.6, 0.8, 0, 0], [0.05, 0.99875, 0, 0], [-1.0, 0, 0, 0]])
    acts = torch.tensor([[1.0, 0.3, 0, 0]] * 4 + [[2.0, 0, 0, 0]])
    codes = torch.tensor([[1.0, 0, 0, 0],      # main covers P: 0
                          [0.4, 1.0, 0, 0],    # A = 0.6, main 0.4: min(0.6, 0.6) / (0.6 + 0.4) = 0.6
                          [0, 1.0, 2.0, 0],    # main silent, absorber 0.6 >= 0.4 P (latent 2: cos < 0.1): 1
                          [0, 0.5, 0, 0],      # A / P = 0.3 < 0.4: 0
                          [1.0, 2.0, 0, 0]])   # P = 2, A = 1.2, main 1: min(1.2, 1) / (1 + 1) = 0.5
    frac, full = absorption_fractions(acts, codes, W_dec, torch.tensor([3.0, 0, 0, 0]), [0], cfg)
    assert torch.allclose(frac, torch.tensor([0, 0.6, 1.0, 0, 0.5]), atol=1e-6)
    assert full.tolist() == [False, False, True, False, False]


def test_absorption_score_finds_planted_absorption():
    """26 letter directions; 10 'A' words are absorbed by token-specific latents, nothing else is."""
    g = torch.Generator().manual_seed(0)
    n_abs, D = 10, 26 + 10
    eye = torch.eye(D)
    acts, letters, absorbed = [], [], []
    for li, L in enumerate(string.ascii_uppercase):
        n = 200 if L == "A" else 40
        for w in range(n):
            a = eye[li] + 0.03 * torch.randn(D, generator=g)
            is_abs = L == "A" and w < n_abs
            if is_abs:
                a = a + eye[26 + w]
            acts.append(a), letters.append(L), absorbed.append(is_abs)
    acts = torch.stack(acts)
    F = 26 + n_abs
    W_enc, W_dec = torch.zeros(D, F), torch.zeros(F, D)
    for li in range(26):
        W_enc[li, li], W_dec[li, li] = 1.0, 1.0
    W_enc[26:, 0] = -2.0                               # the 'A' latent is silent on absorbed words
    for j in range(n_abs):
        W_enc[26 + j, 26 + j] = 1.0                    # each absorber fires on its own word only
        W_dec[26 + j] = (eye[0] + eye[26 + j]) / 2 ** 0.5
    d = Dictionary(DictionaryConfig(rule="jumprelu", d_in=D, d_sae=F, jumprelu_init_threshold=0.3))
    with torch.no_grad():
        d.W_enc_DF.copy_(W_enc), d.W_dec_FD.copy_(W_dec), d.b_enc_F.zero_(), d.b_dec_D.zero_()
    res = absorption_from_activations(acts, letters, d.eval(), AbsorptionConfig())
    per = res["per_letter"]
    assert res["n_letters"] == 26
    assert all(per[L]["absorption_fraction"] == 0 for L in string.ascii_uppercase[1:])
    a = per["A"]
    assert a["n_split"] == 1 and 0 < a["absorption_fraction"] <= 10 / a["n_true_positives"]
    assert a["full_absorption_rate"] == a["absorption_fraction"]  # each absorbed word is fully absorbed
    assert abs(res["mean_absorption_fraction"] - a["absorption_fraction"] / 26) < 1e-9


@pytest.fixture(scope="module")
def tiny(tiny_series_dir):
    from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_series_dir / "tokenizer"))
    model = GPTNeoXForCausalLM.from_pretrained(str(tiny_series_dir / "step_000004")).eval()
    return tok, model


def test_prompts_and_word_activations_on_a_tiny_model(tiny):
    """Prompts decode to the template; batched, right-padded capture equals one prompt at a time."""
    from ontogeny.series.sites import capture

    tok, model = tiny
    words = alpha_tokens(tok)
    assert len(words) > 20 and all(w.strip().isalpha() and w.isascii() for _, w in words)
    cfg = AbsorptionConfig(n_icl=2, batch_size=4)
    ids, pos = build_prompt(tok, words[0][0], words[0][1], words[1:3], cfg)
    text = tok.decode(ids)
    assert text == (f"{words[1][1]} has the first letter: {words[1][1].strip()[0].upper()}\n"
                    f"{words[2][1]} has the first letter: {words[2][1].strip()[0].upper()}\n"
                    f"{words[0][1]} has the first letter:")
    assert ids[pos] == words[0][0]
    sub = words[:9]
    acts = word_activations(model, tok, "blocks.1.hook_resid_post", sub, cfg)
    assert acts.shape == (9, 32)
    import numpy as np
    rng = np.random.default_rng(cfg.seed)
    for i, (wid, w) in enumerate(sub):
        pool = [j for j in rng.choice(len(sub), size=3, replace=False) if j != i][:2]
        p, ps = build_prompt(tok, wid, w, [sub[j] for j in pool], cfg)
        one = capture(model, torch.tensor([p]), ["blocks.1.hook_resid_post"])["blocks.1.hook_resid_post"]
        assert torch.allclose(acts[i], one[0, ps], atol=1e-5)

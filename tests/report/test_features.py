"""Feature-page building blocks against planted inputs and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ontogeny.report.features import TokenText, histogram, logit_effects, select_lineages, spread, top_contexts
from ontogeny.report.pages import context_html, token_html


class Chars:
    """A stand-in tokenizer: token i is the character chr(97 + i % 26), 26 is a newline."""

    def decode(self, ids):
        return "".join("\n" if i == 26 else chr(97 + i % 26) for i in ids)


def test_top_contexts_planted_rows_one_per_sequence_with_aligned_windows():
    S, T = 4, 10
    ids_ST = np.arange(S * T).reshape(S, T) % 27
    acts = np.zeros(S * T)
    acts[[1 * T + 5, 1 * T + 6, 3 * T + 0, 2 * T + 9]] = [5.0, 4.0, 3.0, 1.0]  # seq 1 twice: only its best shows
    ctx = top_contexts(acts, ids_ST, TokenText(Chars()), n=5, before=3, after=2)
    assert [(c["seq"], c["pos"], c["max"]) for c in ctx] == [(1, 5, 5.0), (3, 0, 3.0), (2, 9, 1.0)]
    first = ctx[0]
    assert first["tokens"][first["target"]] == Chars().decode([ids_ST[1, 5]])
    assert first["values"] == [0.0, 0.0, 0.0, 5.0, 4.0, 0.0] and len(first["tokens"]) == 6
    assert ctx[1]["target"] == 0 and len(ctx[1]["tokens"]) == 3  # window clipped at the sequence start


def test_histogram_counts_the_nonzero_activations():
    a = np.array([0, 0, 1.0, 2.0, 2.0, 3.0, 0])
    h = histogram(a, 4)
    assert sum(h["counts"]) == 4 and h["firing_frac"] == pytest.approx(4 / 7)
    assert h["edges"][0] == 1.0 and h["edges"][-1] == 3.0
    assert histogram(np.zeros(5), 4)["counts"] == []


def test_logit_effects_match_a_full_sort():
    g = torch.Generator().manual_seed(0)
    W_U, d = torch.randn(30, 6, generator=g), torch.randn(6, generator=g)
    eff = logit_effects(W_U, d, TokenText(Chars()), n=3)
    order = torch.argsort(W_U @ d, descending=True).tolist()
    assert [t for t, _ in eff["promoted"]] == [Chars().decode([i]) for i in order[:3]]
    assert [t for t, _ in eff["suppressed"]] == [Chars().decode([i]) for i in order[::-1][:3]]
    assert eff["promoted"][0][1] == pytest.approx(float((W_U @ d).max()), abs=1e-3)


def lin(i, **kw):
    base = {"lineage_id": i, "n_checkpoints": 3, "is_carrier": False, "fate": "censored", "origin": "initial",
            "all_stable": False}
    return {**base, **kw}


def test_selection_keeps_every_carrier_and_the_largest_of_each_kind():
    L = [lin(0, is_carrier=True, all_stable=True), lin(1, is_carrier=True), lin(2, fate="died", n_checkpoints=2),
         lin(3, fate="died", n_checkpoints=5), lin(4, origin="born", n_checkpoints=1), lin(5, fate="merged"),
         lin(6, all_stable=True), lin(7, all_stable=True, n_checkpoints=9), lin(8)]
    got = select_lineages(L, {6: 0.5}, n_per_kind=1, named=[8])
    assert got == {0: ["carrier"], 1: ["carrier"], 3: ["died"], 4: ["born late"], 5: ["split/merge"],
                   7: ["stable"], 8: ["named"]}
    with pytest.raises(ValueError, match="lineage 99"):
        select_lineages(L, {}, 1, named=[99])
    assert spread(list(range(10)), 4) == [0, 3, 6, 9] and spread([2, 3], 4) == [2, 3]


def test_text_is_escaped_and_whitespace_visible():
    assert token_html("<b>&") == "&lt;b&gt;&amp;"
    assert token_html(" a\n") == "<span class='ws'>·</span>a<span class='ws'>↵</span>"
    html = context_html({"seq": 0, "pos": 1, "target": 1, "max": 2.0, "tokens": ["x", "<script>"],
                         "values": [1.0, 2.0]}, scale=2.0)
    assert "<script>" not in html and "tok hl" in html and "rgba(255,140,0,0.50)" in html

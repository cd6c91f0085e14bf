"""Census scores on hand-built attention patterns whose answers are known analytically."""

from __future__ import annotations

import pytest
import torch

from ontogeny.census import scores
from ontogeny.errors import ConfigError

P, O = 6, 3  # period and random-prefix length of the hand-built [prefix, r, r] inputs
T = O + 2 * P


def tokens(B: int = 2) -> torch.Tensor:
    """[prefix, r, r] with all-distinct tokens in prefix + r, so every mask has a single answer."""
    rows = []
    for b in range(B):
        ids = torch.arange(100 * b, 100 * b + O + P)
        rows.append(torch.cat([ids, ids[O:]]))
    return torch.stack(rows)


def pattern_attending(back: dict[int, int] | None, B: int = 2, H: int = 1) -> torch.Tensor:
    """[B, H, T, T]: query t attends fully to t - back[t] where given, else to itself."""
    A = torch.zeros(B, H, T, T)
    for t in range(T):
        k = t - back[t] if back and t in back else t
        A[:, :, t, k] = 1.0
    return A


def second_copy() -> range:
    return range(O + P, O + 2 * P)


def test_previous_token_head():
    A = pattern_attending({t: 1 for t in range(1, T)})
    assert scores.previous_token_score(A).item() == pytest.approx(1.0)
    assert scores.induction_score(A, P, O).item() == pytest.approx(0.0)
    assert scores.duplicate_token_score(A, tokens()).item() == pytest.approx(0.0)
    d, s, shift = scores.best_offset(A, P, O)
    assert (d.item(), s.item(), shift.item()) == (1, pytest.approx(1.0), P - 2)


def test_induction_head_scores_one_and_prefix_matching_agrees():
    A = pattern_attending({t: P - 1 for t in second_copy()})
    x = tokens()
    assert scores.induction_score(A, P, O).item() == pytest.approx(1.0)
    # queries with an earlier "next token" key exist only in the second copy, and all attend to it
    assert scores.prefix_matching_score(A, x).item() == pytest.approx(1.0)
    assert scores.duplicate_token_score(A, x).item() == pytest.approx(0.0)
    # first-copy queries attend to themselves: previous-token mass is 0 there, so the score is 0
    assert scores.previous_token_score(A).item() == pytest.approx(0.0)
    d, s, shift = scores.best_offset(A, P, O)
    assert (d.item(), shift.item()) == (P - 1, 0)


def test_duplicate_and_shifted_heads():
    x = tokens()
    dup = pattern_attending({t: P for t in second_copy()})
    assert scores.duplicate_token_score(dup, x).item() == pytest.approx(1.0)
    assert scores.induction_score(dup, P, O).item() == pytest.approx(0.0)
    assert scores.best_offset(dup, P, O)[2].item() == -1
    # a circuit looking 3 tokens past the induction target (the i-P+6 kind of the issue, shifted by 3)
    shifted = pattern_attending({t: P - 1 - 3 for t in second_copy()})
    assert scores.induction_score(shifted, P, O).item() == pytest.approx(0.0)
    assert scores.best_offset(shifted, P, O)[2].item() == 3


def test_uniform_attention_has_the_analytic_scores():
    A = torch.tril(torch.ones(T, T))
    A = (A / A.sum(-1, keepdim=True))[None, None].repeat(2, 1, 1, 1)
    expected_prev = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    assert scores.previous_token_score(A).item() == pytest.approx(expected_prev)
    q = list(second_copy())
    assert scores.induction_score(A, P, O).item() == pytest.approx(sum(1 / (t + 1) for t in q) / len(q))
    # duplicate keys: exactly one per second-copy query (distinct tokens), so the same mass
    expected_dup = sum(1 / (t + 1) for t in q) / len(q)
    assert scores.duplicate_token_score(A, tokens()).item() == pytest.approx(expected_dup)


def test_masked_mass_counts_only_queries_with_keys_and_per_head():
    A = torch.zeros(1, 2, 4, 4)
    A[0, 0] = torch.eye(4)
    A[0, 1, :, 0] = 1.0
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 2, 0] = True  # only query 2 has a key (key 0)
    assert scores.masked_mass(A, mask).tolist() == pytest.approx([0.0, 1.0])
    assert scores.masked_mass(A, torch.zeros_like(mask)).tolist() == [0.0, 0.0]


def test_bad_shapes_and_periods_are_named():
    with pytest.raises(ConfigError, match="period"):
        scores.induction_score(torch.zeros(1, 1, 10, 10), 6, 0)
    with pytest.raises(ConfigError, match=r"\[B, H, T, T\]"):
        scores.previous_token_score(torch.zeros(3, 10, 10))
    with pytest.raises(ConfigError, match="tokens"):
        scores.duplicate_token_score(torch.zeros(1, 1, 5, 5), torch.zeros(1, 4, dtype=torch.long))

"""Per-head attention scores from attention patterns and the tokens they attend over (pure functions).

Why: a head is named by what its attention does on inputs whose answer is known. Every score here is
"mass of attention on a set of keys, averaged over the queries that have such keys", with the key set
built from the tokens (mechanism-level) or from positions (pattern-level), so the same code scores a
hand-built pattern in a test and a real model's pattern in the census.

With A the [B, H, T, T] attention probabilities (query t, key k <= t) and x the [B, T] tokens:

- previous-token: mean over t >= 1 of A[t, t-1] (Olsson et al. 2022; Elhage et al. 2021);
- duplicate-token: sum of A[t, k] over earlier keys k < t with x[k] = x[t], averaged over queries
  that have one (Wang et al. 2022, "Interpretability in the wild");
- prefix-matching: sum of A[t, k] over keys k <= t with x[k-1] = x[t], the token that followed an
  earlier occurrence of the current token, averaged over queries that have one (Olsson et al. 2022);
- induction (i-P+1): on [prefix, r, r] with span r of period P starting at `offset`, mean over the
  second copy's queries t of A[t, t-P+1]; position-level, so on spans with distinct tokens it equals
  prefix-matching, and the two differ only where r repeats a token;
- offset profile: mean over the second copy's queries of A[t, t-d] for back-distance d; its argmax is
  the head's `best_offset` (1 for a previous-token head, P-1 for an induction head, a fixed d for a
  positional head whatever P), and `best_shift = P - 1 - best_offset` says where it looks relative to
  the induction target: 0 induction, -1 duplicate, s > 0 a circuit shifted s tokens past it.
"""

from __future__ import annotations

import torch

from ontogeny.errors import ConfigError


def _check(pattern_BHTT: torch.Tensor, tokens_BT: torch.Tensor | None = None) -> None:
    if pattern_BHTT.ndim != 4 or pattern_BHTT.shape[-1] != pattern_BHTT.shape[-2]:
        raise ConfigError(f"attention pattern must be [B, H, T, T], got {tuple(pattern_BHTT.shape)}")
    if tokens_BT is not None and tuple(tokens_BT.shape) != (pattern_BHTT.shape[0], pattern_BHTT.shape[-1]):
        raise ConfigError(f"tokens {tuple(tokens_BT.shape)} do not match the pattern "
                          f"{tuple(pattern_BHTT.shape)} (need [B, T])")


def masked_mass(pattern_BHTT: torch.Tensor, mask_BTT: torch.Tensor) -> torch.Tensor:
    """Per head: attention mass on the masked keys, averaged over queries with at least one masked key.

    [H]; 0 where no query has a masked key (there is nothing to attend to, so no mass is measured).
    """
    mask = mask_BTT.to(pattern_BHTT.dtype)[:, None]  # [B, 1, T, T]
    mass_BHT = (pattern_BHTT.float() * mask).sum(-1)
    has_BT = mask_BTT.any(-1)  # [B, T]
    n = has_BT.sum()
    if n == 0:
        return torch.zeros(pattern_BHTT.shape[1])
    return (mass_BHT * has_BT[:, None]).sum(dim=(0, 2)) / n


def previous_token_score(pattern_BHTT: torch.Tensor) -> torch.Tensor:
    """[H] mean attention from each query t >= 1 to key t-1."""
    _check(pattern_BHTT)
    T = pattern_BHTT.shape[-1]
    t = torch.arange(1, T)
    return pattern_BHTT[:, :, t, t - 1].float().mean(dim=(0, 2))


def _causal_BTT(tokens_BT: torch.Tensor, strict: bool) -> torch.Tensor:
    T = tokens_BT.shape[1]
    return torch.ones(T, T, dtype=torch.bool).tril(-1 if strict else 0)[None]


def duplicate_token_score(pattern_BHTT: torch.Tensor, tokens_BT: torch.Tensor) -> torch.Tensor:
    """[H] attention mass on earlier keys holding the query's own token."""
    _check(pattern_BHTT, tokens_BT)
    same_BTT = tokens_BT[:, :, None] == tokens_BT[:, None, :]
    return masked_mass(pattern_BHTT, same_BTT & _causal_BTT(tokens_BT, strict=True))


def prefix_matching_score(pattern_BHTT: torch.Tensor, tokens_BT: torch.Tensor) -> torch.Tensor:
    """[H] attention mass on keys k whose previous token x[k-1] is the query's token x[t]."""
    _check(pattern_BHTT, tokens_BT)
    B, T = tokens_BT.shape
    prev_BT = torch.cat([torch.full((B, 1), -1, dtype=tokens_BT.dtype), tokens_BT[:, :-1]], dim=1)
    match_BTT = (tokens_BT[:, :, None] == prev_BT[:, None, :]) & (prev_BT[:, None, :] >= 0)
    return masked_mass(pattern_BHTT, match_BTT & _causal_BTT(tokens_BT, strict=False))


def second_copy_queries(T: int, period: int, offset: int) -> torch.Tensor:
    """Query positions of the second copy in [prefix of `offset`, r, r] (r of length `period`)."""
    if period < 2 or offset < 0 or offset + 2 * period > T:
        raise ConfigError(f"period {period} at offset {offset} does not fit twice in {T} positions")
    return torch.arange(offset + period, offset + 2 * period)


def induction_score(pattern_BHTT: torch.Tensor, period: int, offset: int = 0) -> torch.Tensor:
    """[H] mean attention from each second-copy query t to key t-P+1 (the token after its first copy)."""
    _check(pattern_BHTT)
    q = second_copy_queries(pattern_BHTT.shape[-1], period, offset)
    return pattern_BHTT[:, :, q, q - period + 1].float().mean(dim=(0, 2))


def offset_profile(pattern_BHTT: torch.Tensor, period: int, offset: int = 0) -> torch.Tensor:
    """[H, D] mean attention from the second copy's queries to back-distance d = 0 .. offset+P (keys >= 0)."""
    _check(pattern_BHTT)
    q = second_copy_queries(pattern_BHTT.shape[-1], period, offset)
    D = int(q[0]) + 1  # every second-copy query reaches back at least this far
    d = torch.arange(D)
    return pattern_BHTT[:, :, q[:, None], q[:, None] - d[None, :]].float().mean(dim=(0, 2))


def best_offset(pattern_BHTT: torch.Tensor, period: int, offset: int = 0,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per head: (best back-distance d [H], its mean attention [H], best shift P-1-d [H]).

    d = 0 (the query itself) is a legitimate answer: a head that attends to itself is not shifted.
    """
    prof_HD = offset_profile(pattern_BHTT, period, offset)
    score_H, d_H = prof_HD.max(dim=-1)
    return d_H, score_H, period - 1 - d_H

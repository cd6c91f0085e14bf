"""Synthetic repeated-span sequences (the induction curriculum) and the induction measurement.

A synthetic sequence is random tokens from a pool (`SyntheticConfig.pool`: every non-special token by
default, or the single-token prose words) with one random span of period P repeated back to back (at
least twice) at a random offset. P varies over `periods` minus `heldout_periods`, so a
model cannot solve it with a fixed "copy from P back" head (which is what a fixed period teaches) and
the held-out periods test real induction: attend to the token after the previous occurrence of the
current token (Olsson et al. 2022, "In-context learning and induction heads").

Induction score (per Olsson et al.'s repeated-random-tokens test): on sequences made of a random span
of length P followed by the same span, `loss_first` is the mean next-token loss on targets 1..P-1 of
the first copy and `loss_second` on targets P+1..2P-1 of the second copy (the first token of each copy
is unpredictable); the score is `loss_first - loss_second` in nats (0 without in-context copying).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ontogeny.errors import ConfigError


class SyntheticConfig(BaseModel):
    """Periods of the repeated spans; held-out periods never occur in training."""

    model_config = ConfigDict(extra="forbid")

    min_period: int = Field(3, ge=2, description="shortest repeated span in training")
    max_period: int = Field(16, ge=2, description="longest repeated span in training")
    heldout_periods: tuple[int, ...] = Field((11,), description="periods kept out of training (the head "
                                             "census probes 11, and 20 and 32, longer than any trained)")
    min_repeats: int = Field(2, ge=2, description="fewest copies of the span in one sequence")
    max_repeats: int = Field(16, ge=2, description="most copies of the span (capped by what fits)")
    pool: Literal["vocab", "alphabet"] = Field(
        "vocab", description="tokens the training spans and their background are drawn from: every "
        "non-special token ('vocab'), or the single-token common prose words ('alphabet')")

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.max_period < self.min_period:
            raise ConfigError(f"max_period={self.max_period} < min_period={self.min_period}")
        if self.max_repeats < self.min_repeats:
            raise ConfigError(f"max_repeats={self.max_repeats} < min_repeats={self.min_repeats}")
        if not self.train_periods:
            raise ConfigError("heldout_periods leave no training period")
        return self

    @property
    def train_periods(self) -> list[int]:
        return [p for p in range(self.min_period, self.max_period + 1) if p not in self.heldout_periods]


def synthetic_indices(rng: np.random.Generator, cfg: SyntheticConfig, alphabet_size: int,
                      length: int) -> np.ndarray:
    """One synthetic sequence of `length` indices into the pool (see module docstring)."""
    periods = [p for p in cfg.train_periods if 2 * p <= length]
    if not periods:
        raise ConfigError(f"no training period fits twice in a sequence of length {length}")
    period = int(rng.choice(periods))
    repeats = min(int(rng.integers(cfg.min_repeats, cfg.max_repeats + 1)), length // period)
    out = rng.integers(0, alphabet_size, size=length)
    start = int(rng.integers(0, length - repeats * period + 1))
    span = rng.integers(0, alphabet_size, size=period)
    out[start: start + repeats * period] = np.tile(span, repeats)
    return out


def synthetic_batch(rng: np.random.Generator, cfg: SyntheticConfig, alphabet_ids: torch.Tensor,
                    n_rows: int, length: int) -> torch.Tensor:
    """[n_rows, length] token ids of synthetic sequences drawn over `alphabet_ids`."""
    if n_rows == 0:
        return torch.empty(0, length, dtype=torch.long)
    idx = np.stack([synthetic_indices(rng, cfg, len(alphabet_ids), length) for _ in range(n_rows)])
    return alphabet_ids[torch.from_numpy(idx)]


def repeated_tokens(generator: torch.Generator, token_ids: torch.Tensor, n_seqs: int,
                    period: int) -> torch.Tensor:
    """[n_seqs, 2*period]: a random span over `token_ids` followed by the same span."""
    pick = torch.randint(0, len(token_ids), (n_seqs, period), generator=generator)
    span_BP = token_ids[pick]
    return torch.cat([span_BP, span_BP], dim=1)


@torch.no_grad()
def copy_losses(model: torch.nn.Module, tokens_BT: torch.Tensor, period: int) -> tuple[float, float]:
    """(loss_first, loss_second) on a batch of repeated spans (see module docstring)."""
    if tokens_BT.shape[1] != 2 * period:
        raise ConfigError(f"tokens have length {tokens_BT.shape[1]}, expected 2*period={2 * period}")
    logits_BTV = model(input_ids=tokens_BT).logits.float()
    nll_BT = F.cross_entropy(logits_BTV[:, :-1].transpose(1, 2), tokens_BT[:, 1:], reduction="none")
    # nll_BT[:, t] is the loss of predicting token t+1: first copy targets 1..P-1, second P+1..2P-1.
    first = nll_BT[:, 0: period - 1].mean().item()
    second = nll_BT[:, period: 2 * period - 1].mean().item()
    return first, second


def induction_metrics(model: torch.nn.Module, alphabet_ids: torch.Tensor, vocab_ids: torch.Tensor,
                      periods: Sequence[int], n_seqs: int = 32, seed: int = 0) -> dict[str, float]:
    """Induction scores at each period, over the synthetic alphabet and over the whole vocabulary.

    Keys: `ind_p{P}` (alphabet spans), `ind_full_p{P}` (whole-vocabulary spans), `induction` (mean of
    the alphabet scores), `induction_full`, and `copy_first` / `copy_second` (mean losses, alphabet).
    Sequences are fixed by `seed`, so every checkpoint is scored on the same tokens.
    """
    out: dict[str, float] = {}
    firsts, seconds, full = [], [], []
    for p in periods:
        g = torch.Generator().manual_seed(seed * 1000 + p)
        a, b = copy_losses(model, repeated_tokens(g, alphabet_ids, n_seqs, p), p)
        fa, fb = copy_losses(model, repeated_tokens(g, vocab_ids, n_seqs, p), p)
        out[f"ind_p{p}"] = a - b
        out[f"ind_full_p{p}"] = fa - fb
        firsts.append(a)
        seconds.append(b)
        full.append(fa - fb)
    out["copy_first"] = float(np.mean(firsts))
    out["copy_second"] = float(np.mean(seconds))
    out["induction"] = out["copy_first"] - out["copy_second"]
    out["induction_full"] = float(np.mean(full))
    return out

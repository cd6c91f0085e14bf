"""Token streams for LM training: natural-text windows mixed with synthetic repeated-span rows.

The batch at step s is a pure function of (seed, s), so a resumed run sees the same data as an
uninterrupted one. Natural rows are random windows of the concatenated train documents (each ended by
EOS); synthetic rows are drawn fresh from `ontogeny.series.synthetic` over the pool tokens
(`SyntheticConfig.pool`: every non-special token, or the alphabet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from ontogeny.errors import ConfigError
from ontogeny.series.corpus import KINDS, Corpus, Document
from ontogeny.series.synthetic import SyntheticConfig, synthetic_batch
from ontogeny.series.tokenizer import alphabet_token_ids, ordinary_token_ids


def _stream(tokenizer: PreTrainedTokenizerFast, docs: list[Document]) -> torch.Tensor:
    """All documents' tokens, each followed by EOS, as one long 1-D tensor."""
    eos = tokenizer.eos_token_id
    encs = tokenizer.backend_tokenizer.encode_batch([d.text for d in docs], add_special_tokens=False)
    flat = [t for e in encs for t in (*e.ids, eos)]
    return torch.tensor(flat, dtype=torch.long)


@dataclass
class TokenData:
    """Train stream, fixed eval windows per kind, and the token sets the synthetic rows use."""

    train_stream: torch.Tensor
    eval_windows: dict[str, torch.Tensor]
    alphabet_ids: torch.Tensor
    vocab_ids: torch.Tensor
    synthetic: SyntheticConfig
    context: int
    seed: int

    @classmethod
    def build(cls, corpus: Corpus, tokenizer: PreTrainedTokenizerFast, synthetic: SyntheticConfig,
              context: int, eval_windows: int, seed: int) -> TokenData:
        natural = [d for d in corpus.train if d.kind != "synthetic"]
        train_stream = _stream(tokenizer, natural)
        if len(train_stream) <= context + 1:
            raise ConfigError(f"train corpus has {len(train_stream)} tokens, fewer than context={context}")
        windows: dict[str, torch.Tensor] = {}
        for kind, docs in corpus.by_kind("eval").items():
            s = _stream(tokenizer, docs) if docs else torch.empty(0, dtype=torch.long)
            n = min(eval_windows, len(s) // (context + 1))
            if n:  # evenly spaced, non-overlapping windows: a fixed eval set per kind
                starts = torch.linspace(0, len(s) - context - 1, n).long()
                windows[kind] = torch.stack([s[i: i + context + 1] for i in starts])
        alphabet = alphabet_token_ids(tokenizer, corpus.alphabet)
        return cls(train_stream, windows, alphabet, ordinary_token_ids(tokenizer), synthetic, context, seed)

    def batch(self, step: int, n_natural: int, n_synthetic: int,
              synthetic_context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids for training step `step`: natural [n_natural, context+1], synthetic
        [n_synthetic, synthetic_context+1]; a pure function of (seed, step)."""
        rng = np.random.default_rng([self.seed, step, 11])
        starts = rng.integers(0, len(self.train_stream) - self.context - 1, size=n_natural)
        offsets = torch.arange(self.context + 1)
        natural_BT = self.train_stream[torch.from_numpy(starts)[:, None] + offsets]
        synthetic_BS = synthetic_batch(rng, self.synthetic, self.pool_ids, n_synthetic,
                                       synthetic_context + 1)
        return natural_BT, synthetic_BS

    @property
    def pool_ids(self) -> torch.Tensor:
        """Token ids the synthetic training rows draw from (`SyntheticConfig.pool`)."""
        return self.vocab_ids if self.synthetic.pool == "vocab" else self.alphabet_ids

    def summary(self) -> dict[str, int]:
        out = {"train_tokens": int(len(self.train_stream)), "alphabet_tokens": int(len(self.alphabet_ids))}
        out.update({f"eval_windows_{k}": int(len(v)) for k, v in self.eval_windows.items()})
        return out


__all__ = ["KINDS", "TokenData"]

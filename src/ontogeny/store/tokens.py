"""The shared token set: held-out text from the embedded corpus, packed into fixed windows."""

from __future__ import annotations

import torch

from ontogeny.store.activations import pack_tokens


def eval_token_ids(tokenizer, n_seqs: int, ctx: int, seed: int = 0, corpus_seed: int = 0,
                   corpus_config=None) -> torch.Tensor:
    """Token ids [n_seqs, ctx] from the embedded corpus's eval split (deterministic given the seeds)."""
    from ontogeny.series.corpus import build_corpus

    corpus = build_corpus(seed=corpus_seed, config=corpus_config)
    return pack_tokens(tokenizer, [d.text for d in corpus.eval], n_seqs, ctx, seed)

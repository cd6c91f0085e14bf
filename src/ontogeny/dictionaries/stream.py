"""Streamed training data: one checkpoint's forward pass over corpus windows feeds every site's dictionary.

Why: a research-scale study trains each dictionary on millions of tokens at every checkpoint; caching
those activations on disk is impossible (DESIGN.md "Scale"), so the training rows are computed on the fly.

The flow, per checkpoint:
  `TrainingWindows`   seeded windows [B, T] of the corpus's *train* split (the evaluation set is cut from
                      the *eval* split, so training tokens never include an evaluation token position)
  `activation_chunks` one forward per window batch, capturing ALL requested sites at once ({site: [B*T, D]}),
                      stopping after the last needed layer and never running the unembedding
  `MixingBuffer`      a bounded shuffling buffer on the training device, refilled by halves like
                      SAELens's mixing buffer: fill to capacity, shuffle, emit the first half as batches,
                      keep the second half, refill. Rows of all sites share one permutation (row i of every
                      site is the same token), so `train_many` sees aligned batches.
Memory is bounded by `capacity + one chunk` rows per site, whatever the token budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ontogeny.errors import ConfigError

from ontogeny.series.sites import capture, parse_site

Chunk = dict[str, torch.Tensor]


class StreamConfig(BaseModel):
    """How a checkpoint's dictionaries are fed: token budget, buffer, batch and initialisation across steps."""

    model_config = ConfigDict(extra="forbid")

    training_tokens: int = Field(1_048_576, gt=0, description="tokens each dictionary trains on, streamed from "
                                 "the corpus's train split (independent of the evaluation token set)")
    batch_size: int = Field(4096, gt=0, description="tokens per optimiser step (every site's dictionary "
                            "steps on the same tokens)")
    buffer_tokens: int = Field(65_536, gt=0, description="capacity of the shuffling buffer per site; half of "
                               "it is emitted after each refill")
    forward_seqs: int = Field(64, gt=0, description="sequences per forward pass of the checkpoint")
    ctx: int | None = Field(None, gt=1, description="tokens per training window (None: the evaluation set's ctx)")
    init: Literal["shared", "warm"] = Field("shared", description="shared: the same seeded init per site at "
                                            "every checkpoint; warm: start from the previous checkpoint's "
                                            "dictionary (SAE-Track)")
    l2_pull: float = Field(0.0, ge=0, description="warm start: weight lambda of lambda * ||theta - "
                           "theta_prev||^2 added to the loss (0: plain warm start)")
    normalize: bool = Field(True, description="scale each site's inputs so E||x||^2 = d_in (estimated on the "
                            "first buffer fill), folded into the saved weights")
    seed: int = Field(0, description="seed of the window order and the buffer's shuffles")

    @property
    def n_steps(self) -> int:
        """Optimiser steps per dictionary: floor(training_tokens / batch_size)."""
        return self.training_tokens // self.batch_size


# ---------------------------------------------------------------------------------------- token windows
class TrainingWindows:
    """Seeded, non-overlapping windows [B, ctx] of a 1-D token stream, epoch after epoch.

    Each epoch cuts the stream at a random offset into windows and visits them in a random order, so no
    token is seen twice before every window was seen once. Deterministic given the seed.
    """

    def __init__(self, stream_N: torch.Tensor, ctx: int, seed: int = 0):
        if stream_N.dim() != 1:
            raise ConfigError(f"the training token stream must be 1-D, got shape {tuple(stream_N.shape)}")
        if stream_N.numel() < 2 * ctx:
            raise ConfigError(f"the training token stream has {stream_N.numel()} tokens, fewer than 2 windows "
                              f"of ctx={ctx}")
        self.stream_N, self.ctx, self.seed = stream_N.long(), ctx, seed

    @property
    def windows_per_epoch(self) -> int:
        return (self.stream_N.numel() - self.ctx) // self.ctx

    def batches(self, batch_seqs: int) -> Iterator[torch.Tensor]:
        """Endless batches [batch_seqs, ctx] of token ids."""
        gen = torch.Generator().manual_seed(self.seed)
        held = torch.empty(0, self.ctx, dtype=torch.long)
        while True:
            while held.shape[0] < batch_seqs:  # a new epoch: random offset, random window order
                offset = int(torch.randint(0, self.ctx, (1,), generator=gen))
                starts = offset + self.ctx * torch.randperm(self.windows_per_epoch, generator=gen)
                held = torch.cat([held, self.stream_N[starts[:, None] + torch.arange(self.ctx)]])
            out, held = held[:batch_seqs], held[batch_seqs:]
            yield out


_TRAIN_STREAMS: dict[tuple[str, str], torch.Tensor] = {}


def corpus_train_stream(tokenizer, corpus) -> torch.Tensor:
    """All train-split documents of the corpus (every kind), each ended by EOS, as one 1-D token tensor.

    The evaluation set (`store.tokens.eval_token_ids`, `pack_tokens` over `corpus.eval`) comes from the
    held-out documents, so training windows never contain an evaluation token position. Tokenising the
    corpus takes seconds, so the stream is kept per (corpus hash, tokenizer hash) for the process: every
    checkpoint's unit of a study reads the same one.
    """
    import hashlib

    key = (str(getattr(corpus, "hash", "")), hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest())
    if key[0] and key in _TRAIN_STREAMS:
        return _TRAIN_STREAMS[key]
    out = _tokenize_train(tokenizer, corpus)
    if key[0]:
        _TRAIN_STREAMS.clear()  # one corpus at a time: the stream is tens of MB for a big corpus
        _TRAIN_STREAMS[key] = out
    return out


def _tokenize_train(tokenizer, corpus) -> torch.Tensor:
    eos = tokenizer.eos_token_id
    encs = tokenizer.backend_tokenizer.encode_batch([d.text for d in corpus.train], add_special_tokens=False)
    flat = [t for e in encs for t in (*e.ids, *(() if eos is None else (eos,)))]
    return torch.tensor(flat, dtype=torch.long)


# ---------------------------------------------------------------------------------------- activations
def _base_model(model: nn.Module) -> nn.Module:
    """The transformer body without the unembedding (GPTNeoXForCausalLM -> GPTNeoXModel)."""
    return getattr(model, "gpt_neox", model)


@torch.no_grad()
def activation_chunks(model: nn.Module, token_batches: Iterable[torch.Tensor], sites: Sequence[str],
                      device: str | torch.device | None = None) -> Iterator[Chunk]:
    """One forward per token batch [B, T], all sites captured at once: yields {site: [B*T, D] float32}.

    The forward runs the body only (no unembedding) and stops after the last layer a site needs.
    """
    if not sites:
        raise ConfigError("activation_chunks needs at least one site")
    body = _base_model(model)
    n_layers = int(model.config.num_hidden_layers)
    for s in sites:
        if parse_site(s, n_layers).kind == "attn.hook_pattern":
            raise ConfigError(f"site {s!r} is an attention pattern; dictionaries train on per-token activations")
    model_device = next(model.parameters()).device
    out_device = torch.device(device) if device is not None else model_device
    for ids_BT in token_batches:
        got = capture(body, ids_BT.to(model_device), list(sites))
        chunk = {}
        for s in sites:
            a = got[s].flatten(2) if got[s].dim() == 4 else got[s]  # hook_z [B,T,H,d] -> [B,T,H*d]
            chunk[s] = a.reshape(-1, a.shape[-1]).to(out_device, torch.float32)
        yield chunk


# ---------------------------------------------------------------------------------------- mixing buffer
class MixingBuffer:
    """A bounded shuffling buffer over aligned per-site rows, refilled by halves (SAELens's mixing buffer).

    `capacity` rows per site are preallocated on `device` as slots. `batches(chunks)` fills the free slots,
    draws one permutation of the held slots (a seeded CPU generator, so the order does not depend on the
    device), emits the rows of the first half as batches of `batch_size` and marks those slots free: the
    next fill writes new rows into them, in the order they were emitted. Rows are never moved inside the
    buffer (one copy in, one gather out per row). When the chunks run out the remaining full batches are
    emitted. Rows a chunk brings beyond the free space wait for the next fill, so at most
    `capacity + one chunk` rows are ever held.
    """

    def __init__(self, capacity: int, batch_size: int, seed: int = 0, device: str | torch.device = "cpu"):
        if batch_size <= 0 or capacity < 2 * batch_size:
            raise ConfigError(f"buffer capacity {capacity} must hold at least 2 batches of {batch_size} rows")
        self.capacity, self.batch_size, self.device = capacity, batch_size, torch.device(device)
        self.gen = torch.Generator().manual_seed(seed)
        self.store: Chunk = {}
        self.free = torch.arange(capacity)  # free slots, in the order the next fill writes them
        self.free_pos = 0
        self.max_held = 0  # most rows held at once, the buffer plus a pending chunk (boundedness)

    @property
    def n(self) -> int:
        """Rows held (filled slots)."""
        return self.capacity - (self.free.numel() - self.free_pos)

    def _append(self, chunk: Chunk) -> Chunk | None:
        """Copy as much of `chunk` as fits into the free slots; return the rest (or None)."""
        n_rows = _rows(chunk)
        if not self.store:
            self.store = {s: torch.empty(self.capacity, a.shape[1], dtype=a.dtype, device=self.device)
                          for s, a in chunk.items()}
        if set(chunk) != set(self.store):
            raise ConfigError(f"chunk sites {sorted(chunk)} differ from the buffer's {sorted(self.store)}")
        take = min(n_rows, self.capacity - self.n)
        slots = self.free[self.free_pos:self.free_pos + take].to(self.device)
        for s, a in chunk.items():
            self.store[s].index_copy_(0, slots, a[:take].to(self.store[s].dtype))
        self.free_pos += take
        self.max_held = max(self.max_held, self.n + n_rows - take)
        return {s: a[take:] for s, a in chunk.items()} if take < n_rows else None

    def _emit(self, n_out: int) -> Iterator[Chunk]:
        if self.n == self.capacity:
            held = None  # every slot: the permutation indexes slots directly
        else:  # the last emission after the chunks ran out: the filled slots, ascending
            mask = torch.ones(self.capacity, dtype=torch.bool)
            mask[self.free[self.free_pos:]] = False
            held = mask.nonzero().squeeze(1)
        perm = torch.randperm(self.n, generator=self.gen)
        out_slots = perm[:n_out] if held is None else held[perm[:n_out]]
        rest = self.free[self.free_pos:]
        self.free, self.free_pos = torch.cat([out_slots, rest]), 0
        dev_slots = out_slots.to(self.device)
        for i in range(0, n_out, self.batch_size):  # gathered copies: the slots are refilled only later
            idx = dev_slots[i:i + self.batch_size]
            yield {s: a.index_select(0, idx) for s, a in self.store.items()}  # ~4x faster than a[idx] on CPU

    def batches(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """Shuffled batches {site: [batch_size, D]} over the rows of `chunks`, in a bounded buffer."""
        it = iter(chunks)
        pending: Chunk | None = None
        exhausted = False
        while True:
            while self.n < self.capacity and not exhausted:
                if pending is None:
                    pending = next(it, None)
                    if pending is None:
                        exhausted = True
                        break
                    _check_chunk(pending)
                pending = self._append(pending)
            if exhausted:
                n_out = (self.n // self.batch_size) * self.batch_size
                if n_out:
                    yield from self._emit(n_out)
                return
            yield from self._emit(max(self.batch_size, (self.n // 2 // self.batch_size) * self.batch_size))


def _rows(chunk: Chunk) -> int:
    return next(iter(chunk.values())).shape[0]


def _check_chunk(chunk: Chunk) -> None:
    rows = {s: a.shape[0] for s, a in chunk.items()}
    if len(set(rows.values())) != 1:
        raise ConfigError(f"a chunk's sites hold different row counts: {rows}")
    for s, a in chunk.items():
        if a.dim() != 2:
            raise ConfigError(f"chunk rows of site {s} must be [N, D], got {tuple(a.shape)}")


def limit_rows(chunks: Iterable[Chunk], n_rows: int) -> Iterator[Chunk]:
    """The chunks until `n_rows` rows were yielded (the last one cut): a stream reads exactly its budget."""
    left = n_rows
    for c in chunks:
        if left <= 0:
            return
        m = _rows(c)
        yield c if m <= left else {s: a[:left] for s, a in c.items()}
        left -= m


def mixing_batches_reference(chunks: Iterable[Chunk], capacity: int, batch_size: int,
                             seed: int = 0) -> list[Chunk]:
    """Plain reference of `MixingBuffer.batches`: the same rule on Python lists of slots and row indices.

    All chunks are concatenated first (unbounded memory: a reference, not a path to train on), then the
    fill-free-slots / permute held slots / emit-half / free-the-emitted-slots rule is replayed with the
    same generator.
    """
    chunks = list(chunks)
    full = {s: torch.cat([c[s] for c in chunks]) for s in chunks[0]}
    total = _rows(full)
    gen = torch.Generator().manual_seed(seed)
    slot_row: dict[int, int] = {}  # slot -> global row index held there
    free = list(range(capacity))
    nxt = 0
    out: list[Chunk] = []
    while True:
        take = min(len(free), total - nxt)
        for j in range(take):
            slot_row[free[j]] = nxt + j
        free = free[take:]
        nxt += take
        held = sorted(slot_row)
        done = len(held) < capacity  # a fill that found too few rows: the chunks have run out
        n_out = (len(held) // batch_size) * batch_size if done else max(
            batch_size, (len(held) // 2 // batch_size) * batch_size)
        if n_out:
            perm = torch.randperm(len(held), generator=gen).tolist()
            emitted_slots = [held[p] for p in perm[:n_out]]
            emitted = [slot_row.pop(sl) for sl in emitted_slots]
            free = emitted_slots + free
            for i in range(0, n_out, batch_size):
                idx = torch.tensor(emitted[i:i + batch_size])
                out.append({s: a[idx] for s, a in full.items()})
        if done:
            return out


# ---------------------------------------------------------------------------------------- normalisation
def input_scale(rows_ND: torch.Tensor) -> float:
    """s with E||s x||^2 = D over the rows (SAELens `expected_average_only_in`): sqrt(D / mean ||x||^2)."""
    return float(math.sqrt(rows_ND.shape[1] / rows_ND.double().pow(2).sum(1).mean().clamp_min(1e-24)))


class AnchoredDictionary(nn.Module):
    """A trainer-contract wrapper: the inner dictionary's loss plus an L2 pull toward anchor weights.

    loss = inner loss + lambda * sum_p ||p - p_prev||^2 over W_enc, W_dec, b_enc, b_dec (SAE-Track-style
    warm start: Xu et al. 2024 initialise each checkpoint's SAE from the previous one; the pull term, a
    PROPOSAL here, keeps decoder directions from drifting without cause). It keeps the warm weights: it
    does not re-initialise b_dec from the first batch.
    """

    def __init__(self, inner: nn.Module, l2_pull: float = 0.0):
        super().__init__()
        self.inner = inner
        self.l2_pull = float(l2_pull)
        names = ("W_enc_DF", "W_dec_FD", "b_enc_F", "b_dec_D")
        self._anchor_names = [n for n in names if hasattr(inner, n)]
        for n in self._anchor_names:
            self.register_buffer(f"anchor_{n}", getattr(inner, n).detach().clone())

    @property
    def n_latents(self) -> int:
        return int(self.inner.n_latents)

    def training_loss(self, x, state):
        out = self.inner.training_loss(x, state)
        if self.l2_pull > 0:
            pull = sum((getattr(self.inner, n) - getattr(self, f"anchor_{n}")).pow(2).sum()
                       for n in self._anchor_names)
            out.loss = out.loss + self.l2_pull * pull
            out.metrics["l2_pull"] = pull.detach()
        return out

    def initialize_from_batch(self, x, method: str = "geometric_median") -> None:
        """Warm start: keep the previous checkpoint's b_dec."""

    def before_optimizer_step(self) -> None:
        self.inner.before_optimizer_step()

    def after_optimizer_step(self) -> None:
        self.inner.after_optimizer_step()

    def fold_input_scale(self, scale: float) -> None:
        self.inner.fold_input_scale(scale)

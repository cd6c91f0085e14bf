"""Capture: run checkpoints over the shared token set and hand their activations to the store.

Why here: capture runs models, so it lives with the series; the store (`ontogeny.store.activations`)
only reads and writes tensors. This module also owns the one definition of the *shared token set*
(`TokenSetConfig`, `shared_token_ids`): held-out text of the corpus a series was trained on, packed
into fixed windows — used alike by `ontogeny cache`, `ontogeny llc` and the study, so they all see the
same tokens for the same settings.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.errors import SiteError, StoreError
from ontogeny.series.sites import capture, parse_site, site_width  # noqa: F401  (site_width: re-export)
from ontogeny.store.activations import DTYPES, ActivationStore, write_store_meta, write_unit


class TokenSetConfig(BaseModel):
    """A fixed set of token ids: `n_seqs` windows of `ctx` tokens of held-out corpus text, chosen by `seed`."""

    model_config = ConfigDict(extra="forbid")

    n_seqs: int = Field(128, gt=0, description="sequences of the shared token set")
    ctx: int = Field(64, gt=1, description="tokens per sequence")
    seed: int = Field(0, description="seed that picks the sequences among the corpus windows")


class CaptureConfig(TokenSetConfig):
    """What `ontogeny cache` and a study's `[activations]` capture: sites on the shared token set."""

    sites: list[str] = Field(["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], min_length=1,
                             description="hook sites (TransformerLens names, see ontogeny.series.sites)")
    batch_size: int = Field(32, gt=0, description="sequences per forward pass")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="storage dtype of the shards")


def pack_tokens(tokenizer, texts: Sequence[str], n_seqs: int, ctx: int, seed: int = 0) -> torch.Tensor:
    """Token ids [n_seqs, ctx]: the texts tokenised, joined with EOS, cut into windows, a seeded sample."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t)["input_ids"])
        if eos is not None:
            ids.append(eos)
    n_windows = len(ids) // ctx
    if n_windows < n_seqs:
        raise StoreError(f"the texts give {n_windows} windows of {ctx} tokens; {n_seqs} were asked for")
    windows = torch.tensor(ids[: n_windows * ctx]).view(n_windows, ctx)
    pick = torch.randperm(n_windows, generator=torch.Generator().manual_seed(seed))[:n_seqs]
    return windows[pick.sort().values].contiguous()


def series_corpus(series_root: str | Path | None = None):
    """The embedded corpus a series was trained on (its `series.json` names the seed and corpus config).

    A series trained elsewhere (a Hub repo, a foreign folder) has no record: the default embedded corpus.
    Building it reads the standard library (seconds), so equal requests share one copy.
    """
    from ontogeny.series.load import read_series_json

    rec = read_series_json(series_root) if series_root is not None else {}
    cfg = rec.get("config", {})
    return _corpus(int(cfg.get("seed", 0)), json.dumps(cfg.get("corpus"), sort_keys=True))


@functools.lru_cache(maxsize=2)
def _corpus(seed: int, config_json: str):
    from ontogeny.series.corpus import CorpusConfig, build_corpus

    raw = json.loads(config_json)
    return build_corpus(seed=seed, config=CorpusConfig.model_validate(raw) if raw is not None else None)


def shared_token_ids(tokenizer, corpus, cfg: TokenSetConfig) -> torch.Tensor:
    """THE shared token set [n_seqs, ctx]: the corpus's held-out (eval) documents packed by `pack_tokens`."""
    return pack_tokens(tokenizer, [d.text for d in corpus.eval], cfg.n_seqs, cfg.ctx, cfg.seed)


def check_sites(sites: Sequence[str], n_layers: int) -> None:
    """Every site must name a per-token activation of a model with `n_layers` layers (SiteError otherwise)."""
    for s in sites:
        if parse_site(s, n_layers).kind == "attn.hook_pattern":
            raise SiteError(f"site {s!r} is an attention pattern; the store holds per-token activations")


def cache_activations(series, token_ids_ST: torch.Tensor, sites: Sequence[str], root: str | Path,
                      steps: Sequence[int] | None = None, batch_size: int = 32, dtype: str = "float32",
                      shard_rows: int = 1 << 20, config: Any = None, skip_complete: bool = True,
                      on_step: Callable[[int], None] | None = None) -> ActivationStore:
    """Capture `sites` at each step on the same token ids and write them.

    One forward pass per batch serves every site; each (step, site) is written atomically. With
    `skip_complete` (what `ontogeny cache` does to extend a store) units already complete are left alone;
    the study passes False, since its manifest alone decides what is done.
    """
    steps = list(series.steps if steps is None else steps)
    if dtype not in DTYPES:
        raise StoreError(f"unknown dtype {dtype!r}: use one of {sorted(DTYPES)}")
    check_sites(sites, series.n_layers)
    widths = {s: series.d_model for s in sites}
    write_store_meta(root, token_ids_ST, sites, widths, steps, config,
                     {"series": ",".join(c.describe() for c in series.checkpoints)})
    store = ActivationStore(root)
    for step in steps:
        todo = [s for s in sites if not (skip_complete and store.has(step, s))]
        if todo:
            acts = capture_all(series.model(step), token_ids_ST, todo, batch_size)
            for site, acts_ND in acts.items():
                write_unit(store, step, site, acts_ND.to(DTYPES[dtype]), shard_rows)
        if on_step is not None:
            on_step(step)
    return store


@torch.no_grad()
def capture_all(model, token_ids_ST: torch.Tensor, sites: Sequence[str], batch_size: int = 32,
                ) -> dict[str, torch.Tensor]:
    """Activations [S*T, D] of each site over all sequences, in token order.

    Each batch's activations are copied straight into one preallocated buffer per site (no list of
    parts to concatenate), so capture costs little beyond the forward pass.
    """
    device = next(model.parameters()).device
    S, T = token_ids_ST.shape
    out: dict[str, torch.Tensor] = {}
    for i in range(0, S, batch_size):
        got = capture(model, token_ids_ST[i:i + batch_size].to(device), sites)
        for s in sites:
            flat = got[s].flatten(2) if got[s].dim() == 4 else got[s]  # hook_z [B,T,H,d] -> [B,T,H*d]
            if s not in out:
                out[s] = torch.empty(S * T, flat.shape[-1], dtype=torch.float32)
            out[s][i * T:(i * T + flat.shape[0] * T)].copy_(flat.reshape(-1, flat.shape[-1]))
    for s, a in out.items():
        if not torch.isfinite(a).all():
            raise StoreError(f"site {s}: the model produced NaN or inf activations")
    return out

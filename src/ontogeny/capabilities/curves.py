"""Capability curves: every configured probe at every checkpoint of a series, on the same prompts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ontogeny.capabilities.config import CapabilityConfig
from ontogeny.capabilities.probes import PROBES, ProbeContext, ProbeUnavailable, token_pool


def checkpoint_metrics(model, tokenizer, cfg: CapabilityConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """Every configured probe's metrics for one model, and {probe: reason} for the probes that could not
    run. The generator is seeded once per checkpoint and probes run in config order, so every checkpoint
    sees the same prompts."""
    pool = (torch.tensor(cfg.token_pool) if cfg.token_pool
            else token_pool(tokenizer, cfg.vocab_limit, int(model.config.vocab_size)))
    ctx = ProbeContext(model, tokenizer, cfg, torch.Generator().manual_seed(cfg.seed), pool)
    out: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in cfg.probes:
        try:
            out.update(PROBES[name].fn(ctx))
        except ProbeUnavailable as e:
            skipped[name] = str(e)
    return out, skipped


def capability_curves(
    series, cfg: CapabilityConfig, on_step: Callable[[int], None] | None = None
) -> tuple[list[dict], list[dict], dict[str, str]]:
    """Over a `CheckpointSeries`: metric rows `[{step, metric...}]`, per-head rows
    `[{step, layer, head, <score>...}]` from every `*_LH` value, and the probes skipped (with why)."""
    rows, heads, skipped = [], [], {}
    for step in series.steps:
        m, skip = checkpoint_metrics(series.model(step), series.tokenizer, cfg)
        skipped.update(skip)
        per_head: dict[tuple[int, int], dict[str, Any]] = {}
        for key in [k for k in m if k.endswith("_LH")]:
            for layer, hs in enumerate(m.pop(key)):
                for h, v in enumerate(hs):
                    per_head.setdefault((layer, h), {"step": step, "layer": layer, "head": h})[key[:-3]] = v
        heads += list(per_head.values())
        rows.append({"step": step, **m})
        if on_step is not None:
            on_step(step)
    return rows, heads, skipped

"""Components of a GPT-NeoX model as parameter masks (heads, layers), and each head's induction score.

Restriction strings follow devinterp's weight restrictions: `full`, `l{L}h{H}` (one attention head:
its q, k, v rows of `attention.query_key_value`, whose output dim is laid out [H, 3, d_head], plus its
columns of `attention.dense`; the dense bias is shared and left out), `l{L}attn` (a layer's attention),
`l{L}` (a whole layer); a `+`-joined list is the union.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ontogeny.errors import ConfigError

Masks = dict[str, torch.Tensor | None]
_HEAD_RE = re.compile(r"^l(\d+)h(\d+)$")
_ATTN_RE = re.compile(r"^l(\d+)\s*attn$")
_LAYER_RE = re.compile(r"^l(\d+)$")


def _prefix(model: nn.Module) -> str:
    names = dict(model.named_parameters())
    if any(k.startswith("gpt_neox.layers.") for k in names):
        return "gpt_neox.layers"
    if any(k.startswith("layers.") for k in names):
        return "layers"
    raise ConfigError(f"{type(model).__name__} is not a GPT-NeoX model: no 'gpt_neox.layers.*' parameters")


def head_names(model: nn.Module) -> list[str]:
    """Every attention head as `l{L}h{H}`, layer-major."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    return [f"l{layer}h{h}" for layer in range(n_layers) for h in range(n_heads)]


def head_masks(model: nn.Module, layer: int, head: int) -> Masks:
    """Boolean masks selecting one head's q/k/v rows (and biases) and its columns of the output projection."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ConfigError(f"head l{layer}h{head} does not exist (model has {n_layers} layers × {n_heads} heads)")
    params = dict(model.named_parameters())
    base = f"{_prefix(model)}.{layer}.attention"
    d_head = model.config.hidden_size // n_heads
    out: Masks = {}
    qkv_w = params[f"{base}.query_key_value.weight"]
    rows = slice(head * 3 * d_head, (head + 1) * 3 * d_head)
    m = torch.zeros_like(qkv_w, dtype=torch.bool)
    m[rows] = True
    out[f"{base}.query_key_value.weight"] = m
    if f"{base}.query_key_value.bias" in params:
        mb = torch.zeros_like(params[f"{base}.query_key_value.bias"], dtype=torch.bool)
        mb[rows] = True
        out[f"{base}.query_key_value.bias"] = mb
    dense_w = params[f"{base}.dense.weight"]
    md = torch.zeros_like(dense_w, dtype=torch.bool)
    md[:, head * d_head:(head + 1) * d_head] = True
    out[f"{base}.dense.weight"] = md
    return out


def component_masks(model: nn.Module, spec: str) -> Masks | None:
    """Masks for a restriction string (see module docstring); None means every parameter (`full`)."""
    spec = spec.strip()
    if spec == "full":
        return None
    params = dict(model.named_parameters())
    out: Masks = {}
    for part in spec.split("+"):
        part = part.strip()
        if m := _HEAD_RE.match(part):
            new = head_masks(model, int(m.group(1)), int(m.group(2)))
        elif m := (_ATTN_RE.match(part) or _LAYER_RE.match(part)):
            layer = int(m.group(1))
            if layer >= model.config.num_hidden_layers:
                raise ConfigError(f"component {part!r}: model has {model.config.num_hidden_layers} layers")
            key = f"{_prefix(model)}.{layer}." + ("attention." if "attn" in part else "")
            new = {k: torch.ones_like(v, dtype=torch.bool) for k, v in params.items() if k.startswith(key)}
        else:
            raise ConfigError(f"unknown component {part!r}: expected full, l<L>h<H>, l<L>attn or l<L>")
        for k, v in new.items():
            out[k] = v if k not in out else (out[k] | v)
    return out


def n_selected(model: nn.Module, masks: Masks | None) -> int:
    """Number of parameters a restriction samples."""
    params = dict(model.named_parameters())
    if masks is None:
        return sum(p.numel() for p in params.values())
    return int(sum(params[k].numel() if m is None else int(m.sum()) for k, m in masks.items()))


def special_token_ids(model: nn.Module, tokenizer=None) -> set[int]:
    """Ids of special tokens (PAD, BOS, EOS, UNK, …): the model config's and, if given, the tokenizer's."""
    ids = {getattr(model.config, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    if tokenizer is not None:
        ids |= set(getattr(tokenizer, "all_special_ids", []) or [])
    return {int(i) for i in ids if isinstance(i, int) and i >= 0}


def probe_pool(model: nn.Module, tokenizer=None, vocab_low: int = 0) -> torch.Tensor:
    """Every token id in [vocab_low, vocab) except the special tokens: the full-vocabulary probe pool."""
    special = special_token_ids(model, tokenizer)
    return torch.tensor([i for i in range(vocab_low, model.config.vocab_size) if i not in special])


@torch.no_grad()
def induction_scores(model: nn.Module, n_seqs: int = 32, half_len: int = 24, seed: int = 0,
                     vocab_low: int = 0, pool: torch.Tensor | None = None, tokenizer=None) -> torch.Tensor:
    """Induction score per head [layers, heads]: on [r, r] with r random tokens, the mean attention from
    each query in the second copy to the token right after that query's earlier occurrence (Olsson et al. 2022).
    `pool` restricts r to those token ids (e.g. the sub-vocabulary a small model learnt to copy); by default
    the whole vocabulary without special tokens (PAD, BOS, EOS of the config and of `tokenizer`).
    """
    from ontogeny.series.sites import capture

    n_layers, vocab = model.config.num_hidden_layers, model.config.vocab_size
    max_pos = getattr(model.config, "max_position_embeddings", 2 * half_len)
    if 2 * half_len > max_pos:
        raise ConfigError(f"half_len {half_len}: sequences of {2 * half_len} tokens exceed the context {max_pos}")
    gen = torch.Generator().manual_seed(seed)
    if pool is None:
        pool = probe_pool(model, tokenizer, vocab_low)
    if len(pool) == 0:
        raise ConfigError("the induction probe pool is empty (every id is a special token)")
    r_BP = pool[torch.randint(0, len(pool), (n_seqs, half_len), generator=gen)]
    ids_BT = torch.cat([r_BP, r_BP], dim=1)
    sites = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    pats = capture(model, ids_BT, sites, stop_early=False)
    return torch.stack([induction_score_from_pattern(pats[s], half_len) for s in sites])


def induction_score_from_pattern(pattern_BHTT: torch.Tensor, half_len: int) -> torch.Tensor:
    """Per-head mean attention from query half_len+i to key i+1 (i = 0 … half_len−2) on a [r, r] input."""
    if pattern_BHTT.shape[-1] != 2 * half_len:
        raise ConfigError(f"pattern has {pattern_BHTT.shape[-1]} positions, expected 2·half_len = {2 * half_len}")
    q = torch.arange(half_len, 2 * half_len - 1)  # queries in the second copy
    k = q - half_len + 1  # the token right after the query token's earlier occurrence
    return pattern_BHTT[:, :, q, k].float().mean(dim=(0, 2))

"""Next-token losses of a causal LM as functions of its parameters, for vmapped SGLD.

`torch.func.functional_call` runs the HF model with a parameter dict; attention is switched to the
eager path while sampling because SDPA has no vmap batching rule on CPU (it would fall back to a loop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call

from ontogeny.slt.sgld import BatchFn, LossFn, ObservableFn, Params, SGLDConfig, shuffled_batches


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Use the eager attention implementation within the block (vmap-friendly)."""
    cfg = model.config
    old = getattr(cfg, "_attn_implementation", None)
    cfg._attn_implementation = "eager"
    try:
        yield
    finally:
        cfg._attn_implementation = old


def token_losses(model: nn.Module, params: Params, ids_BT: torch.Tensor) -> torch.Tensor:
    """Per-token next-token loss −log p(x_{t+1} | x_{≤t}, w), shape [B, T−1] (devinterp's lm_cross_entropy_loss)."""
    logits_BTV = functional_call(model, params, (ids_BT,), kwargs={"use_cache": False}).logits
    logp_BTV = torch.log_softmax(logits_BTV[:, :-1].float(), dim=-1)
    return -logp_BTV.gather(-1, ids_BT[:, 1:, None])[..., 0]


def lm_loss_fn(model: nn.Module) -> LossFn:
    """LossFn for SGLD: mean next-token loss of a batch of token ids [B, T]."""
    return lambda params, ids_BT: token_losses(model, params, ids_BT).mean()


def token_loss_observable(model: nn.Module, ids_NT: torch.Tensor, chunk: int = 16) -> ObservableFn:
    """Observable: per-token losses [N, T−1] on a fixed token set (the same ids at every draw)."""
    def obs(params: Params) -> torch.Tensor:
        return torch.cat([token_losses(model, params, ids_NT[i:i + chunk]) for i in range(0, len(ids_NT), chunk)])
    return obs


def model_params(model: nn.Module) -> Params:
    """Detached parameter dict of a model (w*)."""
    return {k: v.detach() for k, v in model.named_parameters()}


def lm_batches(ids_NT: torch.Tensor, cfg: SGLDConfig) -> BatchFn:
    """The SGLD minibatch stream over token sequences; its n (of nβ = n/ln n) is the number of predicted
    tokens, N·(T − 1), because the loss is a per-token mean."""
    return shuffled_batches(ids_NT, cfg.batch_size, cfg.seed, n_samples=ids_NT.shape[0] * (ids_NT.shape[1] - 1))

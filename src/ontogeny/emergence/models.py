"""Tiny sequence models for the emergence lab: a pre-LN transformer and a causally masked MLP-Mixer.

Both return logits and, on request, each layer's token-mixing pattern ([B, H, T, T] attention
probabilities for the transformer; the row-normalised |W_tok| of each layer for the mixer), so
alignment to the true pattern can be tracked over training. The transformer takes an optional
additive attention bias c * parents[q, k] on the logits: the intervention of seed 004, App. B.3
(its form and size are not published; c * mask is a PROPOSAL, `bias_strength` = c).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class ModelConfig(BaseModel):
    """Architecture of one run. Attention width is n_heads * d_head, independent of d_model, so the
    heads-vs-head-dim study (seed 004, section 4.2) varies them separately."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: Literal["transformer", "mixer"] = "transformer"
    n_layers: int = Field(1, ge=1)
    n_heads: int = Field(4, ge=1, description="attention heads (transformer only)")
    d_head: int = Field(8, ge=1, description="dimension per head (transformer only)")
    d_model: int = Field(32, ge=2)
    d_mlp: int | None = Field(None, description="MLP width (default 4 * d_model); 0 = attention-only")
    bias_strength: float = Field(0.0, ge=0.0, description="c of the attention bias c*[k is a true parent]")


class Attention(nn.Module):
    """Causal multi-head attention written out, so patterns and biases are explicit."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.H, self.dh = cfg.n_heads, cfg.d_head
        self.qkv = nn.Linear(cfg.d_model, 3 * self.H * self.dh, bias=False)
        self.out = nn.Linear(self.H * self.dh, cfg.d_model, bias=False)

    def forward(
        self, x_BTD: torch.Tensor, bias_BTT: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        T = x_BTD.shape[1]
        q, k, v = rearrange(self.qkv(x_BTD), "b t (n h d) -> n b h t d", n=3, h=self.H)
        scores_BHTT = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(self.dh)
        if bias_BTT is not None:
            scores_BHTT = scores_BHTT + bias_BTT[:, None]
        causal = torch.ones(T, T, dtype=torch.bool, device=x_BTD.device).tril()
        pattern_BHTT = scores_BHTT.masked_fill(~causal, float("-inf")).softmax(-1)
        z = torch.einsum("bhqk,bhkd->bqhd", pattern_BHTT, v)
        return self.out(z.flatten(2)), pattern_BHTT


class TokenMixer(nn.Module):
    """A static learned [T, T] matrix, lower-triangular-masked (causal), mixing positions:
    h <- W_tok h (MLP-Mixer token mixing; causal mask as proposed in the seed-004 spec, section 2.4)."""

    def __init__(self, cfg: ModelConfig, seq_len: int):
        super().__init__()
        tril = torch.ones(seq_len, seq_len).tril()
        self.register_buffer("mask_TT", tril)
        # start as a uniform causal average plus noise (the analogue of near-uniform initial attention)
        self.W_TT = nn.Parameter(tril / tril.sum(1, keepdim=True) + 0.02 * torch.randn(seq_len, seq_len))

    def forward(
        self, x_BTD: torch.Tensor, bias_BTT: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        T = x_BTD.shape[1]
        W = (self.W_TT * self.mask_TT)[:T, :T]
        absW = W.abs()
        pattern_1HTT = (absW / absW.sum(-1, keepdim=True).clamp_min(1e-12))[None, None]
        return torch.einsum("qk,bkd->bqd", W, x_BTD), pattern_1HTT


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, seq_len: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.mix = Attention(cfg) if cfg.arch == "transformer" else TokenMixer(cfg, seq_len)
        d_mlp = 4 * cfg.d_model if cfg.d_mlp is None else cfg.d_mlp
        self.mlp = None
        if d_mlp > 0:
            self.ln2 = nn.LayerNorm(cfg.d_model)
            self.mlp = nn.Sequential(nn.Linear(cfg.d_model, d_mlp), nn.GELU(), nn.Linear(d_mlp, cfg.d_model))

    def forward(self, x, bias):
        h, pattern = self.mix(self.ln1(x), bias)
        x = x + h
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x))
        return x, pattern


class SeqModel(nn.Module):
    """Token + learned absolute position embeddings, pre-LN blocks, final LN, untied unembedding."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(seq_len, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg, seq_len) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, vocab_size)

    def forward(
        self, ids_BT: torch.Tensor, parents_BTT: torch.Tensor | None = None, return_patterns: bool = False
    ):
        """Logits [B, T, V]; with `return_patterns`, also one [B|1, H, T, T] pattern per layer."""
        T = ids_BT.shape[1]
        x = self.embed(ids_BT) + self.pos[:T]
        bias = None
        if self.cfg.bias_strength > 0 and parents_BTT is not None and self.cfg.arch == "transformer":
            bias = self.cfg.bias_strength * parents_BTT.float()
        patterns = []
        for blk in self.blocks:
            x, p = blk(x, bias)
            patterns.append(p)
        logits = self.unembed(self.ln_f(x))
        return (logits, patterns) if return_patterns else logits


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int, seed: int) -> SeqModel:
    """A freshly initialised model, deterministic given `seed`."""
    g_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return SeqModel(cfg, vocab_size, seq_len)
    finally:
        torch.random.set_rng_state(g_state)


def per_position_nll(logits_BTV: torch.Tensor, ids_BT: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy at each prediction position: [B, T-1] (position t predicts ids[t+1])."""
    return F.cross_entropy(logits_BTV[:, :-1].transpose(1, 2), ids_BT[:, 1:], reduction="none")

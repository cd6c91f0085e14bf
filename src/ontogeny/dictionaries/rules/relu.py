"""`relu`: a = ReLU(pre) with the decoder-norm-weighted L1 penalty sum_i a_i ||d_i|| (Anthropic, April
2024 update); decoder rows are free, so the loss does not change when d_i is scaled by c and a_i by 1/c.
SAELens architecture "standard"."""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field

from ontogeny.dictionaries.rules.base import Rule
from ontogeny.dictionaries.sparse import gather


class ReLUParams(BaseModel):
    l1_coefficient: float = Field(5.0, ge=0, description="relu: weight of sum_i |a_i| * ||d_i||")


class ReLURule(Rule):
    """`a = ReLU(pre)`, penalty `l1_coefficient * sum_i a_i ||d_i||` per token."""

    name = "relu"
    params = (ReLUParams,)
    default_decoder_norm = "free"
    penalty_uses_decoder_norm = True
    density_dependent = True
    saelens_architecture = "standard"
    saelens_reads = ("standard",)

    def coefficient(self) -> float:
        return self.cfg.l1_coefficient

    def penalty(self, codes_N, pre_N, cols_N, dec_norm_F, n_rows):
        w = dec_norm_F if cols_N is None else gather(dec_norm_F, cols_N)
        return (codes_N.abs() * w).sum() / n_rows

    def dense_codes_and_penalty(self, pre_BF, dec_norm_F, n_rows):
        # codes >= 0, so sum_b,i |a_bi| ||d_i|| = (sum_b a_b) . ||d||: one reduction, and a broadcast
        # (not three [B, F] products) in the backward
        codes_BF = torch.relu(pre_BF)
        return codes_BF, codes_BF.sum(0) @ dec_norm_F / n_rows

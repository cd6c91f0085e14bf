"""`topk`: a = TopK_k(ReLU(pre)) per token (Gao et al. 2024, arXiv 2406.04093); dead latents get aux-k.
SAELens architecture "topk" with its `k`."""

from __future__ import annotations

from typing import Any

import torch

from ontogeny.dictionaries.rules.base import Rule
from ontogeny.dictionaries.rules.params import AuxKParams, KParams
from ontogeny.dictionaries.sparse import row_topk_indices
from ontogeny.errors import ConfigError


class TopKRule(Rule):
    """Keep each token's k largest positive pre-activations."""

    name = "topk"
    params = (KParams, AuxKParams)
    uses_aux_k = True
    ranks_latents = True
    saelens_architecture = "topk"
    saelens_reads = ("topk",)

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.k > cfg.d_sae:
            raise ConfigError(f"k={cfg.k} exceeds d_sae={cfg.d_sae}")

    def forward(self, pre_BF):
        vals, idx = torch.relu(pre_BF).topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre_BF).scatter(-1, idx, vals)

    def select(self, pre_BF):
        # top-k of pre equals top-k of ReLU(pre) wherever it matters: a negative pick gets code 0.
        return row_topk_indices(pre_BF, self.cfg.k)

    def saelens_fields(self) -> dict[str, Any]:
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}

    @classmethod
    def config_from_saelens(cls, raw: dict[str, Any], known: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"k": int(raw["k"])} if "k" in raw else {}

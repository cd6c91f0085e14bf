"""Typed configuration of a sparse dictionary: its activation rule, sizes and sparsity coefficients.

Defaults follow shared/research/seeds-susceptibility-atm.md §6 (Gao et al. 2406.04093 for TopK,
Bussmann et al. 2412.06410 for BatchTopK, Rajamanoharan et al. 2407.14435 / SAELens for JumpReLU,
Anthropic's April-2024 update for decoder-norm-weighted L1).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ontogeny.errors import ConfigError

RuleName = Literal["relu", "topk", "batchtopk", "jumprelu"]


class DictionaryConfig(BaseModel):
    """One dictionary: `codes = rule(pre)`, `pre = (x - b_dec) W_enc + b_enc`, `x_hat = codes W_dec + b_dec`."""

    model_config = ConfigDict(extra="forbid")

    rule: RuleName = Field("topk", description="activation rule applied to the pre-activations [B, F]")
    d_in: int = Field(..., gt=0, description="input width D")
    d_sae: int = Field(..., gt=0, description="number of latents F")
    k: int = Field(32, gt=0, description="active latents per token (topk) or on average (batchtopk)")
    l1_coefficient: float = Field(5.0, ge=0, description="relu: weight of sum_i |a_i| * ||d_i||")
    l0_coefficient: float = Field(1.0, ge=0, description="jumprelu: weight of the (straight-through) L0")
    jumprelu_bandwidth: float = Field(0.001, gt=0, description="jumprelu: STE rectangle-kernel width epsilon")
    jumprelu_init_threshold: float = Field(0.001, gt=0, description="jumprelu: initial threshold theta")
    k_aux: int | None = Field(None, gt=0, description="topk/batchtopk: dead latents in the aux-k loss "
                                                       "(None: d_in // 2, as dictionary_learning)")
    aux_coefficient: float = Field(1 / 32, ge=0, description="topk/batchtopk: weight alpha of the aux-k loss")
    threshold_beta: float = Field(0.999, ge=0, lt=1, description="batchtopk: EMA decay of the inference threshold")
    threshold_start_step: int = Field(1000, ge=0, description="batchtopk: step from which the EMA is updated")
    decoder_norm: Literal["unit", "free"] | None = Field(
        None, description="unit: rows of W_dec kept at norm 1 (gradient parallel to a row removed, rows "
                          "renormalised after each step); free: unconstrained, the penalty is weighted by "
                          "||d_i||. None: free for relu, unit otherwise")
    apply_b_dec_to_input: bool = Field(True, description="subtract b_dec from x before encoding (SAELens)")
    fast: bool = Field(True, description="training uses the sparse fused encoder/decoder (False: the plain "
                                         "dense reference)")
    sparse_below: float = Field(0.05, ge=0, le=1, description="relu/jumprelu fast path: use the sparse kernels "
                                "while the share of non-zero codes is below this, else dense matmuls")

    @model_validator(mode="after")
    def _check(self) -> DictionaryConfig:
        if self.rule in ("topk", "batchtopk") and self.k > self.d_sae:
            raise ConfigError(f"k={self.k} exceeds d_sae={self.d_sae}")
        return self

    @property
    def unit_decoder(self) -> bool:
        """Whether decoder rows are held at unit norm (see `decoder_norm`)."""
        if self.decoder_norm is None:
            return self.rule != "relu"
        return self.decoder_norm == "unit"

    @property
    def aux_k(self) -> int:
        return self.k_aux if self.k_aux is not None else max(1, self.d_in // 2)

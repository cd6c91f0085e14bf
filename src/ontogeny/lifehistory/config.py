"""Typed settings of a life-history analysis; every threshold of the PROPOSED spec is a field here.

Defaults follow shared/research/seeds-lifehistory-crosscoding.md §1.3 (a reconstruction of Stecher et
al. 2026, arXiv 2605.18789, whose full text is not public) and the RDT code it draws on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ontogeny.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchConfig(_Strict):
    """Matching adjacent checkpoints: activation-correlation classes (RDT) and decoder-cosine classes."""

    fire_eps: float = Field(1e-6, ge=0, description="a feature fires on a token when |a| > fire_eps")
    alive_frac: float = Field(0.01, ge=0, le=1, description="alive: fires on at least this share of tokens")
    stable_r: float = Field(0.5, description="Hungarian pair with Pearson r >= stable_r is stable")
    transformed_r: float = Field(0.2, description="stable_r > r >= transformed_r is transformed; below: died")
    split_r: float = Field(0.3, description="extra partner with r >= split_r makes a split or a merge (PROPOSAL)")
    stable_cos: float = Field(0.7, description="decoder cosine >= stable_cos: same direction (Paulo & Belrose)")
    died_cos: float = Field(0.3, description="decoder cosine < died_cos: direction lost")
    n_null: int = Field(20, ge=0, description="token permutations in the matching null (0 = skip)")

    @model_validator(mode="after")
    def _ordered(self) -> MatchConfig:
        if not (0 <= self.transformed_r <= self.stable_r <= 1):
            raise ConfigError(f"need 0 <= transformed_r ({self.transformed_r}) <= stable_r ({self.stable_r}) <= 1")
        if not (self.transformed_r <= self.split_r <= 1):
            raise ConfigError(f"need transformed_r ({self.transformed_r}) <= split_r ({self.split_r}) <= 1")
        if not (0 <= self.died_cos <= self.stable_cos <= 1):
            raise ConfigError(f"need 0 <= died_cos ({self.died_cos}) <= stable_cos ({self.stable_cos}) <= 1")
        return self


class PhaseConfig(_Strict):
    """Where the early phase ends: steps <= early_frac * total_steps (the paper's first 1%)."""

    early_frac: float = Field(0.01, gt=0, le=1, description="early phase = first early_frac of training")
    total_steps: int | None = Field(None, gt=0, description="length of training; None = last checkpoint step")


class ScaffoldConfig(_Strict):
    """Carriers and the co-activation hierarchy (PROPOSAL A6/A8)."""

    n_carriers: int = Field(50, ge=1, description="carriers kept, across all sites (top by reach)")
    tau_in: float = Field(0.9, gt=0, le=1, description="edge p->c needs P(p fires | c fires) >= tau_in")
    tau_out: float = Field(0.5, ge=0, le=1, description="and P(c fires | p fires) <= tau_out (p more general)")
    min_cofire: int = Field(5, ge=1, description="and at least this many tokens where both fire")
    min_reach: int = Field(1, ge=0, description="a carrier organises at least this many descendants")
    rank_by: Literal["reach", "out_degree"] = "reach"


class AblationConfig(_Strict):
    """Joint cross-layer ablation of carriers against count- and frequency-matched controls (A7)."""

    n_controls: int = Field(100, ge=1, description="random count-matched populations")
    n_freq_bins: int = Field(10, ge=1, description="firing-frequency quantile bins for matching")
    mode: Literal["zero", "mean"] = "zero"
    batch_size: int = Field(16, ge=1, description="sequences per forward pass")
    n_single: int = Field(50, ge=0, description="non-carrier features given single-feature ablation")


class PredictConfig(_Strict):
    """Predicting carriers from onset firing statistics (A9, the least certain part of the spec)."""

    onset_checkpoints: int = Field(2, ge=1, description="first checkpoints of a lineage used for features")
    n_folds: int = Field(5, ge=2)
    neg_per_pos: int = Field(1, ge=1, description="non-carriers sampled per carrier")
    n_permutations: int = Field(100, ge=0, description="label permutations for the null accuracy")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic regression")


class LifeHistoryConfig(_Strict):
    """All settings of `ontogeny lifehistory`."""

    match: MatchConfig = MatchConfig()
    phase: PhaseConfig = PhaseConfig()
    scaffold: ScaffoldConfig = ScaffoldConfig()
    ablation: AblationConfig = AblationConfig()
    predict: PredictConfig = PredictConfig()
    seed: int = 0

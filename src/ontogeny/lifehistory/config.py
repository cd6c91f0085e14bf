"""Typed settings of a life-history analysis; every threshold of the PROPOSED spec is a field here.

Defaults follow shared/research/seeds-lifehistory-crosscoding.md §1.3 (a reconstruction of Stecher et
al. 2026, arXiv 2605.18789, whose full text is not public) and the RDT code it draws on. Each knob is
defined once, here; the study config and the CLI embed these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ontogeny.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchConfig(_Strict):
    """Matching adjacent checkpoints: activation-correlation classes (RDT), splits and merges, directions."""

    fire_eps: float = Field(1e-6, ge=0, description="a feature fires on a token when |a| > fire_eps")
    alive_frac: float = Field(0.01, ge=0, le=1, description="alive: fires on at least this share of tokens")
    stable_r: float = Field(0.5, description="Hungarian pair with Pearson r >= stable_r is stable")
    transformed_r: float = Field(0.2, description="stable_r > r >= transformed_r is transformed; below: died")
    split_overlap: float = Field(0.5, ge=0, le=1, description="split/merge (PROPOSAL): share of the child's "
                                 "firings (merge: of the absorbed feature's) that fall where the parent fires")
    split_cos: float = Field(0.5, ge=-1, le=1, description="split/merge (PROPOSAL): decoder cosine of the child "
                             "(merge: the absorbed feature) with the parent is at least this")
    stable_cos: float = Field(0.7, description="decoder cosine >= stable_cos: same direction (Paulo & Belrose)")
    died_cos: float = Field(0.3, description="decoder cosine < died_cos: direction lost")
    n_null: int = Field(20, ge=0, description="token permutations in the matching null (0 = skip)")

    @model_validator(mode="after")
    def _ordered(self) -> MatchConfig:
        if not (0 <= self.transformed_r <= self.stable_r <= 1):
            raise ConfigError(f"need 0 <= transformed_r ({self.transformed_r}) <= stable_r ({self.stable_r}) <= 1")
        if not (0 <= self.died_cos <= self.stable_cos <= 1):
            raise ConfigError(f"need 0 <= died_cos ({self.died_cos}) <= stable_cos ({self.stable_cos}) <= 1")
        return self


class PhaseConfig(_Strict):
    """The early window of training, in steps, and which of its two placements is the headline."""

    early_frac: float = Field(0.01, gt=0, le=1, description="early window length = early_frac x total steps "
                              "(the paper's first 1%), unless early_steps is set")
    early_steps: int | None = Field(None, gt=0, description="early window length in training steps (overrides "
                                    "early_frac)")
    total_steps: int | None = Field(None, gt=0, description="length of training; None = last checkpoint step")
    warmup_steps: int | None = Field(None, ge=0, description="learning-rate warm-up of the series; the "
                                     "after-warm-up window starts here. None = the series' own warm-up where "
                                     "the study knows it (the embedded series: its `warmup`), else 0")
    headline: Literal["after_warmup", "from_start"] = Field(
        "after_warmup", description="which early window the headline turnover ratio uses (both are reported)")


class ScaffoldConfig(_Strict):
    """The organising hierarchy, carriers and recruitment (PROPOSAL A6/A8)."""

    tau_in: float = Field(0.7, gt=0, le=1, description="edge p->c needs P(p active near c | c active) >= tau_in")
    tau_out: float = Field(0.5, ge=0, le=1, description="and P(c active near p | p active) <= tau_out "
                           "(p is the more general feature)")
    min_cofire: int = Field(5, ge=1, description="and at least this many tokens where both are active")
    active_threshold: float = Field(0.0, ge=0, lt=1, description="for the hierarchy a feature is active on a "
                                    "token when its code exceeds this fraction of its largest code (0 = fires)")
    window: int = Field(1, ge=0, description="cross-layer edges look for the parent within +-window tokens of "
                        "the child (same sequence); same-site edges use the same token")
    min_reach: int = Field(1, ge=0, description="a carrier organises at least this many descendants")
    rank_by: Literal["reach", "out_degree"] = Field("reach", description="how persistent lineages are ranked")
    selection: Literal["knee", "fixed"] = Field(
        "knee", description="carriers: the ranked lineages up to the knee of the reach curve, or the top n_carriers")
    n_carriers: int = Field(50, ge=1, description="carriers kept with selection='fixed'; the most the knee keeps")
    n_null: int = Field(200, ge=0, description="random sets of persistent lineages in the recruitment null")
    sensitivity_tau_in: tuple[float, ...] = Field((0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
                                                  description="tau_in values of the hierarchy sensitivity table")
    sensitivity_active: tuple[float, ...] = Field((0.0, 0.1, 0.25, 0.5),
                                                  description="active_threshold values of the sensitivity table")


class AblationConfig(_Strict):
    """Joint cross-layer ablation of carriers against count- and frequency-matched controls (A7)."""

    n_controls: int = Field(100, ge=1, description="random count-matched populations")
    n_freq_bins: int = Field(10, ge=1, description="firing-frequency quantile bins for matching")
    mode: Literal["zero", "mean"] = Field("zero", description="zero- or mean-ablation of the codes")
    batch_size: int = Field(16, ge=1, description="sequences per forward pass")
    n_single: int = Field(50, ge=0, description="non-carrier features given single-feature ablation")


ONSET_FEATURES = ("firing_frac", "mean_act", "max_act", "token_entropy", "special_frac")
EXTRA_FEATURES = ("onset_degree", "layer", "log_onset_step", "first_r")


class PredictConfig(_Strict):
    """Predicting carriers from onset firing statistics (A9, the least certain part of the spec)."""

    onset_checkpoints: int = Field(2, ge=1, description="first checkpoints of a lineage used for features")
    features: tuple[str, ...] = Field(ONSET_FEATURES, description="statistics used; default onset firing only. "
                                      f"Also available: {', '.join(EXTRA_FEATURES)} (first_r is transition-"
                                      "derived and overlaps the carrier label)")
    n_folds: int = Field(5, ge=2, description="stratified cross-validation folds")
    neg_per_pos: int = Field(1, ge=1, description="non-carriers sampled per carrier")
    n_permutations: int = Field(100, ge=0, description="label permutations for the null accuracy and AUC")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic regression")

    @model_validator(mode="after")
    def _known(self) -> PredictConfig:
        bad = [f for f in self.features if f not in ONSET_FEATURES + EXTRA_FEATURES]
        if bad or not self.features:
            raise ConfigError(f"predict.features: unknown {bad or 'empty list'}; choose from "
                              f"{list(ONSET_FEATURES + EXTRA_FEATURES)}")
        return self


class PrecedenceConfig(_Strict):
    """Function precedes direction (PROPOSAL A4): when a lineage first resembles its final descendant."""

    function_r: float = Field(0.5, ge=-1, le=1, description="function reached: activation r to the final "
                              "descendant >= function_r")
    direction_cos: float = Field(0.7, ge=-1, le=1, description="direction reached: decoder cosine to the final "
                                 "descendant >= direction_cos")


class LifeHistoryConfig(_Strict):
    """All settings of `ontogeny lifehistory`."""

    match: MatchConfig = Field(default_factory=MatchConfig, description="matching adjacent checkpoints")
    phase: PhaseConfig = Field(default_factory=PhaseConfig, description="the early window")
    scaffold: ScaffoldConfig = Field(default_factory=ScaffoldConfig, description="hierarchy, carriers, recruitment")
    ablation: AblationConfig = Field(default_factory=AblationConfig, description="joint cross-layer ablation")
    predict: PredictConfig = Field(default_factory=PredictConfig, description="carrier prediction")
    precedence: PrecedenceConfig = Field(default_factory=PrecedenceConfig, description="function vs direction")
    seed: int = Field(0, description="seed of nulls, controls, negatives and folds")

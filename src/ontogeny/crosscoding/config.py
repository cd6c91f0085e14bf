"""Typed configuration of one `crosscode` study: checkpoints, site, crosscoder, training, tasks, thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ontogeny.causal.attribution import IGConfig
from ontogeny.causal.tasks import TASKS
from ontogeny.crosscoding.presence import DEFAULT_TAUS
from ontogeny.dictionaries.config import RuleName
from ontogeny.errors import ConfigError


class CrosscodeConfig(BaseModel):
    """Everything `run_crosscode` needs besides the activation store and the series."""

    model_config = ConfigDict(extra="forbid")

    steps: list[int] = Field(..., min_length=2, description="checkpoints stacked into the crosscoder, in order")
    site: str = Field("blocks.1.hook_resid_pre", description="hook site (the authors read resid_pre)")
    d_sae: int = Field(512, gt=0, description="number of shared latents F")
    rule: RuleName = Field("relu", description="activation rule from the dictionary registry: relu (+L1, the "
                           "paper's), batchtopk, or any other registered rule (its other fields at their defaults)")
    l1_coefficient: float = Field(2.0, ge=0, description="relu: lambda of the decoder-norm-weighted L1")
    l1_reference_width: int | None = Field(2048, gt=0, description="relu: the width lambda is meant at (the "
                                           "authors' d_model); the penalty is scaled by sqrt(d_in / this). "
                                           "None: lambda as given")
    k: int | Literal["auto"] = Field("auto", description="batchtopk: mean active latents per token, or 'auto': "
                                     "a descending search from k_max during training (a PROPOSAL)")
    k_max: int = Field(32, gt=0, description="batchtopk, k = auto: the first (largest) k of the search")
    k_search_phase_steps: int | None = Field(None, gt=1, description="k = auto: shortest search phase in steps "
                                             "(None: n_steps // 20)")
    k_search_rel_tol: float = Field(0.1, ge=0, description="k = auto: a smaller k is accepted while its FVU <= "
                                    "(1 + rel_tol) * best accepted FVU + abs_tol")
    k_search_abs_tol: float = Field(0.005, ge=0, description="k = auto: absolute FVU slack (see rel_tol)")
    k_search_plateau: float = Field(0.05, ge=0, lt=1, description="k = auto: a phase ends when its FVU improves "
                                    "by less than this (relative) from one window to the next")
    k_search_max_phases: int = Field(12, gt=0, description="k = auto: at most this many search phases")
    n_steps: int = Field(2000, gt=0, description="training steps")
    batch_size: int = Field(1024, gt=0, description="tokens per training batch (authors: 4096)")
    lr: float = Field(1e-3, gt=0, description="Adam lr (authors: 5e-5 over 400M tokens; small runs need more)")
    l1_warmup_frac: float = Field(0.05, ge=0, le=1, description="share of steps over which lambda ramps up")
    seed: int = Field(0, description="seed of the crosscoder init, batches and task pairs")
    tasks: list[str] = Field(list(TASKS), description=f"built-in minimal-pair tasks ({', '.join(TASKS)})")
    pairs_file: Path | None = Field(None, description="JSONL of the user's own minimal pairs (added as tasks)")
    n_pairs: int = Field(64, gt=0, description="pairs generated per built-in task")
    ig: IGConfig = Field(default_factory=IGConfig, description="integrated-gradient settings")
    low: float = Field(0.3, ge=0, le=1, description="paper classes of RelDec/RelIE: below is 'discontinued'")
    high: float = Field(0.7, ge=0, le=1, description="paper classes of RelDec/RelIE: above is 'emerging'")
    presence_tau: float = Field(0.3, gt=0, le=1, description="presence classes: checkpoint m counts when "
                                "norm_m / max norm >= tau (decoder norms, normalised space; |IE| likewise)")
    tau_grid: list[float] = Field(list(DEFAULT_TAUS), description="taus of the presence-class sensitivity table")
    duplicate_cos: float = Field(0.9, gt=0, le=1, description="sparsity diagnostic: decoder cos of duplicates")
    top_k: int = Field(10, gt=0, description="top-|IE| latents per checkpoint kept for ablation and reports")
    scaling_eps_threshold: float = Field(0.5, ge=0, description="latent scaling: nu_eps above flags shrinkage")
    scaling_rec_threshold: float = Field(0.5, ge=0, description="latent scaling: nu_rec above flags decoupling")
    n_contexts: int = Field(5, gt=0, description="top-activating contexts shown per feature")
    context_tokens: int = Field(12, gt=0, description="tokens of left context per example")
    features_per_class: int = Field(5, gt=0, description="features listed per RelDec class in the figure")
    ablate: bool = Field(True, description="run the zero-ablation validation")
    name: str = Field("", pattern=r"^[A-Za-z0-9_-]*$",
                      description="suffix that keeps variants (rule, width) over the same steps apart")

    @model_validator(mode="after")
    def _check(self) -> CrosscodeConfig:
        if isinstance(self.k, int) and self.k <= 0:
            raise ConfigError(f"k must be a positive integer or 'auto', got {self.k}")
        if self.low > self.high:
            raise ConfigError(f"low={self.low} must not exceed high={self.high}")
        if list(self.steps) != sorted(set(self.steps)):
            raise ConfigError(f"steps must be distinct and increasing, got {self.steps}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"unknown tasks {unknown}: choose from {TASKS}")
        if any(not 0 < t <= 1 for t in self.tau_grid):
            raise ConfigError(f"tau_grid values must be in (0, 1], got {self.tau_grid}")
        return self

    @property
    def tag(self) -> str:
        """What distinguishes this study's files in tables/ and figures/: `<site>.<step>-<step>-...`."""
        base = f"{self.site}.{'-'.join(map(str, self.steps))}"
        return f"{base}.{self.name}" if self.name else base

    @property
    def k_search_steps(self) -> int:
        """Shortest phase of the k search (0 when k is fixed or the rule has no k)."""
        if self.k != "auto":
            return 0
        return self.k_search_phase_steps or max(2, self.n_steps // 20)

    @property
    def names(self) -> list[str]:
        """Column tag of each checkpoint: s<step>."""
        return [f"s{s}" for s in self.steps]

"""The typed configuration of a study (TOML on disk); unknown keys are errors that name the key.

One section per concern; each embeds the config model of the part that does the work (SeriesConfig,
LifeHistoryConfig, CrosscodeConfig, SGLDConfig, ...), so a study file and a single command accept the same
fields with the same defaults.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ontogeny.dictionaries.atm import ATMConfig
from ontogeny.emergence.capabilities import CapabilityConfig
from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.series.train import SeriesConfig
from ontogeny.slt.sgld import SGLDConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeriesSection(_Section):
    """Where the checkpoints come from: the embedded series (trained here), a local folder or the Hub."""

    source: str = Field("embedded", description="'embedded', a local series folder, or a Hub repo id")
    revisions: list[str] | None = Field(None, description="Hub revisions, e.g. ['step1000', 'step2000']")
    steps: list[int] | None = Field(None, description="a subset of the checkpoints (default: all)")
    train: SeriesConfig = Field(default_factory=SeriesConfig, description="the embedded series' training")


class ActivationsSection(_Section):
    sites: list[str] = Field(["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
    n_seqs: int = Field(128, gt=0, description="sequences of the shared token set")
    ctx: int = Field(64, gt=1, description="tokens per sequence")
    batch_size: int = Field(32, gt=0)
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    seed: int = 0


class DictionariesSection(_Section):
    rule: Literal["relu", "topk", "batchtopk", "jumprelu"] = "topk"
    expansion: int = Field(4, gt=0, description="d_sae = expansion x site width")
    k: int = Field(16, gt=0)
    l1_coefficient: float = 5.0
    l0_coefficient: float = 1.0
    batch_size: int = Field(512, gt=0)
    epochs: int = Field(8, gt=0)
    lr: float | None = None
    atm: ATMConfig | None = None
    seed: int = 0


class LifeHistorySection(_Section):
    enabled: bool = True
    config: LifeHistoryConfig = Field(default_factory=LifeHistoryConfig)
    max_tokens: int | None = 16384
    ablate: bool = True
    ablation_seqs: int = 32


class CrosscoderSection(_Section):
    enabled: bool = True
    steps: list[int] | None = Field(None, description="checkpoints to stack (default: 3 spread over the series)")
    site: str | None = Field(None, description="site (default: the last cached site)")
    d_sae: int = 256
    rule: Literal["relu", "batchtopk"] = "relu"
    l1_coefficient: float = 2.0
    n_steps: int = 600
    batch_size: int = 512
    lr: float = 1e-3
    n_pairs: int = 32
    seed: int = 0


class LLCSection(_Section):
    enabled: bool = True
    steps: list[int] | None = Field(None, description="checkpoints (default: every `every`-th one, and the last)")
    every: int = Field(1, gt=0, description="without `steps`: take every n-th checkpoint (the last always)")
    sgld: SGLDConfig = Field(default_factory=lambda: SGLDConfig(num_draws=60, batch_size=16))

    def pick_steps(self, steps: list[int]) -> list[int]:
        """The checkpoints whose LLC is estimated."""
        if self.steps:
            return list(self.steps)
        return sorted(set(steps[:: self.every]) | {steps[-1]})
    n_seqs: int = 128
    ctx: int = 64


class SusceptibilitySection(_Section):
    enabled: bool = True
    step: int | None = Field(None, description="checkpoint (default: the last)")
    sgld: SGLDConfig = Field(default_factory=lambda: SGLDConfig(num_draws=40, batch_size=16))
    probe_kinds: list[str] = ["prose", "tests", "docstrings", "synthetic"]
    base_kind: str = "code"
    centring: Literal["devinterp", "covariance"] = "devinterp"
    n_probe_seqs: int = 8
    ctx: int = 64


class CapabilitiesSection(_Section):
    enabled: bool = True
    config: CapabilityConfig = Field(default_factory=CapabilityConfig)


class EmergenceSection(_Section):
    enabled: bool = False
    sweep: dict = Field(default_factory=dict, description="SweepConfig fields (ontogeny.emergence.sweep)")


class ComputeSection(_Section):
    backend: Literal["process", "ray"] = "process"
    address: str | None = None
    device: str = "cpu"


class StudyConfig(_Section):
    """A whole study: series -> activations -> dictionaries -> analyses -> report."""

    name: str = "study"
    series: SeriesSection = Field(default_factory=SeriesSection)
    activations: ActivationsSection = Field(default_factory=ActivationsSection)
    dictionaries: DictionariesSection = Field(default_factory=DictionariesSection)
    lifehistory: LifeHistorySection = Field(default_factory=LifeHistorySection)
    crosscoder: CrosscoderSection = Field(default_factory=CrosscoderSection)
    llc: LLCSection = Field(default_factory=LLCSection)
    susceptibility: SusceptibilitySection = Field(default_factory=SusceptibilitySection)
    capabilities: CapabilitiesSection = Field(default_factory=CapabilitiesSection)
    emergence: EmergenceSection = Field(default_factory=EmergenceSection)
    compute: ComputeSection = Field(default_factory=ComputeSection)


def parse_config(data: dict, origin: str = "config") -> StudyConfig:
    """Validate a dict as a StudyConfig; errors name the offending key path."""
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}: {what}")
        raise ConfigError(f"{origin}: " + "; ".join(lines)) from None


def load_config(path: str | Path) -> StudyConfig:
    """Read a study TOML file (see docs/study.md for every key)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"study config {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return parse_config(data, str(path))

"""The typed configuration of a study (TOML on disk); unknown keys are errors that name the key.

One knob, one definition: each section is built from the config model of the part that does the work
(CaptureConfig, DictionaryConfig + TrainConfig, LifeHistoryConfig, CrosscodeConfig, SGLDConfig,
SusceptibilityConfig, CapabilityConfig, SweepConfig, SeriesConfig), either by nesting it or by taking
its fields programmatically (`fields_of`), never by copying them. Only study choices (which steps,
which site, enabled) are defined here. The CLI commands read the same models (`ontogeny.commands._common
.build_config`), so a knob has one default wherever it is set from: TOML, `--set`, a flag or Python.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ontogeny.capabilities.config import CapabilityConfig
from ontogeny.census.heads import CensusConfig
from ontogeny.crosscoding.config import CrosscodeConfig
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.stream import StreamConfig
from ontogeny.dictionaries.train import TrainConfig
from ontogeny.emergence.sweep import SweepConfig
from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.report.features import FeaturePagesConfig
from ontogeny.series.capture import CaptureConfig, TokenSetConfig
from ontogeny.series.train import SeriesConfig
from ontogeny.slt.calibrate import CalibrationConfig
from ontogeny.slt.sgld import SGLDConfig
from ontogeny.slt.susceptibility import SusceptibilityConfig

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def fields_of(model: type[BaseModel], exclude: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """A model's fields as `create_model` arguments ({name: (type, FieldInfo)}), minus `exclude`.

    Why: a section that needs a package model's knobs but not all of them (the site width d_in is not a
    study knob) takes the same FieldInfo objects, so default, bounds and description stay one definition.
    """
    drop = set(exclude)
    return {n: (f.annotation, f) for n, f in model.model_fields.items() if n not in drop}


def _spec(name: str, model: type[BaseModel], exclude: Iterable[str]) -> type[_Section]:
    return create_model(name, __base__=_Section, __module__=__name__, **fields_of(model, exclude))


class SeriesSection(_Section):
    """Where the checkpoints come from: the embedded series (trained here), a local folder or the Hub."""

    source: str = Field("embedded", description="'embedded', a local series folder, or a Hub repo id")
    revisions: list[str] | None = Field(None, description="Hub revisions, e.g. ['step1000', 'step2000']")
    steps: list[int] | None = Field(None, description="a subset of the checkpoints (default: all)")
    train: SeriesConfig = Field(default_factory=SeriesConfig, description="the embedded series' training")


class ActivationsSection(CaptureConfig):
    """The study's capture of the evaluation set: every field is CaptureConfig's (`ontogeny cache` reads it too)."""


_DictionarySpec = _spec("DictionarySpec", DictionaryConfig, ("d_in", "d_sae"))


class DictionariesSection(_DictionarySpec):
    """One dictionary per (checkpoint, site): every DictionaryConfig field except d_in (the site's width),
    the trainer's TrainConfig as `train`, and the pass over the store (`ontogeny dict train` reads it too)."""

    d_sae: int | None = Field(None, gt=0, description="number of latents F (default: expansion x site width)")
    expansion: int = Field(4, gt=0, description="without d_sae: d_sae = expansion x site width")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimiser and schedules (TrainConfig)")
    stream: StreamConfig | None = Field(None, description="stream training tokens from the corpus through each "
                                        "checkpoint (StreamConfig, docs/streaming.md); None: train on the "
                                        "cached evaluation store with batch_size and epochs below")
    batch_size: int = Field(512, gt=0, description="cached-store training: tokens per optimisation step")
    epochs: int = Field(8, gt=0, description="cached-store training: passes over each unit's tokens")
    seed: int = Field(0, description="seed of the initialisation and the data order")
    checkpoints: int | None = Field(None, ge=2, description="train dictionaries at a log-spaced subset of this "
                                    "many checkpoints (the first and last always; `pick_steps`); None: at "
                                    "every checkpoint")

    def pick_steps(self, steps: list[int]) -> list[int]:
        """The checkpoints that get dictionaries: all, or `checkpoints` of them log-spaced in (1 + step).

        Targets t_i = (1 + s_first) * ((1 + s_last) / (1 + s_first))^(i / (n - 1)) - 1; each takes the
        nearest checkpoint in log(1 + step) not already taken, so the subset keeps the series' own steps
        (a log-spaced series such as Pythia's stays evenly covered on the log axis the analyses plot).
        """
        steps = sorted(steps)
        n = self.checkpoints
        if n is None or n >= len(steps):
            return steps
        logs = [math.log1p(s) for s in steps]
        chosen: set[int] = set()
        for i in range(n):
            target = logs[0] + (logs[-1] - logs[0]) * i / (n - 1)
            free = [j for j in range(len(steps)) if j not in chosen]
            chosen.add(min(free, key=lambda j: (abs(logs[j] - target), j)))
        return [steps[j] for j in sorted(chosen)]

    def dictionary_fields(self, d_in: int) -> dict[str, Any]:
        """DictionaryConfig fields for a site of width `d_in` (validated: a bad k names itself here)."""
        own = set(DictionaryConfig.model_fields) - {"d_in", "d_sae"}
        fields = {"d_sae": self.d_sae or self.expansion * d_in, **self.model_dump(include=own)}
        try:
            DictionaryConfig(d_in=d_in, **fields)
        except (ValidationError, ValueError) as e:
            raise ConfigError(f"dictionaries: {e}") from None
        return fields


class LifeHistorySection(_Section):
    """Matching, lineages, turnover, scaffold, joint ablation and prediction over the dictionaries."""

    enabled: bool = Field(True, description="run the life-history analysis")
    config: LifeHistoryConfig = Field(default_factory=LifeHistoryConfig, description="LifeHistoryConfig")
    max_tokens: int | None = Field(16384, description="tokens of the shared set used for matching (None: all)")
    ablate: bool = Field(True, description="run the joint cross-layer ablation on the final checkpoint")
    ablation_seqs: int = Field(32, gt=0, description="sequences of the token set used for ablation")


_CrosscodeSpec = _spec("CrosscodeSpec", CrosscodeConfig, ("steps", "site"))


class CrosscoderSection(_CrosscodeSpec):
    """A crosscoder over a few checkpoints: every CrosscodeConfig field, and which steps and site."""

    enabled: bool = Field(True, description="train the crosscoder and its RelDec / RelIE analysis")
    steps: list[int] | None = Field(None, description="checkpoints to stack (default: 3 spread over the series)")
    site: str | None = Field(None, description="site (default: the last captured site)")

    def crosscode_config(self, steps: list[int], site: str) -> CrosscodeConfig:
        """The CrosscodeConfig of this section at the chosen steps and site."""
        return CrosscodeConfig(steps=steps, site=site, **self.model_dump(exclude={"enabled", "steps", "site"}))


class LLCSection(TokenSetConfig):
    """The LLC curve: SGLD at chosen checkpoints on a token set (`ontogeny llc` reads it too)."""

    enabled: bool = Field(True, description="estimate the LLC curve")
    steps: list[int] | None = Field(None, description="checkpoints (default: every `every`-th one, and the last)")
    every: int = Field(1, gt=0, description="without `steps`: take every n-th checkpoint (the last always)")
    components: list[str] = Field(["full"], description="restrictions: full, l<L>h<H>, l<L>attn, l<L>, heads")
    sgld: SGLDConfig = Field(default_factory=SGLDConfig, description="SGLD settings (SGLDConfig)")
    calibration: CalibrationConfig | None = Field(None, description="choose ε and γ first at the last checkpoint "
                                                  "(CalibrationConfig, a PROPOSAL); None: use sgld as given")

    def pick_steps(self, steps: list[int]) -> list[int]:
        """The checkpoints whose LLC is estimated."""
        if self.steps:
            return list(self.steps)
        return sorted(set(steps[:: self.every]) | {steps[-1]})


class SusceptibilitySection(SusceptibilityConfig):
    """Per-head susceptibilities at one checkpoint: every SusceptibilityConfig field, and which step."""

    enabled: bool = Field(True, description="run the susceptibility sweep")
    step: int | None = Field(None, description="checkpoint (default: the last)")

    def susceptibility_config(self) -> SusceptibilityConfig:
        return SusceptibilityConfig.model_validate(self.model_dump(exclude={"enabled", "step"}))


class CapabilitiesSection(_Section):
    enabled: bool = Field(True, description="capability curves and change points over the series")
    config: CapabilityConfig = Field(default_factory=CapabilityConfig, description="CapabilityConfig")


class EmergenceSection(_Section):
    enabled: bool = Field(False, description="run the synthetic-task sweep (minutes to hours)")
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="SweepConfig (ontogeny.emergence.sweep)")


class FeaturesSection(FeaturePagesConfig):
    """Feature-page data for the report: every FeaturePagesConfig field (ontogeny.report.features)."""

    enabled: bool = Field(True, description="write feature-page data (needs the life history)")


class CensusSection(CensusConfig):
    """The head census over the series (previous-token / induction heads): every CensusConfig field."""

    enabled: bool = Field(False, description="run the head census at every checkpoint")


class ComputeSection(_Section):
    backend: Literal["process", "ray"] = Field("process", description="where units run: in process or on Ray")
    address: str | None = Field(None, description="Ray cluster address (None: a local instance)")
    device: str = Field("cpu", description="torch device of the models")


class StudyConfig(_Section):
    """A whole study: series -> activations -> dictionaries -> analyses -> report."""

    name: str = Field("study", description="the study's name (in the report)")
    series: SeriesSection = Field(default_factory=SeriesSection)
    activations: ActivationsSection = Field(default_factory=ActivationsSection)
    dictionaries: DictionariesSection = Field(default_factory=DictionariesSection)
    lifehistory: LifeHistorySection = Field(default_factory=LifeHistorySection)
    crosscoder: CrosscoderSection = Field(default_factory=CrosscoderSection)
    llc: LLCSection = Field(default_factory=LLCSection)
    susceptibility: SusceptibilitySection = Field(default_factory=SusceptibilitySection)
    capabilities: CapabilitiesSection = Field(default_factory=CapabilitiesSection)
    emergence: EmergenceSection = Field(default_factory=EmergenceSection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    census: CensusSection = Field(default_factory=CensusSection)
    compute: ComputeSection = Field(default_factory=ComputeSection)


def validate(model: type[M], data: dict, origin: str = "config") -> M:
    """Validate a dict as `model`; a ConfigError names each offending key path ("a.b: unknown key")."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}: {what}")
        raise ConfigError(f"{origin}: " + "; ".join(lines)) from None
    except ConfigError as e:  # a model validator that raises ConfigError directly
        raise ConfigError(f"{origin}: {e}") from None


def parse_config(data: dict, origin: str = "config") -> StudyConfig:
    """Validate a dict as a StudyConfig; errors name the offending key path."""
    return validate(StudyConfig, data, origin)


def read_toml(path: str | Path) -> dict:
    """A TOML file as a dict; ConfigError naming the file when it is missing or not valid TOML."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None


def load_config(path: str | Path) -> StudyConfig:
    """Read a study TOML file (see docs/study.md for every key)."""
    return parse_config(read_toml(path), str(path))

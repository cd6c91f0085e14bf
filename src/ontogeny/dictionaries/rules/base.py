"""What every activation rule declares: its encode rule, penalty, coefficient, config fields, auxiliary
loss and how it is written to / read from the SAELens layout. One generic `Dictionary` and one
`CrossCoder` ask a rule only through this class, so a new rule is one new module in this package.

A rule maps pre-activations [B, F] to codes, whatever produced them (an SAE's encoder or a crosscoder's
sum over checkpoints). It exists twice, as the STYLE asks: `forward(pre_BF)` is the plain dense
reference, and `select(pre_BF) -> flat indices` + `values(pre_N, cols_N)` is the sparse form the fast
trainer uses (only the selected entries can be non-zero, so only they carry gradient).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from ontogeny.dictionaries.sparse import flat_above

if TYPE_CHECKING:  # the config is built from the rules, so the rules only name it
    from ontogeny.dictionaries.config import DictionaryConfig

RULES: dict[str, type[Rule]] = {}


class Rule(nn.Module):
    """Base class (a rule that keeps every positive pre-activation and pays no penalty)."""

    name: ClassVar[str] = ""
    #: pydantic models whose fields this rule reads from `DictionaryConfig` (shared groups are reused)
    params: ClassVar[tuple[type[BaseModel], ...]] = ()
    #: the aux-k loss on dead latents (`aux_k.py`) is added to the loss
    uses_aux_k: ClassVar[bool] = False
    #: decoder rows held at unit norm unless `decoder_norm` says otherwise
    default_decoder_norm: ClassVar[str] = "unit"
    #: the penalty weighs each code by its decoder row's norm (so the dictionary is handed the norms)
    penalty_uses_decoder_norm: ClassVar[bool] = False
    #: codes are chosen by comparing magnitudes across latents (a crosscoder weighs them by decoder norm)
    ranks_latents: ClassVar[bool] = False
    #: the fast trainer switches to dense matmuls when the share of non-zero codes is high
    density_dependent: ClassVar[bool] = False
    #: SAELens `architecture` written for this rule, and the names read back as this rule
    saelens_architecture: ClassVar[str] = ""
    saelens_reads: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            if cls.name in RULES:
                raise TypeError(f"two activation rules are named {cls.name!r}")
            RULES[cls.name] = cls

    def __init__(self, cfg: DictionaryConfig):
        super().__init__()
        self.cfg = cfg

    # ------------------------------------------------------------------ configuration
    @classmethod
    def check_config(cls, cfg: DictionaryConfig) -> None:
        """Raise ConfigError when the config's values do not suit this rule."""

    @classmethod
    def reads(cls, field: str) -> bool:
        """Whether `field` is one of this rule's config fields."""
        return any(field in p.model_fields for p in cls.params)

    def coefficient(self) -> float:
        """Weight of `penalty` in the loss (before the trainer's warm-up scale)."""
        return 0.0

    def prefix_widths(self) -> list[int]:
        """Widths w of the nested prefixes whose reconstructions (latents < w) each enter the loss."""
        return [self.cfg.d_sae]

    # ------------------------------------------------------------------ codes
    def forward(self, pre_BF: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre_BF)

    def select(self, pre_BF: torch.Tensor) -> torch.Tensor:
        """Flat indices (row * F + col, rows ascending) of the entries that may be non-zero."""
        return flat_above(pre_BF, 0.0)

    def values(self, pre_N: torch.Tensor, cols_N: torch.Tensor) -> torch.Tensor:
        """Codes at selected entries, from their pre-activations (differentiable)."""
        return torch.relu(pre_N)

    def penalty(self, codes_N: torch.Tensor, pre_N: torch.Tensor, cols_N: torch.Tensor | None,
                dec_norm_F: torch.Tensor | None, n_rows: int) -> torch.Tensor:
        """Sparsity penalty averaged over tokens; codes/pre may be dense [B, F] (cols None) or flat."""
        return codes_N.new_zeros(())

    def dense_codes_and_penalty(self, pre_BF: torch.Tensor, dec_norm_F: torch.Tensor | None, n_rows: int,
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes [B, F] and penalty for the fast trainer's dense regime: by default `forward` and `penalty`
        (the reference); a rule overrides it to compute the same values and gradients in fewer passes."""
        codes_BF = self(pre_BF)
        return codes_BF, self.penalty(codes_BF, pre_BF, None, dec_norm_F, n_rows)

    @torch.no_grad()
    def update(self, codes_N: torch.Tensor, step: int) -> None:
        """Update running state (an inference threshold) from a step's positive codes."""

    @property
    def threshold_F(self) -> torch.Tensor | None:
        """Per-latent inference threshold (saved as SAELens `threshold`), or None."""
        return None

    def load_threshold(self, threshold_F: torch.Tensor) -> None:
        raise ValueError(f"rule {self.name!r} has no threshold")

    # ------------------------------------------------------------------ SAELens layout
    def saelens_fields(self) -> dict[str, Any]:
        """Extra top-level cfg.json fields of this rule's SAELens architecture."""
        return {}

    def saelens_metadata(self) -> dict[str, Any]:
        """Rule state kept under cfg.json `metadata` (read back by `load_saelens`)."""
        return {}

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors besides W_enc, W_dec, b_enc, b_dec (e.g. `threshold`)."""
        return {}

    @classmethod
    def config_from_saelens(cls, raw: dict[str, Any], known: dict[str, Any] | None = None) -> dict[str, Any]:
        """Config fields of this rule read from a SAELens cfg.json (`raw`), given the fields `known` so far
        (from ontogeny's own provenance, when the folder was written here)."""
        return {}

    @classmethod
    def saelens_tensor_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        """The extra tensors a SAELens folder of this rule must hold, with their shapes."""
        return {}

    def load_saelens(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        """Restore the rule's state from a folder's tensors and `metadata`."""


def make_rule(cfg: DictionaryConfig) -> Rule:
    """The rule named in the config, with its parameters and buffers."""
    return RULES[cfg.rule](cfg)


def rule_for_saelens(architecture: str, metadata: dict[str, Any]) -> type[Rule] | None:
    """The rule that reads a SAELens `architecture`: the one ontogeny saved (metadata `ontogeny_rule`)
    when it writes that architecture, else the rule listing the name in `saelens_reads`."""
    own = RULES.get(str(metadata.get("ontogeny_rule")))
    if own is not None and own.saelens_architecture == architecture:
        return own
    for rule in RULES.values():
        if architecture in rule.saelens_reads:
            return rule
    return None

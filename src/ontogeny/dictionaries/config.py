"""Typed configuration of a sparse dictionary: its activation rule, sizes, and the fields every rule of
the registry (`rules/`) declares. A rule's fields are defined once, in its module (or in a shared group of
`rules/params.py`); this model is their union, so a new rule's knobs appear here without an edit.

Defaults follow shared/research/seeds-susceptibility-atm.md §6 (Gao et al. 2406.04093 for TopK,
Bussmann et al. 2412.06410 for BatchTopK, Rajamanoharan et al. 2407.14435 / SAELens for JumpReLU,
Anthropic's April-2024 update for decoder-norm-weighted L1).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.fields import FieldInfo

from ontogeny.dictionaries.rules import RULES

RuleName = Literal[tuple(RULES)]  # type: ignore[valid-type]


def rule_fields(rules=None) -> dict[str, tuple[Any, FieldInfo]]:
    """Every config field the given rules (default: all) declare, each once: {name: (type, FieldInfo)}.

    A field may appear in several rules only through one shared group class (`rules/params.py`)."""
    out: dict[str, tuple[Any, FieldInfo]] = {}
    owner: dict[str, type] = {}
    for rule in (RULES.values() if rules is None else rules):
        for group in rule.params:
            for name, info in group.model_fields.items():
                if name in owner and owner[name] is not group:
                    raise TypeError(f"config field {name!r} is declared by {owner[name].__name__} and "
                                    f"{group.__name__}: share one group class")
                owner[name] = group
                out[name] = (info.annotation, info)
    return out


class DictionaryBase(BaseModel):
    """One dictionary: `codes = rule(pre)`, `pre = (x - b_dec) W_enc + b_enc`, `x_hat = codes W_dec + b_dec`."""

    model_config = ConfigDict(extra="forbid")

    rule: RuleName = Field("topk", description="activation rule applied to the pre-activations [B, F] "
                                               f"({', '.join(sorted(RULES))})")
    d_in: int = Field(..., gt=0, description="input width D")
    d_sae: int = Field(..., gt=0, description="number of latents F")
    decoder_norm: Literal["unit", "free"] | None = Field(
        None, description="unit: rows of W_dec kept at norm 1 (gradient parallel to a row removed, rows "
                          "renormalised after each step); free: unconstrained, the penalty is weighted by "
                          "||d_i||. None: the rule's default (free for relu, unit otherwise)")
    apply_b_dec_to_input: bool = Field(True, description="subtract b_dec from x before encoding (SAELens)")
    fast: bool = Field(True, description="training uses the sparse fused encoder/decoder (False: the plain "
                                         "dense reference)")
    sparse_below: float = Field(0.05, ge=0, le=1, description="relu/jumprelu fast path: use the sparse kernels "
                                "while the share of non-zero codes is below this, else dense matmuls")

    @model_validator(mode="after")
    def _check(self):
        RULES[self.rule].check_config(self)
        return self

    @property
    def unit_decoder(self) -> bool:
        """Whether decoder rows are held at unit norm (see `decoder_norm`)."""
        return (self.decoder_norm or RULES[self.rule].default_decoder_norm) == "unit"

    @property
    def aux_k(self) -> int:
        """Dead latents in aux-k when enough are dead: `k_aux`, or d_in // 2."""
        k_aux = getattr(self, "k_aux", None)
        return k_aux if k_aux is not None else max(1, self.d_in // 2)


DictionaryConfig = create_model("DictionaryConfig", __base__=DictionaryBase, __module__=__name__,
                                **rule_fields())
DictionaryConfig.__doc__ = DictionaryBase.__doc__

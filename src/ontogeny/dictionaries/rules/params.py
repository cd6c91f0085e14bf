"""Config field groups shared by several rules; each field is defined once, here or in its rule's module.

`DictionaryConfig` (and the crosscoder's config) is the union of the groups every registered rule lists
in `Rule.params`; a group used by several rules is one class, so its fields have one default.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class KParams(BaseModel):
    """How many latents are active."""

    k: int = Field(32, gt=0, description="active latents per token (topk) or on average (batchtopk and "
                                         "matryoshka_batchtopk)")


class AuxKParams(BaseModel):
    """The aux-k loss on dead latents (Gao et al. 2024, arXiv 2406.04093), see `aux_k.py`."""

    k_aux: int | None = Field(None, gt=0, description="aux-k rules: dead latents in the aux-k loss "
                                                       "(None: d_in // 2, as dictionary_learning)")
    aux_coefficient: float = Field(1 / 32, ge=0, description="aux-k rules: weight alpha of the aux-k loss")


class ThresholdParams(BaseModel):
    """The inference threshold of batch top-k rules: an EMA of the smallest kept activation."""

    threshold_beta: float = Field(0.999, ge=0, lt=1, description="batch top-k rules: EMA decay of the "
                                                                 "inference threshold")
    threshold_start_step: int = Field(1000, ge=0, description="batch top-k rules: step from which the EMA "
                                                              "is updated")

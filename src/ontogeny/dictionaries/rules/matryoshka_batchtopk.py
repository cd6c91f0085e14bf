"""`matryoshka_batchtopk`: BatchTopK codes whose nested prefixes each reconstruct (Bussmann, Nabeshima,
Karvonen & Nanda 2025, "Learning Multi-Level Features with Matryoshka SAEs", arXiv 2503.17547).

With widths w_1 < ... < w_M = F, codes a chosen once by batch top-k over all F latents and
x_hat^(m) = sum_{i < w_m} a_i d_i + b_dec, the reconstruction loss is the sum over prefixes

    L = sum_m mean_b ||x_b - x_hat_b^(m)||^2          (+ aux-k on dead latents, as batchtopk)

so the first w_1 latents must reconstruct alone: general features settle early in the dictionary and
are not absorbed by later, more specific ones. Inference and saving are batchtopk's (a threshold; SAELens
saves this architecture, "matryoshka_batchtopk", as a "jumprelu"). SAELens's `use_matryoshka_aux_loss`
(aux-k per level) is not implemented: aux-k runs over the whole dictionary.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ontogeny.dictionaries.rules.batchtopk import BatchTopKRule
from ontogeny.dictionaries.rules.params import AuxKParams, KParams, ThresholdParams
from ontogeny.errors import ConfigError


class MatryoshkaParams(BaseModel):
    matryoshka_widths: list[int] | None = Field(
        None, description="matryoshka_batchtopk: strictly increasing prefix widths (d_sae is appended when "
                          "missing); None: d_sae/8, d_sae/4, d_sae/2, d_sae (those >= k)")


def resolve_widths(widths: list[int] | None, d_sae: int, k: int) -> list[int]:
    """The prefix widths a config means, ending at d_sae."""
    if widths is None:
        widths = [w for w in (d_sae // 8, d_sae // 4, d_sae // 2) if w >= k]
    widths = list(widths)
    if not widths or widths[-1] != d_sae:
        widths.append(d_sae)
    return widths


class MatryoshkaBatchTopKRule(BatchTopKRule):
    """Batch top-k codes; every prefix of the dictionary in `matryoshka_widths` reconstructs."""

    name = "matryoshka_batchtopk"
    params = (KParams, AuxKParams, ThresholdParams, MatryoshkaParams)
    saelens_reads = ("matryoshka_batchtopk",)

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        w = resolve_widths(cfg.matryoshka_widths, cfg.d_sae, cfg.k)
        if any(b <= a for a, b in zip(w, w[1:], strict=False)) or w[-1] != cfg.d_sae:
            raise ConfigError(f"matryoshka_widths={cfg.matryoshka_widths} must increase strictly up to "
                              f"d_sae={cfg.d_sae}")
        if w[0] < cfg.k:
            raise ConfigError(f"matryoshka_widths: the first width {w[0]} is below k={cfg.k}")

    def prefix_widths(self) -> list[int]:
        return resolve_widths(self.cfg.matryoshka_widths, self.cfg.d_sae, self.cfg.k)

    @classmethod
    def config_from_saelens(cls, raw: dict[str, Any], known: dict[str, Any] | None = None) -> dict[str, Any]:
        out = super().config_from_saelens(raw, known)
        if raw.get("matryoshka_widths"):
            out["matryoshka_widths"] = [int(w) for w in raw["matryoshka_widths"]]
        return out

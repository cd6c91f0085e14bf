"""Local learning coefficient (LLC) from SGLD draws: λ̂ = nβ·(E_β[L_n(w)] − L_n(w*)).

The estimator of Lau et al. 2023 (arXiv 2308.12108), per chain then mean ± std over chains, as
devinterp's `llc` (its v1 semantics: the expectation runs over the kept draws, not the burn-in). With a
parameter mask it is the weight-refined LLC of that component (Wang et al. 2024, arXiv 2410.02984).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from ontogeny.slt.sgld import BatchFn, LossFn, Params, SGLDConfig, SGLDResult, sample


@dataclass
class LLCResult:
    """LLC per chain with its mean and std, plus the run's traces and diagnostics."""

    llc_mean: float
    llc_std: float
    llc_per_chain: list[float]
    init_loss: float
    n_beta: float
    loss_trace_CS: torch.Tensor
    mala_acceptance: float | None
    warnings: list[str] = field(default_factory=list)
    draws_per_second: float = float("nan")

    def summary(self) -> dict[str, float | None]:
        return {"llc_mean": self.llc_mean, "llc_std": self.llc_std, "init_loss": self.init_loss,
                "mala_acceptance": self.mala_acceptance, "draws_per_second": self.draws_per_second}


def llc_from_samples(res: SGLDResult, n_beta: float) -> LLCResult:
    """λ̂_c = nβ·(mean over chain c's draws of the minibatch loss − L(w*)); mean and std over chains."""
    base = res.init_draw_loss_D if res.init_draw_loss_D is not None else torch.tensor(res.init_loss)
    per_chain_C = n_beta * (res.draw_loss_CD.double() - base.double()).mean(dim=1)
    std = float(per_chain_C.std(unbiased=False)) if per_chain_C.numel() > 1 else 0.0
    mala = float(res.mala_acceptance_C.mean()) if res.mala_acceptance_C is not None else None
    return LLCResult(float(per_chain_C.mean()), std, [float(v) for v in per_chain_C], res.init_loss, n_beta,
                     res.loss_trace_CS, mala, list(res.warnings), res.draws_per_second)


def estimate_llc(loss_fn: LossFn, params0: Params, batches: BatchFn, config: SGLDConfig,
                 masks: Mapping[str, torch.Tensor | None] | None = None,
                 backend: Literal["vmap", "loop"] = "vmap", init_loss: float | None = None,
                 on_step: Callable[[int], None] | None = None) -> LLCResult:
    """Sample around w* = params0 (optionally only the masked parameters) and return the LLC.

    `init_loss` fixes L(w*) (e.g. the full-data loss); by default it follows `config.init_loss`.
    """
    res = sample(loss_fn, params0, batches, config, masks=masks, backend=backend, init_loss=init_loss,
                 on_step=on_step)
    return llc_from_samples(res, config.n_beta)

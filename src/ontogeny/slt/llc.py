"""Local learning coefficient (LLC) from SGLD draws: λ̂ = nβ·(E_β[L_n(w)] − L_n(w*)).

The estimator of Lau et al. 2023 (arXiv 2308.12108), per chain then mean ± std over chains, as
devinterp's `llc` (its v1 semantics: the expectation runs over the kept draws, not the burn-in). With a
parameter mask it is the weight-refined LLC of that component (Wang et al. 2024, arXiv 2410.02984).
Kept draws are those after the detected burn-in (`slt.diagnostics.mser_truncation`); the result carries
the convergence figures (between-chain std, first-half/second-half difference) and a warning when either
exceeds `SGLDConfig.convergence_tol`·|λ̂|.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ontogeny.slt.diagnostics import convergence
from ontogeny.slt.sgld import BatchFn, LossFn, Params, SGLDConfig, SGLDResult, sample


@dataclass
class LLCResult:
    """LLC per chain with its mean and std, the convergence figures, the run's traces and diagnostics."""

    llc_mean: float
    llc_std: float
    llc_per_chain: list[float]
    init_loss: float
    n_beta: float
    loss_trace_CS: torch.Tensor
    mala_acceptance: float | None
    warnings: list[str] = field(default_factory=list)
    draws_per_second: float = float("nan")
    half_diff: float = 0.0  # λ̂(first half of kept draws) − λ̂(second half)
    n_burnin_draws: int = 0
    n_kept_draws: int = 0
    below_init_frac: float = 0.0  # share of kept draws with L < L(w*), all chains
    n_diverged: int = 0
    converged: bool = True  # between-chain std and |half_diff| within convergence_tol·|λ̂|, no chain diverged
    excess_CD: torch.Tensor | None = None  # nβ·(L − L(w*)) at every draw (burn-in included), for trace plots

    def summary(self) -> dict[str, Any]:
        """Scalar figures of the estimate (the columns of the LLC table)."""
        return {"llc_mean": self.llc_mean, "llc_std": self.llc_std, "llc_half_diff": self.half_diff,
                "init_loss": self.init_loss, "n_beta": self.n_beta, "burnin_draws": self.n_burnin_draws,
                "kept_draws": self.n_kept_draws, "below_init_frac": self.below_init_frac,
                "n_diverged": self.n_diverged, "mala_acceptance": self.mala_acceptance,
                "converged": self.converged, "draws_per_s": self.draws_per_second}


def llc_from_samples(res: SGLDResult, n_beta: float | None = None, tol: float = 0.1) -> LLCResult:
    """λ̂_c = nβ·(mean over chain c's kept draws of the minibatch loss − L(w*)); mean and std over chains.

    `n_beta` defaults to the value the run used (`res.n_beta`); `tol` is the relative convergence tolerance.
    """
    if n_beta is not None:
        res.n_beta = float(n_beta)
    x_all = res.excess_CD()
    x_CD = res.kept(x_all)
    conv = convergence(x_CD)
    mala = float(res.mala_acceptance_C.mean()) if res.mala_acceptance_C is not None else None
    msgs = list(res.warnings)
    n_div = int(res.diverged_C.sum())
    ok = n_div == 0 and conv.relative(conv.chain_std) <= tol and conv.relative(conv.half_diff) <= tol
    if not ok and n_div == 0:
        msgs.append(f"not converged: between-chain std {conv.chain_std:.3g} and first/second-half difference "
                    f"{conv.half_diff:.3g} of λ̂ = {conv.mean:.4g} must both be within {tol:.0%} of |λ̂|: "
                    "take more draws or chains")
    if bool((conv.per_chain_C < 0).any()):
        msgs.append("a chain's estimate is negative: w* is not a local minimum or gamma is too small")
    return LLCResult(conv.mean, conv.chain_std, [float(v) for v in conv.per_chain_C], res.init_loss, res.n_beta,
                     res.loss_trace_CS, mala, msgs, res.draws_per_second, conv.half_diff, res.n_burnin_draws,
                     x_CD.shape[1], float(res.below_init_frac_C.mean()), n_div, ok, x_all.float())


def estimate_llc(loss_fn: LossFn, params0: Params, batches: BatchFn, config: SGLDConfig,
                 masks: Mapping[str, torch.Tensor | None] | None = None,
                 backend: Literal["vmap", "loop"] = "vmap", init_loss: float | None = None,
                 on_step: Callable[[int], None] | None = None, n_samples: int | None = None) -> LLCResult:
    """Sample around w* = params0 (optionally only the masked parameters) and return the LLC.

    `init_loss` fixes L(w*) (e.g. the full-data loss); by default it follows `config.init_loss`.
    `n_samples` is n of nβ = n/ln n when `config.n_beta` is None (default: the stream's `n_samples`).
    """
    res = sample(loss_fn, params0, batches, config, masks=masks, backend=backend, init_loss=init_loss,
                 on_step=on_step, n_samples=n_samples)
    return llc_from_samples(res, tol=config.convergence_tol)

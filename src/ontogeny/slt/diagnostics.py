"""Convergence diagnostics of SGLD loss traces: detected burn-in, divergence, convergence of the estimate.

Why: an LLC estimate is only as good as its chains. These functions turn the per-draw values
x_cd = nβ·(L_c,d − L(w*)) into the checks practitioners read off trace plots (devinterp's diagnostics
notebook; Lau et al. 2023, arXiv 2308.12108, appendix on hyperparameters), as numbers with thresholds.

- burn-in: MSER (marginal standard error rule, White 1997, "An effective truncation heuristic for bias
  reduction in simulation output"): truncate at d* = argmin_{d ≤ f·D} Σ_{i≥d}(x̄_i − x̄_{≥d})² / (D − d)²
  on the chain-mean trace in batches of 5 (MSER-5).
- divergence: a PROPOSAL, relative to the chains' own stationary spread: a kept draw above
  median + factor·(q90 − q10) of the kept draws (each statistic pooled over chains by the median, so one
  runaway chain does not widen its own yardstick), or any non-finite loss. The inter-decile range, not the
  MAD, because x is chi-square-like and right-skewed for small models.
- convergence: between-chain std of λ̂_c and the difference λ̂(first half) − λ̂(second half) of the kept draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MSER_BATCH = 5


def mser_truncation(x_D: torch.Tensor, max_frac: float = 0.5, batch: int = MSER_BATCH) -> int:
    """Number of leading entries of the trace `x_D` to discard (MSER-`batch`); 0 for short traces.

    The trace is averaged in non-overlapping batches of `batch` draws; d (in batches) minimises the squared
    standard error of the mean of the rest, Σ_{i≥d}(b_i − b̄_{≥d})²/(K − d)², over d ≤ max_frac·K.
    """
    x = x_D.double().flatten()
    k = x.numel() // batch
    if k < 4:
        return 0
    b = x[: k * batch].reshape(k, batch).mean(dim=1)
    d_max = max(int(max_frac * k), 1)
    best, best_d = float("inf"), 0
    # suffix sums give every candidate's SSE in one pass
    rev = torch.flip(b, [0])
    cnt = torch.arange(1, k + 1, dtype=torch.float64)
    s1 = torch.flip(torch.cumsum(rev, 0), [0])
    s2 = torch.flip(torch.cumsum(rev ** 2, 0), [0])
    n = torch.flip(cnt, [0])
    sse = s2 - s1 ** 2 / n
    score = sse / n ** 2
    for d in range(d_max + 1):
        v = float(score[d])
        if v < best:
            best, best_d = v, d
    return best_d * batch


@dataclass
class ChainChecks:
    """Per-chain checks of one run: divergence, share of draws below L(w*), negative estimates."""

    diverged_C: torch.Tensor  # bool [chains]
    below_init_frac_C: torch.Tensor  # share of kept draws with L < L(w*), [chains]
    centre: float  # stationary median of x (median over chains)
    spread: float  # stationary inter-decile range q90 − q10 of x (median over chains)


def chain_checks(x_CD: torch.Tensor, trace_finite_C: torch.Tensor, n_burnin: int, factor: float) -> ChainChecks:
    """Diverged: a non-finite loss, or a kept draw with x > centre + factor·spread (x = nβ·(L − L(w*))).

    Only kept draws are compared (the burn-in is a transient by definition); non-finite values anywhere count.
    """
    kept = x_CD[:, n_burnin:].double()
    finite = torch.isfinite(kept).all(dim=1)
    ok = finite & trace_finite_C
    if ok.any():
        good = kept[ok]
        centre = float(good.median(dim=1).values.median())
        q = torch.quantile(good, torch.tensor([0.1, 0.9], dtype=torch.float64), dim=1)  # [2, chains]
        spread = max(float((q[1] - q[0]).median()), 1e-12)
    else:
        centre, spread = float("inf"), float("inf")
    over = (torch.nan_to_num(kept, nan=float("inf")) > centre + factor * spread).any(dim=1)
    diverged = ~trace_finite_C | ~torch.isfinite(x_CD.double()).all(dim=1) | over
    below = (kept < 0).double().mean(dim=1)
    return ChainChecks(diverged, below, centre, spread)


@dataclass
class Convergence:
    """Convergence figures of an estimate from kept draws x_CD: λ̂_c per chain, spread and half difference."""

    per_chain_C: torch.Tensor
    mean: float
    chain_std: float  # population std of λ̂_c over chains
    half_diff: float  # λ̂ over the first half of the kept draws minus λ̂ over the second half (all chains)

    def relative(self, value: float) -> float:
        return abs(value) / max(abs(self.mean), 1e-12)


def convergence(x_CD: torch.Tensor) -> Convergence:
    """λ̂_c = mean_d x_cd; the chains' spread and the first-half/second-half difference of the pooled mean."""
    x = x_CD.double()
    per = x.mean(dim=1)
    std = float(per.std(unbiased=False)) if per.numel() > 1 else 0.0
    h = x.shape[1] // 2
    half = float(x[:, :h].mean() - x[:, h:].mean()) if h >= 1 else 0.0
    return Convergence(per, float(per.mean()), std, half)

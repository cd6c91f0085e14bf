"""Choose SGLD's step size ε and localisation γ for a model and data without knowing the answer.

Why: the LLC estimate moves with ε and γ (minibatch gradient noise inflates it roughly ∝ ε; a strong γ
truncates the posterior's flat directions and deflates it), so settings tuned on one network are wrong on
another. The procedure (a PROPOSAL built from the criteria practitioners read off trace plots: devinterp's
`sgld_calibration` and `diagnostics` notebooks; Lau et al. 2023, arXiv 2308.12108, appendix):

1. run a short SGLD at every (γ, ε) of a grid, with MALA acceptance on;
2. a grid point *passes* when no chain diverged (relative to its stationary spread), MALA acceptance
   ≥ `min_acceptance`, the detected burn-in is not at its limit (the trace settled), the standard error
   of λ̂ over chains is within `half_tol`·|λ̂|, the first/second-half difference is within `half_tol`·|λ̂|
   or within noise (4 standard errors), no chain's estimate is negative and at most `max_below_frac` of
   the draws lie below L(w*); a point failing *only* because its trace had not settled is rerun with
   twice the draws, up to `max_extensions` times (equilibration time grows as 1/ε, so a fixed draw count
   is short for the small ε first);
3. γ: the *smallest* γ with at least two passing ε (γ only confines; a larger γ can only lower λ̂); with
   `stop_at_first_choice` the γ run in increasing order and the larger γ are not run once a choice exists;
4. ε: within that γ, walk the passing ε from small to large over adjacent pairs whose λ̂ agree within
   `plateau_tol` (the plateau) and take the *smaller* ε of the last agreeing pair: the largest step that
   the next larger one confirms. Without such a pair, the smallest passing ε, flagged. Minibatch gradient
   noise raises the effective temperature by ≈ ε·nβ²·h/(4·batch) in a direction of curvature h, so
   beyond the plateau the estimate climbs with ε; below it the chains mix too slowly to settle.
5. nβ is n/ln n unless given; the check reports whether the chosen run's ε·nβ·(curvature proxy) is small:
   the MALA acceptance at the chosen point (the Metropolis test sees nβ through U = nβL + γ/2‖w−w*‖²).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.errors import ConfigError
from ontogeny.slt.llc import LLCResult, estimate_llc
from ontogeny.slt.sgld import BatchFn, LossFn, Params, SGLDConfig


class CalibrationConfig(BaseModel):
    """The calibration grid and its acceptance criteria (all PROPOSAL thresholds)."""

    model_config = ConfigDict(extra="forbid")

    lrs: list[float] = Field([1e-5, 3e-5, 1e-4, 3e-4, 1e-3], min_length=2, description="step sizes ε tried")
    gammas: list[float] = Field([1.0, 10.0, 100.0, 1000.0], min_length=1, description="localisations γ tried")
    num_chains: int = Field(4, ge=2, description="chains per grid point")
    num_draws: int = Field(400, ge=20, description="draws per chain at each grid point")
    min_acceptance: float = Field(0.9, gt=0, le=1, description="least MALA acceptance of a passing point")
    half_tol: float = Field(0.1, gt=0, description="largest |first-half − second-half| / |λ̂| and between-chain "
                            "std / |λ̂| of a passing point")
    max_below_frac: float = Field(0.5, gt=0, le=1, description="largest share of draws below L(w*)")
    plateau_tol: float = Field(0.1, gt=0, description="adjacent passing ε whose λ̂ differ by at most this "
                               "share form a plateau")
    max_extensions: int = Field(1, ge=0, description="PROPOSAL: a point that fails only because its trace had not "
                                "settled (half difference or burn-in at its limit) is rerun with twice the draws "
                                "(same seed: the first draws repeat, so it is the same chain run longer), up to "
                                "this many times; 0: never")
    stop_at_first_choice: bool = Field(True, description="run the γ in increasing order and stop after the first "
                                       "γ with two passing ε: rule 3 picks the smallest such γ, so the larger γ "
                                       "cannot change the choice (the table then lists only the points run); "
                                       "False runs the whole grid")


@dataclass
class Calibration:
    """The chosen settings, the estimate there, and one scored row per grid point (the calibration table)."""

    config: SGLDConfig  # the base config with the chosen lr, gamma and the resolved n_beta
    rows: list[dict[str, Any]]
    plateau: bool  # False: no two adjacent passing ε agreed; the smallest passing ε was taken
    estimate: LLCResult | None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The columns the LLC table records beside an estimate."""
        return {"calibrated": True, "calibrated_lr": self.config.lr, "calibrated_gamma": self.config.gamma,
                "calibration_plateau": self.plateau,
                "calibration_points_passed": sum(r["passed"] for r in self.rows),
                "calibration_points": len(self.rows)}


UNSETTLED = "unsettled"  # failure tag: the trace had not settled (more draws may cure it)


def failures(res: LLCResult, cal: CalibrationConfig) -> list[tuple[str, str]]:
    """The criteria one grid point's estimate fails, as (tag, words); tag UNSETTLED for a trace still moving."""
    fails = []
    if res.n_diverged:
        fails.append(("diverged", f"{res.n_diverged} chain(s) diverged"))
    if res.mala_acceptance is not None and res.mala_acceptance < cal.min_acceptance:
        fails.append(("mala", f"MALA acceptance {res.mala_acceptance:.3f} < {cal.min_acceptance:g}"))
    if any("burn-in at its limit" in w for w in res.warnings):
        fails.append((UNSETTLED, "trace still moving (burn-in at its limit)"))
    scale = cal.half_tol * max(abs(res.llc_mean), 1e-12)
    se = res.llc_std / max(len(res.llc_per_chain) - 1, 1) ** 0.5  # standard error of λ̂ over chains
    if abs(res.half_diff) > scale and abs(res.half_diff) > 2 * 2 * se:  # beyond tolerance and beyond noise
        fails.append((UNSETTLED, f"half difference {res.half_diff:.3g} > {cal.half_tol:.0%} of λ̂ and "
                      "> 4 standard errors"))
    if se > scale:
        fails.append(("spread", f"standard error over chains {se:.3g} > {cal.half_tol:.0%} of λ̂"))
    if min(res.llc_per_chain) < 0:
        fails.append(("negative", "negative chain estimate"))
    if res.below_init_frac > cal.max_below_frac:
        fails.append(("below", f"{res.below_init_frac:.0%} of draws below L(w*)"))
    return fails


def score_point(res: LLCResult, cal: CalibrationConfig) -> tuple[bool, str]:
    """(passed, the failed criteria in words) for one grid point's estimate."""
    fails = failures(res, cal)
    return not fails, "; ".join(t for _, t in fails) if fails else "passed"


def choose(rows: list[dict[str, Any]], plateau_tol: float) -> tuple[dict[str, Any] | None, bool]:
    """Pick the grid point by rules 3–4 of the module docstring; (row or None, plateau found)."""
    for gam in sorted({r["gamma"] for r in rows}):
        ok = sorted((r for r in rows if r["gamma"] == gam and r["passed"]), key=lambda r: r["lr"])
        if len(ok) < 2:
            continue
        pick = None
        for prev, cur in zip(ok, ok[1:]):
            if abs(cur["llc_mean"] - prev["llc_mean"]) <= plateau_tol * max(abs(prev["llc_mean"]), 1e-12):
                pick = prev
            elif pick is not None:
                break
        return (pick, True) if pick is not None else (ok[0], False)
    return None, False


def calibrate(loss_fn: LossFn, params0: Params, batches: BatchFn, base: SGLDConfig,
              cal: CalibrationConfig | None = None, masks: Mapping[str, torch.Tensor | None] | None = None,
              n_samples: int | None = None, on_point: Callable[[dict[str, Any]], None] | None = None) -> Calibration:
    """Run the grid, score every point and return the chosen settings (see the module docstring).

    The chosen config keeps `base`'s chains, draws and batch size and takes lr and gamma from the grid;
    `estimate` is the grid point's own (short) estimate. Raises ConfigError when no point passes.
    """
    cal = cal or CalibrationConfig()
    n_beta = base.resolved_n_beta(n_samples if n_samples is not None else getattr(batches, "n_samples", None))
    rows, results = [], {}
    for gam in sorted(cal.gammas) if cal.stop_at_first_choice else cal.gammas:
        if cal.stop_at_first_choice and choose(rows, cal.plateau_tol)[0] is not None:
            break  # a smaller γ already has two passing ε: rule 3 chooses it whatever the larger γ give
        for lr in cal.lrs:
            draws = cal.num_draws
            for attempt in range(cal.max_extensions + 1):
                cfg = base.model_copy(update={"lr": lr, "gamma": gam, "n_beta": n_beta, "mala": True,
                                              "num_chains": cal.num_chains, "num_draws": draws})
                res = estimate_llc(loss_fn, params0, batches, cfg, masks=masks)
                fails = failures(res, cal)
                if not fails or any(tag != UNSETTLED for tag, _ in fails) or attempt == cal.max_extensions:
                    break
                draws *= 2  # only "not settled yet": the same chain, run twice as long
            passed, reason = score_point(res, cal)
            row = {"gamma": gam, "lr": lr, "n_beta": n_beta, "num_draws": draws, "llc_mean": res.llc_mean,
                   "llc_std": res.llc_std,
                   "half_diff": res.half_diff, "burnin_draws": res.n_burnin_draws,
                   "mala_acceptance": res.mala_acceptance, "below_init_frac": res.below_init_frac,
                   "n_diverged": res.n_diverged, "passed": passed, "reason": reason, "chosen": False}
            rows.append(row)
            results[(gam, lr)] = res
            if on_point is not None:
                on_point(row)
    pick, plateau = choose(rows, cal.plateau_tol)
    if pick is None:
        raise ConfigError("SGLD calibration: no γ has two grid points passing every criterion; widen "
                          f"CalibrationConfig.lrs/gammas or take more draws (grid: {rows_brief(rows)})")
    pick["chosen"] = True
    msgs = [] if plateau else [f"calibration found no plateau in ε at γ = {pick['gamma']:g}: the estimate "
                               "still depends on the step size (minibatch-noise bias); took the smallest passing ε"]
    chosen = base.model_copy(update={"lr": pick["lr"], "gamma": pick["gamma"], "n_beta": n_beta})
    return Calibration(chosen, rows, plateau, results[(pick["gamma"], pick["lr"])], msgs)


def rows_brief(rows: list[dict[str, Any]]) -> str:
    return "; ".join(f"γ {r['gamma']:g} ε {r['lr']:g}: {r['reason']}" for r in rows)

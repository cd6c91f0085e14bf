"""SGLD on the localised tempered posterior, with chains batched by `torch.func.vmap`.

Samples p(w) ∝ exp(−nβ·L_n(w) − (γ/2)‖w − w*‖²) with the update (Welling & Teh 2011; devinterp's SGLD)
    Δw = −(ε/2)·(nβ·∇L̄_batch(w) + γ·(w − w*)) + √ε·σ·N(0, I),
masked to a parameter subset (one head, one layer) with the rest frozen at w*. All chains share one
minibatch stream (devinterp's `match_sampling_input_ids_across_chains`) and step together: the sampled
parameters are stacked on a leading chain axis and one vmapped `grad_and_value` does every chain's
forward/backward at once. `backend="loop"` runs the same update chain by chain (the plain reference).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.func import grad_and_value, vmap

from ontogeny import progress as _progress
from ontogeny.errors import ConfigError

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, Any], torch.Tensor]  # (all parameters, batch) -> mean loss (scalar)
ObservableFn = Callable[[Params], torch.Tensor]  # (all parameters) -> any fixed-shape tensor
BatchFn = Callable[[int], Any]  # step index -> minibatch (the same for every chain)


class SGLDConfig(BaseModel):
    """SGLD hyperparameters (names as in Baker et al. 2025 / devinterp: ε = lr, nβ, γ = localization).

    Defaults: nβ = n/ln n, and ε scaled so that ε·nβ matches Baker et al.'s (1e-3 × 30) on the default LLC
    token set; not calibrated on a language model here. `slt.calibrate` chooses ε and γ for a model and data.
    """

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(3e-5, gt=0, description="step size ε; the default keeps ε·nβ ≈ 0.03, the paper's 1e-3 × 30, "
                      "at nβ = n/ln n ≈ 900 (128 sequences × 63 tokens); choose it with slt.calibrate")
    n_beta: float | None = Field(None, gt=0, description="inverse temperature times sample size, nβ; None: "
                                 "n/ln n (Watanabe's WBIC temperature, devinterp's default_nbeta) with n the "
                                 "number of samples the loss averages over (predicted tokens for a language model)")
    gamma: float = Field(300.0, ge=0, description="localisation strength γ of the Gaussian around w*")
    num_chains: int = Field(4, ge=1, description="independent chains (batched with vmap)")
    num_draws: int = Field(200, ge=1, description="draws taken per chain (the detected burn-in is dropped from them)")
    num_burnin_steps: int = Field(0, ge=0, description="steps always discarded before the first draw "
                                  "(on top of the detected burn-in)")
    detect_burnin: bool = Field(True, description="drop the leading draws until the loss trace is stationary "
                                "(MSER truncation rule, White 1997) before estimating")
    max_burnin_frac: float = Field(0.5, gt=0, lt=1, description="the detected burn-in is searched within this "
                                   "share of the draws; a burn-in at the limit means the chains never settled")
    num_steps_bw_draws: int = Field(1, ge=1, description="SGLD steps between consecutive draws")
    batch_size: int = Field(64, ge=1, description="minibatch size for the gradient")
    num_init_loss_batches: int = Field(8, ge=1, description="batches averaged for L(w*) when init_loss='batches'")
    init_loss: Literal["paired", "batches"] = Field(
        "paired", description="L(w*): 'paired' evaluates it on every draw's own minibatch (removes the "
        "minibatch-noise bias nβ·(L_batches(w*) − L_n(w*))); 'batches' averages the first batches, as devinterp")
    noise_level: float = Field(1.0, ge=0, description="noise scale σ (1 for true SGLD)")
    seed: int = Field(0, description="seed of the noise and of the minibatch order")
    mala: bool = Field(False, description="also compute a MALA acceptance rate (one extra gradient per step)")
    divergence_factor: float = Field(10.0, gt=1, description="PROPOSAL: a chain has diverged when its loss is "
                                     "not finite or a kept draw's nβ·(L − L(w*)) exceeds the chains' stationary "
                                     "median by more than this many stationary spreads (inter-decile ranges)")
    below_init_frac: float = Field(0.5, gt=0, le=1, description="PROPOSAL: warn when more than this share "
                                   "of a chain's kept draws lie below the initial loss (w* is not a local minimum)")
    convergence_tol: float = Field(0.1, gt=0, description="PROPOSAL: warn when the between-chain std of the "
                                   "estimate or its first-half/second-half difference exceeds this share of |λ̂|")

    @property
    def num_steps(self) -> int:
        return self.num_burnin_steps + self.num_draws * self.num_steps_bw_draws

    def resolved_n_beta(self, n_samples: int | None) -> float:
        """nβ: the configured value, or n/ln n for `n_samples` = n (a clear error when neither is known)."""
        if self.n_beta is not None:
            return float(self.n_beta)
        if n_samples is None or n_samples < 2:
            raise ConfigError("SGLDConfig.n_beta is None (n/ln n) but the sample size n is not known: "
                              "pass n_samples or set n_beta")
        return default_n_beta(n_samples)


def default_n_beta(n: int) -> float:
    """n/ln n: the inverse temperature β = 1/ln n of Watanabe's WBIC (2013) times n."""
    return n / math.log(n)


@dataclass
class SGLDResult:
    """What a sampling run returns: loss traces, draws of each observable and diagnostics.

    Draw d (d = 1 … D) is taken at the parameters after `num_burnin_steps + d·num_steps_bw_draws` updates,
    so no draw is w* itself; the first `n_burnin_draws` draws are the detected burn-in (not used by estimates).
    """

    init_loss: float  # L(w*): mean over the draws' minibatches ('paired') or the first batches
    init_draw_loss_D: torch.Tensor | None  # L_batch(w*) on each draw's minibatch ('paired'), [draws]
    loss_trace_CS: torch.Tensor  # minibatch loss at every visited point w_0 = w*, w_1, …, [chains, steps + 1]
    draw_loss_CD: torch.Tensor  # minibatch loss at each draw, [chains, draws]
    observables: dict[str, torch.Tensor]  # name -> [chains, draws, ...]
    diverged_C: torch.Tensor  # bool [chains]
    below_init_frac_C: torch.Tensor  # share of kept draws below L(w*), [chains]
    mala_acceptance_C: torch.Tensor | None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    n_beta: float = float("nan")
    n_burnin_draws: int = 0  # detected burn-in: leading draws dropped from every estimate
    burnin_at_limit: bool = False  # the detected burn-in reached max_burnin_frac: chains never settled

    @property
    def draws_per_second(self) -> float:
        """Chain-draws per wall-clock second (chains × draws / time), the unit devinterp's speed is quoted in."""
        n = self.draw_loss_CD.numel()
        return n / self.seconds if self.seconds > 0 else float("nan")

    def excess_CD(self) -> torch.Tensor:
        """x_cd = nβ·(L_cd − L(w*)) for every draw (paired: against w*'s loss on the same minibatch)."""
        base = self.init_draw_loss_D if self.init_draw_loss_D is not None else torch.tensor(self.init_loss)
        return self.n_beta * (self.draw_loss_CD.double() - base.double())

    def kept(self, x_CD: torch.Tensor) -> torch.Tensor:
        """Drop the detected burn-in draws from a [chains, draws, ...] tensor."""
        return x_CD[:, self.n_burnin_draws:]


def _split(params0: Params, masks: Mapping[str, torch.Tensor | None] | None) -> tuple[Params, Params, Params]:
    """Split w* into (sampled, frozen) parts and float masks for the sampled part."""
    if masks is None:
        masks = {k: None for k in params0}
    unknown = [k for k in masks if k not in params0]
    if unknown:
        raise ConfigError(f"masks name parameters the model does not have: {unknown[:5]}")
    sampled = {k: params0[k].detach() for k in masks}
    frozen = {k: v.detach() for k, v in params0.items() if k not in masks}
    fmasks = {}
    for k, m in masks.items():
        if m is None:
            fmasks[k] = torch.ones_like(sampled[k])
        else:
            if m.shape != sampled[k].shape:
                raise ConfigError(f"mask for {k} has shape {tuple(m.shape)}, parameter {tuple(sampled[k].shape)}")
            fmasks[k] = m.to(sampled[k].dtype)
    if not any(bool(m.any()) for m in fmasks.values()):
        raise ConfigError("the parameter masks select no parameter to sample")
    return sampled, frozen, fmasks


def init_loss_of(loss_fn: LossFn, params0: Params, batches: BatchFn, n_batches: int) -> float:
    """L(w*) as the mean minibatch loss over the first `n_batches` of the stream."""
    with torch.no_grad():
        vals = [float(loss_fn(params0, batches(i))) for i in range(n_batches)]
    return sum(vals) / len(vals)


def sample(loss_fn: LossFn, params0: Params, batches: BatchFn, config: SGLDConfig,
           masks: Mapping[str, torch.Tensor | None] | None = None,
           observables: Mapping[str, ObservableFn] | None = None, init_loss: float | None = None,
           backend: Literal["vmap", "loop"] = "vmap",
           on_step: Callable[[int], None] | None = None, n_samples: int | None = None) -> SGLDResult:
    """Run `config.num_chains` SGLD chains from w* = params0 and record losses and observables per draw.

    `masks` maps each sampled parameter name to a boolean mask (None: the whole tensor); parameters not
    named stay frozen at w*. `observables` are evaluated on each chain's parameters at every draw.
    `n_samples` is the n of nβ = n/ln n when `config.n_beta` is None (default: `batches.n_samples`).
    """
    from ontogeny.slt.diagnostics import chain_checks, mser_truncation

    if backend not in ("vmap", "loop"):
        raise ConfigError(f"backend must be 'vmap' or 'loop', got {backend!r}")
    sampled0, frozen, fmasks = _split(params0, masks)
    observables = dict(observables or {})
    nb = config.resolved_n_beta(n_samples if n_samples is not None else getattr(batches, "n_samples", None))
    C, eps, gam, sig = config.num_chains, config.lr, config.gamma, config.noise_level
    paired = init_loss is None and config.init_loss == "paired"
    if init_loss is None and not paired:
        init_loss = init_loss_of(loss_fn, params0, batches, config.num_init_loss_batches)

    def loss_sampled(s: Params, fz: Params, batch: Any) -> torch.Tensor:
        return loss_fn({**fz, **s}, batch)

    def obs_sampled(name: str):
        fn = observables[name]
        return lambda s, fz: fn({**fz, **s})

    gv = grad_and_value(loss_sampled)
    if backend == "vmap":
        gv_all = vmap(gv, in_dims=(0, None, None))
        obs_all = {k: vmap(obs_sampled(k), in_dims=(0, None)) for k in observables}
    else:
        def gv_all(s_C, fz, batch):
            outs = [gv({k: v[c] for k, v in s_C.items()}, fz, batch) for c in range(C)]
            return ({k: torch.stack([o[0][k] for o in outs]) for k in s_C}, torch.stack([o[1] for o in outs]))
        def per_chain(f):
            return lambda s_C, fz: torch.stack([f({kk: v[c] for kk, v in s_C.items()}, fz) for c in range(C)])
        obs_all = {k: per_chain(obs_sampled(k)) for k in observables}

    gen = torch.Generator().manual_seed(config.seed)
    w0 = {k: v.unsqueeze(0) for k, v in sampled0.items()}
    w = {k: v.unsqueeze(0).repeat(C, *([1] * v.dim())).clone() for k, v in sampled0.items()}
    n_steps = config.num_steps
    trace = torch.empty(C, n_steps + 1)
    draws: list[torch.Tensor] = []
    init_draws: list[float] = []
    obs_draws: dict[str, list[torch.Tensor]] = {k: [] for k in observables}
    accept: list[torch.Tensor] = []
    sq = math.sqrt(eps) * sig
    burn, bw = config.num_burnin_steps, config.num_steps_bw_draws

    def potential_grad(w_: Params, g_: Params) -> Params:
        return {k: (nb * g_[k] + gam * (w_[k] - w0[k])) * fmasks[k] for k in w_}

    t0 = time.perf_counter()
    bar = _progress.start("SGLD", total=n_steps + 1, unit="steps")
    for step in range(n_steps + 1):  # point w_step, visited after `step` updates; the last one is not moved
        batch = batches(step)
        is_draw = step > burn and (step - burn) % bw == 0
        if step < n_steps:
            g, loss_C = gv_all(w, frozen, batch)
        else:
            with torch.no_grad():
                loss_C = vmap(loss_sampled, in_dims=(0, None, None))(w, frozen, batch) if backend == "vmap" else \
                    torch.stack([loss_sampled({k: v[c] for k, v in w.items()}, frozen, batch) for c in range(C)])
        trace[:, step] = loss_C.detach()
        bar.advance(1)
        if is_draw:
            draws.append(loss_C.detach())
            with torch.no_grad():
                if paired:
                    init_draws.append(float(loss_fn(params0, batch)))
                for k, f in obs_all.items():
                    obs_draws[k].append(f(w, frozen).detach())
        if step == n_steps:
            break
        gu = potential_grad(w, g)
        noise = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) * fmasks[k] for k, v in w.items()}
        w_new = {k: w[k] - 0.5 * eps * gu[k] + sq * noise[k] for k in w}
        if config.mala:
            g_new, loss_new_C = gv_all(w_new, frozen, batch)
            accept.append(_mala_acceptance(w, w_new, gu, potential_grad(w_new, g_new), loss_C, loss_new_C,
                                           w0, fmasks, nb, gam, eps, sig))
        w = {k: v.detach() for k, v in w_new.items()}
        if on_step is not None:
            on_step(step)
    seconds = time.perf_counter() - t0

    draw_CD = torch.stack(draws, dim=1)
    init_D = torch.tensor(init_draws, dtype=torch.float64) if paired else None
    if paired:
        init_loss = float(init_D.mean())
    obs_out = {k: torch.stack(v, dim=1) for k, v in obs_draws.items()}
    res = SGLDResult(init_loss, init_D, trace, draw_CD, obs_out, torch.zeros(C, dtype=torch.bool),
                     torch.zeros(C), None, [], seconds, nb)
    x_CD = res.excess_CD()
    finite = torch.isfinite(trace).all(dim=1)
    if config.detect_burnin and bool(finite.all()) and bool(torch.isfinite(x_CD).all()):
        res.n_burnin_draws = mser_truncation(x_CD.mean(dim=0), config.max_burnin_frac)
        limit = 5 * max(int(config.max_burnin_frac * (x_CD.shape[1] // 5)), 1)
        res.burnin_at_limit = x_CD.shape[1] >= 20 and res.n_burnin_draws >= limit
    # without a stationary stretch there is no stationary spread to compare with: only non-finite counts
    factor = float("inf") if res.burnin_at_limit else config.divergence_factor
    checks = chain_checks(x_CD, finite, res.n_burnin_draws, factor)
    res.diverged_C, res.below_init_frac_C = checks.diverged_C, checks.below_init_frac_C.float()
    msgs = []
    for c in range(C):
        if res.diverged_C[c]:
            msgs.append(f"chain {c} diverged (a loss not finite or nβ·(L − L*) above {checks.centre:.4g} + "
                        f"{config.divergence_factor:g}·{checks.spread:.3g}, the chains' stationary spread): "
                        "lower lr or raise gamma")
        elif res.below_init_frac_C[c] > config.below_init_frac:
            msgs.append(f"chain {c} spent {res.below_init_frac_C[c]:.0%} of its draws below the initial loss "
                        f"{init_loss:.4g}: w* is not a local minimum (train longer or raise gamma)")
    if res.burnin_at_limit:
        msgs.append(f"the loss trace is still moving after {res.n_burnin_draws} of {draw_CD.shape[1]} draws "
                    "(burn-in at its limit): take more draws or a larger lr")
    for m in msgs:
        warnings.warn(m, RuntimeWarning, stacklevel=2)
    res.warnings = msgs
    res.mala_acceptance_C = torch.stack(accept, dim=1).mean(dim=1) if accept else None
    return res


def _mala_acceptance(w: Params, w_new: Params, gu: Params, gu_new: Params, loss_C: torch.Tensor,
                     loss_new_C: torch.Tensor, w0: Params, fmasks: Params, nb: float, gam: float,
                     eps: float, sig: float) -> torch.Tensor:
    """Metropolis–Hastings acceptance min(1, e^{−U(w')+U(w)} q(w|w')/q(w'|w)) of each chain's SGLD step.

    U = nβ·L + (γ/2)‖w − w*‖² on the sampled coordinates; q is the Langevin proposal N(w − (ε/2)∇U, εσ²).
    Diagnostic only (no step is rejected), as devinterp's MalaAcceptanceRate; ≈0.9 is healthy.
    """
    def red(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(1).sum(dim=1)

    var = eps * sig * sig
    u = nb * loss_C + 0.5 * gam * sum(red(((w[k] - w0[k]) * fmasks[k]) ** 2) for k in w)
    u_new = nb * loss_new_C + 0.5 * gam * sum(red(((w_new[k] - w0[k]) * fmasks[k]) ** 2) for k in w)
    fwd = sum(red((w_new[k] - w[k] + 0.5 * eps * gu[k]) ** 2) for k in w) / (2 * var)
    bwd = sum(red((w[k] - w_new[k] + 0.5 * eps * gu_new[k]) ** 2) for k in w) / (2 * var)
    log_a = (u - u_new) + fwd - bwd
    return torch.exp(torch.clamp(log_a, max=0.0)).detach()


def shuffled_batches(data: tuple[torch.Tensor, ...] | torch.Tensor, batch_size: int, seed: int = 0,
                     n_samples: int | None = None) -> BatchFn:
    """Minibatch stream over rows of `data`: epoch after epoch of seeded permutations, step -> batch.

    The stream carries `n_samples` (default: the number of rows), the n of nβ = n/ln n; for token
    sequences pass the number of predicted tokens, since the loss is a per-token mean.
    """
    tensors = data if isinstance(data, tuple) else (data,)
    n = tensors[0].shape[0]
    if batch_size > n:
        raise ConfigError(f"batch_size {batch_size} exceeds the {n} rows of data")
    per_epoch = n // batch_size
    perms: dict[int, torch.Tensor] = {}

    def at(step: int):
        epoch, i = divmod(step, per_epoch)
        if epoch not in perms:
            perms.clear()  # keep one epoch's permutation: steps are asked for in order
            perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        idx = perms[epoch][i * batch_size:(i + 1) * batch_size]
        out = tuple(t[idx] for t in tensors)
        return out if isinstance(data, tuple) else out[0]
    at.n_samples = n if n_samples is None else n_samples
    return at

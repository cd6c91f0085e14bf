"""One generic trainer for any model that follows the `state.py` contract; `train_many` steps several
models on one pass over the data (each batch is read once and handed to every model).

Optimiser: Adam, lr warm-up then linear decay to `lr_end_fraction`, gradient clipping, sparsity
coefficient warm-up, dead-latent tracking (a latent is dead after `dead_tokens` tokens without firing),
optional input scaling to unit mean squared norm per dimension (SAELens `expected_average_only_in`),
folded into the weights at the end so the result takes raw activations. ATM is a policy (`atm.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ontogeny.dictionaries.atm import ATMConfig, ATMPolicy
from ontogeny.dictionaries.state import TrainState
from ontogeny import progress as _progress
from ontogeny.errors import ConfigError


class TrainConfig(BaseModel):
    """Optimisation settings of one dictionary (defaults: dictionary_learning / Gao et al.)."""

    model_config = ConfigDict(extra="forbid")

    lr: float | None = Field(None, gt=0, description="Adam lr; None = 2e-4 / sqrt(d_sae / 2^14)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas")
    lr_warmup_steps: int = Field(0, ge=0, description="linear lr warm-up")
    lr_end_fraction: float = Field(1.0, ge=0, le=1, description="lr decays linearly to this fraction by the end")
    sparsity_warmup_steps: int = Field(0, ge=0, description="sparsity coefficient ramps from 0 over these steps")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm (None: no clipping)")
    dead_tokens: int = Field(10_000_000, gt=0, description="tokens without firing after which a latent is dead")
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = Field("geometric_median")
    normalize: Literal["none", "expected_average_only_in"] = Field(
        "none", description="scale inputs so E||x||^2 = d_in during training; folded into the weights after")
    atm: ATMConfig | None = Field(None, description="adaptive temporal masking policy (PROPOSAL), or None")
    seed: int = Field(0, description="seed of the ATM masks")
    log_every: int = Field(10, gt=0, description="steps between recorded metric rows")


@dataclass
class TrainResult:
    """History rows (step, tokens, loss and the model's metrics) and the input scale that was folded."""

    history: list[dict[str, float]] = field(default_factory=list)
    scale: float = 1.0
    steps: int = 0
    tokens: int = 0

    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class Trainer:
    """Trains one model: owns its optimiser, schedules, dead-latent counters and policy."""

    def __init__(self, model: nn.Module, cfg: TrainConfig | None = None, total_steps: int | None = None):
        self.model = model
        self.cfg = cfg or TrainConfig()
        n_lat = int(model.n_latents)
        lr = self.cfg.lr if self.cfg.lr is not None else 2e-4 / math.sqrt(n_lat / 2 ** 14)
        params = [p for p in model.parameters() if p.requires_grad]
        fused = {"fused": True} if params and params[0].device.type in ("cpu", "cuda") else {}
        self.opt = torch.optim.Adam(params, lr=lr, betas=self.cfg.betas, **fused)
        self.base_lr = lr
        self.total_steps = total_steps
        device = params[0].device if params else torch.device("cpu")
        self.since_fired_F = torch.zeros(n_lat, dtype=torch.long, device=device)
        gen = torch.Generator(device=device).manual_seed(self.cfg.seed)
        policy = None
        if self.cfg.atm is not None:
            if total_steps is None:
                raise ConfigError("ATM needs the number of training steps (total_steps) for its warm-up")
            policy = ATMPolicy(self.cfg.atm, n_lat, total_steps, device=device)
        self.state = TrainState(step=0, total_steps=total_steps, policy=policy, generator=gen)
        self.result = TrainResult()
        self.scale: float | None = None if self.cfg.normalize != "none" else 1.0

    def _schedules(self) -> None:
        s, c = self.state.step, self.cfg
        lr = self.base_lr
        if c.lr_warmup_steps and s < c.lr_warmup_steps:
            lr *= (s + 1) / c.lr_warmup_steps
        elif self.total_steps and c.lr_end_fraction < 1:
            frac = min(1.0, max(0.0, (s - c.lr_warmup_steps) / max(1, self.total_steps - c.lr_warmup_steps)))
            lr *= 1 - (1 - c.lr_end_fraction) * frac
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.state.sparsity_scale = min(1.0, (s + 1) / c.sparsity_warmup_steps) if c.sparsity_warmup_steps else 1.0
        if isinstance(self.state.policy, ATMPolicy):
            self.state.sparsity_scale *= self.state.policy.sparsity_scale(s)

    def step(self, x: torch.Tensor) -> dict[str, float] | None:
        """One optimiser step on batch `x` (batch first, any trailing shape). Returns a row when logged."""
        model, cfg = self.model, self.cfg
        if self.scale is None:
            self.scale = float(math.sqrt(x[0].numel() / x.float().pow(2).flatten(1).sum(1).mean().clamp_min(1e-12)))
        if self.scale != 1.0:
            x = x * self.scale
        if self.state.step == 0 and hasattr(model, "initialize_from_batch"):
            model.initialize_from_batch(x, cfg.b_dec_init)
        self._schedules()
        self.state.dead_F = self.since_fired_F >= cfg.dead_tokens
        out = model.training_loss(x, self.state)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if hasattr(model, "before_optimizer_step"):
            model.before_optimizer_step()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.opt.step()
        if hasattr(model, "after_optimizer_step"):
            model.after_optimizer_step()
        n_tok = x.shape[0]
        if out.fired_F is not None:
            self.since_fired_F += n_tok
            self.since_fired_F[out.fired_F > 0] = 0
        self.state.step += 1
        self.result.steps = self.state.step
        self.result.tokens += n_tok
        if self.state.step % cfg.log_every == 0 or self.state.step == self.total_steps:
            row = {"step": self.state.step, "tokens": self.result.tokens, "loss": float(out.loss.detach())}
            row.update({k: float(v) for k, v in out.metrics.items()})
            row["dead_frac"] = float((self.since_fired_F >= cfg.dead_tokens).float().mean())
            if self.state.policy is not None:
                row.update(self.state.policy.metrics())
            self.result.history.append(row)
            return row
        return None

    def finish(self) -> TrainResult:
        """Fold the input scale into the weights (so the model takes raw activations) and return the result."""
        if self.scale not in (None, 1.0) and hasattr(self.model, "fold_input_scale"):
            self.model.fold_input_scale(self.scale)
        self.result.scale = self.scale or 1.0
        self.model.eval()
        return self.result


Batch = torch.Tensor | Sequence[torch.Tensor]


def train_many(models: Sequence[nn.Module], data: Iterable[Batch], cfgs: TrainConfig | Sequence[TrainConfig] | None = None,
               total_steps: int | None = None, on_step: Callable[[int, list[dict | None]], Any] | None = None,
               ) -> list[TrainResult]:
    """Train several models in one pass: each item of `data` is one tensor (every model gets it) or a
    sequence with one tensor per model. Stops when the data ends or after `total_steps`."""
    if cfgs is None or isinstance(cfgs, TrainConfig):
        cfgs = [cfgs or TrainConfig()] * len(models)
    if len(cfgs) != len(models):
        raise ConfigError(f"{len(models)} models but {len(cfgs)} train configs")
    if total_steps is None and hasattr(data, "__len__"):
        total_steps = len(data)  # type: ignore[arg-type]
    for m in models:
        m.train()
    trainers = [Trainer(m, c, total_steps) for m, c in zip(models, cfgs, strict=True)]
    bar = _progress.start(f"dictionary training ({len(models)} dictionaries)", total=total_steps, unit="steps")
    for i, batch in enumerate(data):
        if total_steps is not None and i >= total_steps:
            break
        xs = [batch] * len(models) if isinstance(batch, torch.Tensor) else list(batch)
        if len(xs) != len(models):
            raise ConfigError(f"a data item holds {len(xs)} tensors for {len(models)} models")
        rows = [t.step(x) for t, x in zip(trainers, xs, strict=True)]
        bar.advance(1)
        if on_step is not None:
            on_step(i + 1, rows)
    return [t.finish() for t in trainers]


def train(model: nn.Module, data: Iterable[torch.Tensor], cfg: TrainConfig | None = None,
          total_steps: int | None = None, on_step: Callable[[int, list[dict | None]], Any] | None = None,
          ) -> TrainResult:
    """Train one model on an iterator of batches (see `train_many`)."""
    return train_many([model], data, [cfg or TrainConfig()], total_steps, on_step)[0]

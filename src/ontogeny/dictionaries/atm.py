"""Adaptive temporal masking (ATM; Li & Ren 2025, arXiv 2510.08855) as a trainer policy. PROPOSAL.

The paper's formula is not public; this implements the proposal of shared/research/
seeds-susceptibility-atm.md §4.2, every constant a parameter. Per step, on pre-mask codes a [N, F]:

  mag_i  = sum_n a_ni / max(1, #{n: a_ni > 0})        mean activation when active
  freq_i = #{n: a_ni > 0} / N                          firing frequency
  rec_i  = (1/N) sum_n (2 a_ni <d_i, e_n> + a_ni^2 ||d_i||^2)   MSE increase if latent i were ablated
  m, f, r <- rho * (m, f, r) + (1 - rho) * (mag, freq, max(rec, 0))          (EMAs, first step: copied)
  s_i    = w_m m_i/mean(m) + w_f f_i/mean(f) + w_r r_i/mean(r)               (scale-free importance)
  tau    = mean(s) - k_std * std(s)                                          (statistical threshold)
  p_i    = ramp(t) * clip((tau - s_i) / tau, 0, 1) for s_i < tau, else 0    (mask probability)
  M_ni   ~ Bernoulli(1 - p_i) during training, M = 1 at inference
  ramp(t) = 0 before warmup_fraction * T, then linear to 1 over ramp_fraction * T.

The sparsity coefficient is also warmed up linearly over `sparsity_warmup_fraction * T`.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.dictionaries.state import TrainState


class ATMConfig(BaseModel):
    """Constants of the ATM proposal (§4.2 defaults)."""

    model_config = ConfigDict(extra="forbid")

    rho: float = Field(0.99, ge=0, lt=1, description="EMA decay of magnitude, frequency and contribution")
    k_std: float = Field(1.0, description="threshold tau = mean(s) - k_std * std(s)")
    w_magnitude: float = Field(1 / 3, ge=0, description="weight of the magnitude term in s")
    w_frequency: float = Field(1 / 3, ge=0, description="weight of the frequency term in s")
    w_contribution: float = Field(1 / 3, ge=0, description="weight of the reconstruction-contribution term")
    warmup_fraction: float = Field(0.1, ge=0, le=1, description="no masking before this share of training")
    ramp_fraction: float = Field(0.1, ge=0, le=1, description="mask probabilities ramp to full over this share")
    sparsity_warmup_fraction: float = Field(0.05, ge=0, le=1, description="L1 coefficient warm-up share")


class ATMPolicy:
    """Running importance statistics and the probabilistic mask they imply (see module docstring)."""

    def __init__(self, cfg: ATMConfig, n_latents: int, total_steps: int, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.total_steps = max(1, total_steps)
        self.mag_F = torch.zeros(n_latents, device=device)
        self.freq_F = torch.zeros(n_latents, device=device)
        self.rec_F = torch.zeros(n_latents, device=device)
        self.n_obs = 0
        self._last: dict[str, float] = {}

    def ramp(self, step: int) -> float:
        """0 during warm-up, then linear to 1 over the ramp."""
        start = self.cfg.warmup_fraction * self.total_steps
        span = self.cfg.ramp_fraction * self.total_steps
        if step < start:
            return 0.0
        return 1.0 if span <= 0 else min(1.0, (step - start) / span)

    def sparsity_scale(self, step: int) -> float:
        span = self.cfg.sparsity_warmup_fraction * self.total_steps
        return 1.0 if span <= 0 else min(1.0, (step + 1) / span)

    def importance(self) -> torch.Tensor:
        """Scale-free importance s_F (each EMA divided by its mean over latents)."""
        c = self.cfg

        def norm(t: torch.Tensor) -> torch.Tensor:
            m = t.mean()
            return t / m if m > 0 else torch.zeros_like(t)

        total = c.w_magnitude + c.w_frequency + c.w_contribution
        s = c.w_magnitude * norm(self.mag_F) + c.w_frequency * norm(self.freq_F) + c.w_contribution * norm(self.rec_F)
        return s / total if total > 0 else s

    def mask_probability(self, step: int) -> torch.Tensor:
        """p_F: probability that each latent is masked at this step."""
        p = torch.zeros_like(self.mag_F)
        r = self.ramp(step)
        if r == 0.0 or self.n_obs == 0:
            return p
        s = self.importance()
        tau = s.mean() - self.cfg.k_std * s.std()
        if tau <= 0:
            return p
        below = s < tau
        p[below] = r * ((tau - s[below]) / tau).clamp(0, 1)
        return p

    def mask(self, vals_N: torch.Tensor, cols_N: torch.Tensor, state: TrainState) -> torch.Tensor:
        p_F = self.mask_probability(state.step)
        self._last = {"atm_mask_rate": float(p_F.mean()), "atm_masked_latents": float((p_F > 0).float().mean())}
        if not bool((p_F > 0).any()):
            return vals_N
        u = torch.rand(vals_N.shape, generator=state.generator, device=vals_N.device)
        return vals_N * (u >= p_F[cols_N]).to(vals_N.dtype)

    @torch.no_grad()
    def observe(self, vals_N, cols_N, contrib_N, n_rows, state) -> None:
        F = self.mag_F.numel()
        active = vals_N > 0
        count = torch.bincount(cols_N[active], minlength=F).float()
        mag = torch.bincount(cols_N[active], weights=vals_N[active].float(), minlength=F) / count.clamp_min(1)
        freq = count / n_rows
        rec = (torch.bincount(cols_N, weights=contrib_N.float(), minlength=F) / n_rows).clamp_min(0)
        if self.n_obs == 0:
            self.mag_F.copy_(mag), self.freq_F.copy_(freq), self.rec_F.copy_(rec)
        else:
            rho = self.cfg.rho
            for ema, new in ((self.mag_F, mag), (self.freq_F, freq), (self.rec_F, rec)):
                ema.mul_(rho).add_((1 - rho) * new)
        self.n_obs += 1

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

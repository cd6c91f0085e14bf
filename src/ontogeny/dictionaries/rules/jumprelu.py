"""`jumprelu`: a = pre * H(pre - theta_i), theta_i = exp(log_theta_i), an L0 penalty whose theta-gradient
is straight-through with the rectangle kernel K(u) = 1[|u| < 1/2] (Rajamanoharan et al. 2024, arXiv
2407.14435; SAELens "step" mode):

    df/dtheta = -(theta/eps) K((pre - theta)/eps),   dH/dtheta = -(1/eps) K((pre - theta)/eps),

and pre gets no gradient through H. SAELens architecture "jumprelu" with tensor `threshold`.

Defaults are for ontogeny's input scale, E||x||^2 = d_in (`TrainConfig.normalize` / `stream.normalize`:
each coordinate at unit RMS), not the paper's E||x||^2 = 1 (each coordinate at 1/sqrt(d_in)):
- bandwidth: the paper's epsilon = 0.001 carried to that scale, 0.001 sqrt(d_in) (`JumpReLURule.bandwidth`);
- initial threshold 0.5: theta is trained as log theta, so Adam moves it by about a factor exp(lr) per
  step and its start must be near the pre-activations' scale. With unit decoder rows and W_enc = W_dec^T
  a pre-activation starts with spread sqrt(E||x||^2 / d_in) = 1, so 0.5 is half of it. Measured on
  planted data (docs/dictionaries.md, "jumprelu defaults"): from 0.001 or 0.001 sqrt(d_in) the code stays
  dense (L0 125-316 after 1,500 steps at lr 4e-3); from 0.5 it reaches L0 ~8-10 in 75-100 steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import BaseModel, Field
from torch import nn

from ontogeny.dictionaries.rules.base import Rule
from ontogeny.dictionaries.sparse import flat_above, gather


class JumpReLUParams(BaseModel):
    l0_coefficient: float = Field(1.0, ge=0, description="jumprelu: weight of the (straight-through) L0")
    jumprelu_bandwidth: float | None = Field(
        None, gt=0, description="jumprelu: STE rectangle-kernel width epsilon (None: 0.001 sqrt(d_in), the "
                                "paper's 0.001 at E||x||^2 = 1 carried to ontogeny's E||x||^2 = d_in)")
    jumprelu_init_threshold: float = Field(
        0.5, gt=0, description="jumprelu: initial threshold theta, for inputs at E||x||^2 = d_in (half the "
                               "spread of the pre-activations at initialisation)")


class _JumpReLU(torch.autograd.Function):
    """`f = pre * H(pre - theta)`: exact gradient in pre; in theta, -(theta/eps) K((pre-theta)/eps)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        in_band = ((pre - theta).abs() < eps / 2).to(g.dtype)
        g_pre = g * (pre > theta)
        g_theta = -(theta / eps) * in_band * g
        return g_pre, _sum_to(g_theta, theta.shape), None


class _Step(torch.autograd.Function):
    """`H(pre - theta)`: no gradient in pre; in theta, -(1/eps) K((pre-theta)/eps) (rectangle kernel)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        in_band = ((pre - theta).abs() < eps / 2).to(g.dtype)
        return None, _sum_to(-(1.0 / eps) * in_band * g, theta.shape), None


class _JumpReLUL0(torch.autograd.Function):
    """`_JumpReLU` and `_Step` on one dense [B, F] matrix at once: (codes, sum of H(pre - theta)).

    One difference d = pre - theta gives both outputs, and the backward forms the rectangle-kernel band
    once: dL/dtheta_i = -(1/eps) sum_b K_bi (theta_i g_codes_bi + g_l0). The step and the band are float
    0/1 matrices (sign of d, clamped), not bool ones: on the CPU a bool comparison, a float-by-bool
    product or a `where` each cost 3-15x a float pass. The same values and gradients as the two
    functions applied separately (`tests/dictionaries/test_rules.py`)."""

    @staticmethod
    def forward(ctx, pre_BF, theta_F, eps):
        d_BF = pre_BF - theta_F
        step_BF = torch.sign(d_BF).clamp_(min=0)  # H(pre - theta) with H(0) = 0, i.e. pre > theta
        ctx.save_for_backward(d_BF, theta_F, step_BF)
        ctx.eps = eps
        return pre_BF * step_BF, step_BF.sum()

    @staticmethod
    def backward(ctx, g_codes_BF, g_l0):
        d_BF, theta_F, step_BF = ctx.saved_tensors
        eps = ctx.eps
        if g_codes_BF is None:
            g_codes_BF = torch.zeros_like(d_BF)
        g_pre = g_codes_BF * step_BF if ctx.needs_input_grad[0] else None
        g_theta = None
        if ctx.needs_input_grad[1]:
            band_BF = d_BF.abs().sub_(eps / 2).neg_().sign_().clamp_(min=0)  # K: 1 where |d| < eps/2
            g_theta = theta_F * (g_codes_BF * band_BF).sum(0)
            if g_l0 is not None:
                g_theta = g_theta + g_l0 * band_BF.sum(0)
            g_theta = g_theta * (-1.0 / eps)
        return g_pre, g_theta, None


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to `shape` (leading axes)."""
    while t.dim() > len(shape):
        t = t.sum(0)
    return t


class JumpReLURule(Rule):
    """`a = pre * H(pre - theta_i)` with a learnt per-latent threshold and an L0 penalty."""

    name = "jumprelu"
    params = (JumpReLUParams,)
    density_dependent = True
    saelens_architecture = "jumprelu"
    saelens_reads = ("jumprelu",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.log_threshold_F = nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.jumprelu_init_threshold)))

    @property
    def bandwidth(self) -> float:
        """STE kernel width epsilon: `jumprelu_bandwidth`, or 0.001 sqrt(d_in) when that is None."""
        eps = self.cfg.jumprelu_bandwidth
        return eps if eps is not None else 0.001 * math.sqrt(self.cfg.d_in)

    def coefficient(self) -> float:
        return self.cfg.l0_coefficient

    def forward(self, pre_BF):
        return _JumpReLU.apply(pre_BF, self.log_threshold_F.exp(), self.bandwidth)

    def select(self, pre_BF):
        # entries in the lower half of the STE band carry threshold gradient, so they are selected too
        low = self.log_threshold_F.detach().exp() - self.bandwidth / 2
        return flat_above(pre_BF, low)

    def values(self, pre_N, cols_N):
        return _JumpReLU.apply(pre_N, gather(self.log_threshold_F.exp(), cols_N), self.bandwidth)

    def penalty(self, codes_N, pre_N, cols_N, dec_norm_F, n_rows):
        theta = self.log_threshold_F.exp()
        theta = theta if cols_N is None else gather(theta, cols_N)
        return _Step.apply(pre_N, theta, self.bandwidth).sum() / n_rows

    def dense_codes_and_penalty(self, pre_BF, dec_norm_F, n_rows):
        codes_BF, l0 = _JumpReLUL0.apply(pre_BF, self.log_threshold_F.exp(), self.bandwidth)
        return codes_BF, l0 / n_rows

    @property
    def threshold_F(self):
        return self.log_threshold_F.detach().exp()

    def load_threshold(self, threshold_F):
        with torch.no_grad():
            self.log_threshold_F.copy_(threshold_F.float().clamp_min(1e-12).log())

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        return {"threshold": self.threshold_F}

    @classmethod
    def saelens_tensor_shapes(cls, cfg) -> dict[str, tuple[int, ...]]:
        return {"threshold": (cfg.d_sae,)}

    def load_saelens(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        self.load_threshold(tensors["threshold"])

"""Activation rules: map pre-activations [B, F] to sparse codes, whatever produced the pre-activations.

Each rule exists twice, as the STYLE asks: `forward(pre_BF)` is the plain dense reference, and the pair
`select(pre_BF) -> flat indices` + `values(pre_N, cols_N)` is the sparse form the fast trainer uses (only
the selected entries can be non-zero, so only they carry gradient). A crosscoder, whose encoder sums
over K checkpoints, hands its own pre-activations to the same rules.

| rule      | codes                                   | penalty (per token, before its coefficient)   |
|-----------|-----------------------------------------|-----------------------------------------------|
| relu      | ReLU(pre)                               | sum_i a_i * ||d_i||  (decoder-norm-weighted L1)|
| topk      | top-k of ReLU(pre) per token            | none (aux-k on dead latents, in the model)    |
| batchtopk | top-(k*B) of ReLU(pre) over the batch;  | none (aux-k)                                  |
|           | inference: pre * 1[pre > theta], theta  |                                               |
|           | an EMA of the smallest kept activation  |                                               |
| jumprelu  | pre * H(pre - theta_i), STE on theta    | sum_i H(pre_i - theta_i)  (L0, STE on theta)  |
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.sparse import gather


class Rule(nn.Module):
    """Base class: a rule turns pre-activations into codes and says what sparsity penalty it pays."""

    name: ClassVar[str] = ""
    uses_aux_k: ClassVar[bool] = False

    def __init__(self, cfg: DictionaryConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, pre_BF: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def select(self, pre_BF: torch.Tensor) -> torch.Tensor:
        """Flat indices (row * F + col, rows ascending) of the entries that may be non-zero."""
        return torch.nonzero(pre_BF.detach().reshape(-1) > 0, as_tuple=True)[0]

    def values(self, pre_N: torch.Tensor, cols_N: torch.Tensor) -> torch.Tensor:
        """Codes at selected entries, from their pre-activations (differentiable)."""
        return torch.relu(pre_N)

    def penalty(self, codes_N: torch.Tensor, pre_N: torch.Tensor, cols_N: torch.Tensor,
                dec_norm_F: torch.Tensor, n_rows: int) -> torch.Tensor:
        """Sparsity penalty averaged over tokens; codes/pre may be dense [B, F] (cols None) or flat."""
        return codes_N.new_zeros(())

    @torch.no_grad()
    def update(self, codes_N: torch.Tensor, step: int) -> None:
        """Update running state (inference threshold) after a training step."""

    @property
    def threshold_F(self) -> torch.Tensor | None:
        """Per-latent inference threshold saved as SAELens `threshold`, or None."""
        return None

    def load_threshold(self, threshold_F: torch.Tensor) -> None:
        raise ValueError(f"rule {self.name!r} has no threshold")


class ReLURule(Rule):
    """`a = ReLU(pre)` with the decoder-norm-weighted L1 penalty `sum_i a_i ||d_i||` (Anthropic, Apr 2024)."""

    name = "relu"

    def forward(self, pre_BF):
        return torch.relu(pre_BF)

    def penalty(self, codes_N, pre_N, cols_N, dec_norm_F, n_rows):
        w = dec_norm_F if cols_N is None else gather(dec_norm_F, cols_N)
        return (codes_N.abs() * w).sum() / n_rows


class TopKRule(Rule):
    """`a = TopK_k(ReLU(pre))` per token (Gao et al. 2024, arXiv 2406.04093); dead latents get aux-k."""

    name = "topk"
    uses_aux_k = True

    def forward(self, pre_BF):
        vals, idx = torch.relu(pre_BF).topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre_BF).scatter(-1, idx, vals)

    def select(self, pre_BF):
        # top-k of pre equals top-k of ReLU(pre) wherever it matters: a negative pick gets code 0.
        B, F = pre_BF.shape
        idx = pre_BF.detach().topk(self.cfg.k, dim=-1, sorted=False).indices
        return (idx + torch.arange(B, device=pre_BF.device)[:, None] * F).reshape(-1)


class BatchTopKRule(Rule):
    """Keep the k*B largest ReLU(pre) of the batch (Bussmann et al. 2024, arXiv 2412.06410).

    Inference uses one threshold theta (an EMA, decay `threshold_beta`, of the smallest kept activation per
    batch from step `threshold_start_step`): `a = pre * 1[pre > theta]`, saved as a per-latent threshold,
    as SAELens saves BatchTopK as JumpReLU. Before theta exists, inference falls back to batch top-k.
    """

    name = "batchtopk"
    uses_aux_k = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("theta", torch.tensor(-1.0))
        self._gen: torch.Generator | None = None

    def forward(self, pre_BF):
        if not self.training and self.theta >= 0:
            return pre_BF * (pre_BF > self.theta)
        flat = torch.relu(pre_BF).reshape(-1)
        n = min(self.cfg.k * pre_BF.shape[0], flat.numel())
        vals, idx = flat.topk(n, sorted=False)
        return torch.zeros_like(flat).scatter(0, idx, vals).view_as(pre_BF)

    def select(self, pre_BF):
        if not self.training and self.theta >= 0:
            return torch.nonzero(pre_BF.detach().reshape(-1) > self.theta, as_tuple=True)[0]
        flat = pre_BF.detach().reshape(-1)
        n = min(self.cfg.k * pre_BF.shape[0], flat.numel())
        return batch_topk_indices(flat, n, self._gen)

    @torch.no_grad()
    def update(self, codes_N, step):
        pos = codes_N[codes_N > 0]
        if step < self.cfg.threshold_start_step or pos.numel() == 0:
            return
        low = pos.min()
        if self.theta < 0:
            self.theta.copy_(low)
        else:
            self.theta.mul_(self.cfg.threshold_beta).add_((1 - self.cfg.threshold_beta) * low)

    @property
    def threshold_F(self):
        if self.theta < 0:
            return None
        return self.theta.expand(self.cfg.d_sae).clone()

    def load_threshold(self, threshold_F):
        self.theta.copy_(threshold_F.float().mean())


def batch_topk_indices(flat_M: torch.Tensor, n: int, generator: torch.Generator | None = None,
                       n_sample: int = 1 << 16, margin: float = 1.5) -> torch.Tensor:
    """Sorted flat indices of the n largest entries (exact), without a top-n over all M entries.

    A random sample's quantile gives a threshold below which about `margin * n` entries lie above; the
    exact top-n is taken among those candidates (falling back to a full top-n if too few pass).
    """
    M = flat_M.numel()
    if n * 8 >= M or M <= n_sample:
        return flat_M.topk(n, sorted=False).indices.sort().values
    if generator is None or generator.device != flat_M.device:
        generator = torch.Generator(device=flat_M.device).manual_seed(0)
    sample = flat_M[torch.randint(0, M, (n_sample,), generator=generator, device=flat_M.device)]
    q = max(0, n_sample - int(n_sample * margin * n / M) - 1)
    t = sample.kthvalue(q + 1).values
    cand = torch.nonzero(flat_M >= t, as_tuple=True)[0]
    if cand.numel() < n:
        return flat_M.topk(n, sorted=False).indices.sort().values
    keep = flat_M[cand].topk(n, sorted=False).indices
    return cand[keep].sort().values


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


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to `shape` (leading axes)."""
    while t.dim() > len(shape):
        t = t.sum(0)
    return t


class JumpReLURule(Rule):
    """`a = pre * H(pre - theta_i)`, theta_i = exp(log_theta_i), L0 penalty with a straight-through
    estimator of its theta-gradient (Rajamanoharan et al. 2024, arXiv 2407.14435; SAELens "step" mode)."""

    name = "jumprelu"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.log_threshold_F = nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.jumprelu_init_threshold)))

    def forward(self, pre_BF):
        return _JumpReLU.apply(pre_BF, self.log_threshold_F.exp(), self.cfg.jumprelu_bandwidth)

    def select(self, pre_BF):
        # entries in the lower half of the STE band carry threshold gradient, so they are selected too
        low = self.log_threshold_F.detach().exp() - self.cfg.jumprelu_bandwidth / 2
        return torch.nonzero((pre_BF.detach() > low).reshape(-1), as_tuple=True)[0]

    def values(self, pre_N, cols_N):
        return _JumpReLU.apply(pre_N, gather(self.log_threshold_F.exp(), cols_N), self.cfg.jumprelu_bandwidth)

    def penalty(self, codes_N, pre_N, cols_N, dec_norm_F, n_rows):
        theta = self.log_threshold_F.exp()
        theta = theta if cols_N is None else gather(theta, cols_N)
        return _Step.apply(pre_N, theta, self.cfg.jumprelu_bandwidth).sum() / n_rows

    @property
    def threshold_F(self):
        return self.log_threshold_F.detach().exp()

    def load_threshold(self, threshold_F):
        with torch.no_grad():
            self.log_threshold_F.copy_(threshold_F.float().clamp_min(1e-12).log())


RULES: dict[str, type[Rule]] = {r.name: r for r in (ReLURule, TopKRule, BatchTopKRule, JumpReLURule)}


def make_rule(cfg: DictionaryConfig) -> Rule:
    """The rule named in the config, with its parameters and buffers."""
    return RULES[cfg.rule](cfg)

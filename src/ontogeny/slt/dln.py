"""Deep linear networks (DLNs) and their exact learning coefficient, the analytic check of the LLC.

A DLN f(x) = W_M ⋯ W_1 x has a known real log canonical threshold at a true parameter whose product
has rank r (Aoyagi 2024, "Consideration on the learning efficiency of multiple-layered neural networks
with linear units", Neural Networks 172; used to validate LLC estimates by Lau et al. 2023, arXiv
2308.12108). `aoyagi_lambda` evaluates that formula; `make_dln_task` plants a teacher with Gaussian data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations, pairwise
from typing import Literal

import torch
from torch import nn

from ontogeny.errors import ConfigError


def aoyagi_lambda(widths: list[int], rank: int) -> float:
    """Learning coefficient λ of a DLN with layer widths H_1 (input) … H_{M+1} (output) at a rank-r truth.

    With M_i = H_i − r, take the subset Σ (|Σ| = ℓ+1) of the smallest M_i such that max_Σ M < min_{∉Σ} M,
    Σ_Σ M ≥ ℓ·max_Σ M and Σ_Σ M < ℓ·min_{∉Σ} M; with s = Σ_Σ M, a = s − (⌈s/ℓ⌉ − 1)·ℓ:
        λ = (−r² + r(H_1 + H_{M+1}))/2 + a(ℓ − a)/(4ℓ) − ℓ(ℓ − 1)/4·(s/ℓ)² + ½·Σ_{i<j∈Σ} M_i M_j.
    A single layer (no hidden width) is regular: λ = H_1·H_2/2.
    """
    if len(widths) < 2 or any(h < 1 for h in widths):
        raise ConfigError(f"widths must list at least input and output sizes >= 1, got {widths}")
    if not 0 <= rank <= min(widths):
        raise ConfigError(f"rank {rank} must lie in [0, min(widths) = {min(widths)}]")
    if len(widths) == 2:
        return widths[0] * widths[1] / 2
    m_all = [h - rank for h in widths]
    order = sorted(range(len(m_all)), key=lambda i: m_all[i])
    for size in range(2, len(m_all) + 1):
        sub = [m_all[i] for i in order[:size]]
        rest = [m_all[i] for i in order[size:]]
        ell, s = size - 1, sum(sub)
        if rest and not max(sub) < min(rest):
            continue
        if not s >= ell * max(sub):
            continue
        if rest and not s < ell * min(rest):
            continue
        a = s - (math.ceil(s / ell) - 1) * ell
        pairs = sum(x * y for x, y in combinations(sub, 2))
        return ((-rank ** 2 + rank * (widths[0] + widths[-1])) / 2 + a * (ell - a) / (4 * ell)
                - ell * (ell - 1) / 4 * (s / ell) ** 2 + pairs / 2)
    raise ConfigError(f"no admissible subset in Aoyagi's formula for widths {widths}, rank {rank}")


def make_dln(widths: list[int]) -> nn.Sequential:
    """A bias-free linear network with the given widths (input first)."""
    return nn.Sequential(*[nn.Linear(a, b, bias=False) for a, b in pairwise(widths)])


def product_rank(model: nn.Sequential, tol: float = 1e-6) -> int:
    """Rank of the end-to-end matrix W_M ⋯ W_1."""
    prod = None
    for layer in model:
        prod = layer.weight if prod is None else layer.weight @ prod
    return int(torch.linalg.matrix_rank(prod.detach().double(), atol=tol))


@dataclass
class DLNTask:
    """A planted DLN regression task: teacher network, data, noise scale and the exact λ."""

    model: nn.Sequential
    x_ND: torch.Tensor
    y_NO: torch.Tensor
    sigma: float
    rank: int
    lam: float

    @property
    def n(self) -> int:
        return self.x_ND.shape[0]

    def params(self) -> dict[str, torch.Tensor]:
        """The teacher's weights (the true parameter w0), detached."""
        return {k: v.detach() for k, v in self.model.named_parameters()}

    def full_loss(self, params: dict[str, torch.Tensor]) -> float:
        """L_n(w) on all n samples."""
        with torch.no_grad():
            return float(self.loss_fn(params, (self.x_ND, self.y_NO)))

    def loss_fn(self, params: dict[str, torch.Tensor], batch) -> torch.Tensor:
        """Gaussian negative log-likelihood per sample (up to a constant): ‖y − f(x)‖²/(2σ²), batch mean."""
        x, y = batch
        pred = torch.func.functional_call(self.model, params, (x,))
        return ((y - pred) ** 2).sum(dim=-1).mean() / (2 * self.sigma ** 2)


def make_dln_task(widths: list[int], rank: int | None = None, n: int = 10_000, sigma: float = 1.0,
                  seed: int = 0, teacher: Literal["kaiming", "conditioned"] = "kaiming") -> DLNTask:
    """Teacher DLN with its product cut to `rank` (None: full), and n Gaussian samples.

    `teacher="kaiming"`: PyTorch's default (Kaiming-uniform) weights, then the first layer's rows beyond
    `rank` zeroed, so the teacher (the sampling centre w*) is itself a point whose product has that rank.
    Deep products of such weights have tiny singular values (e.g. 0.002 for [4, 7, 6, 5, 4] at rank 3),
    below the posterior's resolution √(ln n / n), so the data see a lower rank than the one planted.
    `teacher="conditioned"`: orthogonal layers, then the first layer replaced by pinv(W_M⋯W_2)·U_r V_rᵀ, with
    U_r the top-r left singular vectors of W_M⋯W_2 and V_r r orthonormal input directions, so that the
    product is U_r V_rᵀ: every nonzero singular value is 1, and the planted rank is the rank the data resolve.
    """
    if teacher not in ("kaiming", "conditioned"):
        raise ConfigError(f"teacher must be 'kaiming' or 'conditioned', got {teacher!r}")
    torch.manual_seed(seed)
    model = make_dln(widths)
    if rank is not None and not 0 <= rank <= min(widths):
        raise ConfigError(f"rank {rank} must lie in [0, {min(widths)}]")
    with torch.no_grad():
        if teacher == "conditioned":
            for layer in model:
                nn.init.orthogonal_(layer.weight)
            r = min(widths) if rank is None else rank
            rest = None
            for layer in list(model)[1:]:
                rest = layer.weight if rest is None else layer.weight @ rest
            u, _, vh = torch.linalg.svd((model[0].weight if rest is None else rest).double())
            v_rD = torch.linalg.svd(model[0].weight.double())[2][:r]  # r orthonormal input directions
            # output directions: the top-r left singular vectors of W_M⋯W_2, so the solve is well-conditioned
            first = u[:, :r] @ v_rD if rest is None else torch.linalg.pinv(rest.double()) @ (u[:, :r] @ v_rD)
            model[0].weight.copy_(first.to(model[0].weight.dtype))
        elif rank is not None:
            model[0].weight[rank:] = 0.0
    r = product_rank(model)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, widths[0], generator=gen)
    with torch.no_grad():
        y = model(x) + sigma * torch.randn(n, widths[-1], generator=gen)
    return DLNTask(model, x, y, sigma, r, aoyagi_lambda(widths, r))


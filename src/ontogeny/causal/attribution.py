"""Indirect effects of crosscoder latents by integrated gradients, and RelIE across checkpoints.

Bayazit et al. 2025 ("Crosscoding Through Time", after Marks et al.'s feature circuits): the stacked
activations of all K checkpoints on a prompt are encoded jointly into one latent vector a, each
checkpoint m keeps its own error term eps_m = x_m - xhat_m, and the effect of latent i on model m's
metric mu_m is integrated along the straight path from a^clean to a^patch (latents and error together):

    IE_m(i) = E_{pairs, tokens}[ (a_i^patch - a_i^clean) * (1/S) sum_{k<S} d mu_m / d a_i |_{a^clean + (k/S)(a^patch - a^clean)} ]

with S = 10 steps, xhat_m(a) + eps spliced at every position, and a^patch = 0 (zero-ablation IG, as
for BLiMP: no patch prompt). The error node's effect is reported beside the latents. Per-token effects
with |IE| <= node_threshold (0.1) are zeroed before averaging (the authors' `get_nodes`).
mu_m = logit(wrong) - logit(correct) at the last prefix position.

Noise floor (a PROPOSAL): `n_null` null latents reuse the codes a_j of randomly chosen latents but decode
along random unit directions r_{j,m} scaled to ||d_{j,m}||, so their effect is
IE^null_m(j) = E[-a_j <g_m, r_{j,m}>] with g_m the path-averaged gradient of mu_m at the site (thresholded
and averaged like the latents). `Effects.noise_floor(q)` is the q-quantile of sum_m |IE^null_m|; a latent
whose summed |IE| is at or below it has no effect distinguishable from a random direction's.
RelIE (|IE_m| / sum_m' |IE_m'|) lives beside RelDec in `ontogeny.crosscoding.reldec.rel_ie`, so that
causal/ does not import crosscoding/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ontogeny.causal.tasks import PairBatch
from ontogeny.errors import ConfigError
from ontogeny.series.sites import capture, patched


class IGConfig(BaseModel):
    """Integrated-gradient settings (defaults: the authors' code)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=1, description="interpolation steps of the Riemann sum")
    node_threshold: float = Field(0.1, ge=0.0, description="per-token |IE| at or below this is zeroed")
    batch_size: int = Field(16, ge=1, description="prompts per forward pass (times `steps`)")
    n_null: int = Field(64, ge=0, description="random-direction null latents for the IE noise floor (0: none)")
    null_quantile: float = Field(0.95, ge=0.0, le=1.0, description="quantile of the null's summed |IE| used as floor")
    null_seed: int = Field(0, description="seed of the null latents' directions and codes")


@dataclass
class Effects:
    """Mean indirect effects: latents `ie_KF`, error node `ie_err_K`, clean metric per model `metric_K`,
    and the random-direction null latents `null_KR` (module docstring)."""

    ie_KF: np.ndarray
    ie_err_K: np.ndarray
    metric_K: np.ndarray
    accuracy_K: np.ndarray
    n_pairs: int
    n_tokens: int
    null_KR: np.ndarray | None = None

    def noise_floor(self, quantile: float = 0.95) -> float:
        """The `quantile` of the null latents' summed |IE| (0.0 when no null was run)."""
        if self.null_KR is None or self.null_KR.shape[1] == 0:
            return 0.0
        return float(np.quantile(np.abs(self.null_KR).sum(0), quantile))


def logit_diff(logits_BTV: torch.Tensor, last_B: torch.Tensor, correct_B: torch.Tensor,
               wrong_B: torch.Tensor) -> torch.Tensor:
    """mu = logit(wrong) - logit(correct) at each prompt's last position: [B]."""
    rows = torch.arange(logits_BTV.shape[0], device=logits_BTV.device)
    final_BV = logits_BTV[rows, last_B]
    return final_BV[rows, wrong_B] - final_BV[rows, correct_B]


def site_stack(models: Sequence[nn.Module], site: str, ids_BT: torch.Tensor) -> torch.Tensor:
    """Activations [B, T, K, D] of one site in each of K models on the same ids (hook_z flattened)."""
    acts = []
    for model in models:
        a = capture(model, ids_BT, [site])[site]
        acts.append(a.reshape(a.shape[0], a.shape[1], -1).float())
    return torch.stack(acts, dim=2)


def _splice(site_value: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(act: torch.Tensor) -> torch.Tensor:
        if act.numel() != site_value.numel():
            raise ConfigError(f"spliced activation has {site_value.numel()} values, the site has {act.numel()}")
        return site_value.reshape(act.shape).to(act.dtype)
    return fn


def ig_token_effects(model: nn.Module, m: int, crosscoder: nn.Module, site: str, ids_BT: torch.Tensor,
                     last_B: torch.Tensor, correct_B: torch.Tensor, wrong_B: torch.Tensor,
                     codes_NF: torch.Tensor, err_NKD: torch.Tensor, steps: int = 10,
                     with_grad: bool = False) -> tuple[torch.Tensor, ...]:
    """Un-thresholded per-token IG effects on model m: latents [B, T, F] and error node [B, T].

    `codes_NF` and `err_NKD` are the clean joint encoding and errors of the B*T tokens (N = B*T).
    With `with_grad`, also the path-averaged gradient of mu at the site, g [N, D] (d mu / d x = d mu / d eps).
    """
    b, t = ids_BT.shape
    alphas_S = torch.arange(steps, dtype=torch.float32, device=codes_NF.device) / steps
    a_SNF = ((1 - alphas_S)[:, None, None] * codes_NF.detach()[None]).requires_grad_(True)
    e_SND = ((1 - alphas_S)[:, None, None] * err_NKD[:, m].detach()[None]).requires_grad_(True)
    x_SND = crosscoder.decode(a_SNF.reshape(-1, codes_NF.shape[1]))[:, m].reshape(steps, b * t, -1) + e_SND
    ids_SB_T = ids_BT.repeat(steps, 1)
    with patched(model, {site: _splice(x_SND.reshape(steps * b, t, -1))}):
        logits = model(input_ids=ids_SB_T).logits.float()
    mu = logit_diff(logits, last_B.repeat(steps), correct_B.repeat(steps), wrong_B.repeat(steps))
    grad_a, grad_e = torch.autograd.grad(mu.sum(), (a_SNF, e_SND))
    # patch state is 0, so (a_patch - a_clean) = -a_clean, and the same for the error node
    eff_NF = -codes_NF.detach() * grad_a.mean(0)
    eff_err_N = -(err_NKD[:, m].detach() * grad_e.mean(0)).sum(-1)
    if with_grad:
        return eff_NF.reshape(b, t, -1), eff_err_N.reshape(b, t), grad_e.mean(0)
    return eff_NF.reshape(b, t, -1), eff_err_N.reshape(b, t)


def null_latents(crosscoder: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent index [R], random directions [R, K, D] with ||r_{j,m}|| = ||d_{j,m}||) for the IE null."""
    W_FKD = crosscoder.W_dec_FKD.detach()
    gen = torch.Generator().manual_seed(seed)
    idx_R = torch.randint(W_FKD.shape[0], (n,), generator=gen)
    r_RKD = torch.randn(n, *W_FKD.shape[1:], generator=gen).to(W_FKD.device)
    r_RKD = r_RKD / r_RKD.norm(dim=-1, keepdim=True) * W_FKD[idx_R.to(W_FKD.device)].norm(dim=-1, keepdim=True)
    return idx_R.to(W_FKD.device), r_RKD


def indirect_effects(models: Sequence[nn.Module], crosscoder: nn.Module, site: str, pairs: PairBatch,
                     cfg: IGConfig | None = None, pad_id: int = 0,
                     on_batch: Callable[[int], None] | None = None) -> Effects:
    """IE_m(i) for every model m and latent i over the pairs (see module docstring)."""
    cfg = cfg or IGConfig()
    if len(pairs) == 0:
        raise ConfigError("indirect_effects: no minimal pairs (all dropped at tokenisation?)")
    k = len(models)
    device = next(models[0].parameters()).device
    sums_KF: torch.Tensor | None = None
    null_idx_R, null_RKD = null_latents(crosscoder, cfg.n_null, cfg.null_seed)
    null_KR = torch.zeros(k, cfg.n_null, dtype=torch.float64, device=device)
    err_K = torch.zeros(k, dtype=torch.float64, device=device)
    metric_K = torch.zeros(k, dtype=torch.float64, device=device)
    acc_K = torch.zeros(k, dtype=torch.float64, device=device)
    n_tokens = 0
    for start in range(0, len(pairs), cfg.batch_size):
        chunk = pairs.select(range(start, min(start + cfg.batch_size, len(pairs))))
        ids_BT, last_B = (t.to(device) for t in chunk.padded(pad_id))
        correct_B, wrong_B = torch.tensor(chunk.correct, device=device), torch.tensor(chunk.wrong, device=device)
        real_BT = torch.arange(ids_BT.shape[1], device=device)[None] <= last_B[:, None]
        with torch.no_grad():
            x_BTKD = site_stack(models, site, ids_BT)
            x_NKD = x_BTKD.reshape(-1, k, x_BTKD.shape[-1])
            codes_NF = crosscoder.encode(x_NKD)
            err_NKD = x_NKD - crosscoder.decode(codes_NF)
        if sums_KF is None:
            sums_KF = torch.zeros(k, codes_NF.shape[1], dtype=torch.float64, device=device)
        for m, model in enumerate(models):
            with torch.no_grad():
                mu = logit_diff(model(input_ids=ids_BT).logits.float(), last_B, correct_B, wrong_B)
            metric_K[m] += mu.double().sum()
            acc_K[m] += (mu < 0).double().sum()
            eff_BTF, eff_err_BT, g_ND = ig_token_effects(model, m, crosscoder, site, ids_BT, last_B, correct_B,
                                                         wrong_B, codes_NF, err_NKD, cfg.steps, with_grad=True)
            eff_BTF = torch.where(eff_BTF.abs() > cfg.node_threshold, eff_BTF, torch.zeros((), device=device))
            sums_KF[m] += eff_BTF[real_BT].double().sum(0)
            if cfg.n_null:
                # null latent j: code a_{idx_j}, direction r_{j,m}; d mu / d a = <g, r> (linear decoder)
                null_NR = -codes_NF[:, null_idx_R].detach() * (g_ND @ null_RKD[:, m].T)
                null_BTR = null_NR.reshape(*ids_BT.shape, -1)
                null_BTR = torch.where(null_BTR.abs() > cfg.node_threshold, null_BTR, torch.zeros((), device=device))
                null_KR[m] += null_BTR[real_BT].double().sum(0)
            err_K[m] += eff_err_BT[real_BT].double().sum()
        n_tokens += int(real_BT.sum())
        if on_batch is not None:
            on_batch(len(chunk))
    n = len(pairs)
    return Effects((sums_KF / n_tokens).cpu().numpy(), (err_K / n_tokens).cpu().numpy(),
                   (metric_K / n).cpu().numpy(), (acc_K / n).cpu().numpy(), n, n_tokens,
                   (null_KR / n_tokens).cpu().numpy())

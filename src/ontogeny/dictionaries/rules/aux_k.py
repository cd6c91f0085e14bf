"""The aux-k loss on dead latents (Gao et al. 2024, arXiv 2406.04093 §A.2), written once for the SAE's
dense and sparse paths and for the crosscoder.

With e = x - x_hat detached, z_aux the ReLU of the top-`k_aux` pre-activations among dead latents
(a latent is dead after `dead_tokens` tokens without firing) and e_hat = z_aux W_dec (no bias):

    aux = mean_b ||e_b - e_hat_b||^2 / mean_b ||e_b - mean(e)||^2       (sums over all trailing axes)
"""

from __future__ import annotations

import torch


def aux_size(k_aux: int | None, d_in: int, dead_F: torch.Tensor | None) -> int:
    """How many dead latents enter aux-k: min(k_aux or d_in // 2, #dead); 0 when none is dead."""
    if dead_F is None:
        return 0
    n_dead = int(dead_F.sum())
    return min(k_aux if k_aux is not None else max(1, d_in // 2), n_dead) if n_dead else 0


def dead_top_cols(pre_BF: torch.Tensor, dead_F: torch.Tensor, n_aux: int) -> torch.Tensor:
    """Columns [B, n_aux] (ascending per row) of each token's largest pre-activations among dead latents."""
    dead_idx = torch.nonzero(dead_F, as_tuple=True)[0]
    top = pre_BF.detach()[:, dead_idx].topk(n_aux, dim=-1, sorted=False).indices
    return dead_idx[top].sort(dim=-1).values


def aux_codes(pre_BF: torch.Tensor, dead_F: torch.Tensor, n_aux: int) -> torch.Tensor:
    """Dense z_aux [B, F]: ReLU(pre) at `dead_top_cols`, zero elsewhere (differentiable in pre)."""
    cols = dead_top_cols(pre_BF, dead_F, n_aux)
    return torch.zeros_like(pre_BF).scatter(-1, cols, torch.relu(pre_BF.gather(-1, cols)))


def aux_loss(err: torch.Tensor, aux_recon: torch.Tensor) -> torch.Tensor:
    """||e - e_hat||^2 / ||e - mean(e)||^2 over the batch (e detached; any trailing shape)."""
    e = err.detach().flatten(1)
    denom = (e - e.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
    return (e - aux_recon.flatten(1)).pow(2).sum(-1).mean() / denom

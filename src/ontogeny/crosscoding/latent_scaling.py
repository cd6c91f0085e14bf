"""Latent Scaling: checks that a checkpoint-specific crosscoder latent is not an L1 artefact.

Minder et al. 2025 ("Robustly identifying concepts introduced during chat fine-tuning using
crosscoders", arXiv 2504.02922) show that an L1 crosscoder can give a latent a near-zero decoder in
one model although that model still carries the concept: *complete shrinkage* (the concept sits in
that model's reconstruction error) or *latent decoupling* (other latents reconstruct it there). Their
test fits, per latent j and checkpoint m, the scale that best explains a target Y_m with the latent:

    beta_{j,m} = argmin_b sum_n || b f_j(n) d_j - Y_{m,n} ||^2 = sum_n f_j(n) <d_j, Y_{m,n}> / (||d_j||^2 sum_n f_j(n)^2)

with d_j the decoder row at the latent's reference checkpoint (its largest decoder norm), and two
targets: the error with the latent's own share put back, Y^eps = x_m - xhat_m + f_j d_{j,m}, and the
reconstruction without it, Y^rec = xhat_m - f_j d_{j,m}. Both are normalised by the latent's scale
in the full activation at its reference checkpoint (beta is linear in Y, so that is
beta^eps_ref + beta^rec_ref): nu^eps_{j,m} = beta^eps_{j,m} / beta(x_ref), likewise nu^rec, and
nu^eps_m + nu^rec_m = beta(x_m) / beta(x_ref). A large nu^eps at a checkpoint where the latent's decoder
is weak flags shrinkage; a large nu^rec flags decoupling. Minder et al. compare two models with the
ratios beta_base / beta_chat; this normalisation, the extension to K checkpoints and the default
thresholds (0.5) are a PROPOSAL.
"""

from __future__ import annotations

import numpy as np
import torch

from ontogeny.errors import ConfigError


def fit_scales(acts_NKD: torch.Tensor, codes_NF: torch.Tensor, recon_NKD: torch.Tensor,
               W_dec_FKD: torch.Tensor, latents: list[int] | np.ndarray,
               ) -> dict[str, np.ndarray]:
    """beta^eps, beta^rec [L, K], the reference checkpoint [L] and nu^eps, nu^rec [L, K] per latent."""
    n, k, d = acts_NKD.shape
    if codes_NF.shape[0] != n or recon_NKD.shape != acts_NKD.shape or W_dec_FKD.shape[1:] != (k, d):
        raise ConfigError(f"latent scaling: shapes disagree: acts {tuple(acts_NKD.shape)}, codes "
                          f"{tuple(codes_NF.shape)}, recon {tuple(recon_NKD.shape)}, W_dec {tuple(W_dec_FKD.shape)}")
    lat = torch.as_tensor(np.asarray(latents, dtype=np.int64))
    W_LKD = W_dec_FKD[lat].detach().double()
    ref_L = W_LKD.norm(dim=-1).argmax(dim=1)
    dir_LD = W_LKD[torch.arange(len(lat)), ref_L]
    err_NKD = (acts_NKD - recon_NKD).double()
    beta_eps = np.zeros((len(lat), k))
    beta_rec = np.zeros((len(lat), k))
    for row, j in enumerate(lat.tolist()):
        f_N = codes_NF[:, j].double()
        on = f_N != 0
        f = f_N[on]
        denom = (f * f).sum() * (dir_LD[row] @ dir_LD[row])
        if denom <= 0:
            continue
        own_K = W_LKD[row] @ dir_LD[row]                             # <d_{j,m}, d_ref>
        err_dot_NK = err_NKD[on] @ dir_LD[row]                        # <x - xhat, d_ref>
        rec_dot_NK = recon_NKD[on].double() @ dir_LD[row]
        beta_eps[row] = ((f[:, None] * (err_dot_NK + f[:, None] * own_K)).sum(0) / denom).numpy()
        beta_rec[row] = ((f[:, None] * (rec_dot_NK - f[:, None] * own_K)).sum(0) / denom).numpy()
    ref = ref_L.numpy()
    idx = np.arange(len(lat))
    total_ref = beta_eps[idx, ref] + beta_rec[idx, ref]          # beta of the full activation x_ref
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(np.abs(total_ref) > 1e-12, total_ref, np.nan)[:, None]
        nu_eps, nu_rec = beta_eps / scale, beta_rec / scale
    return {"beta_eps": beta_eps, "beta_rec": beta_rec, "ref": ref,
            "nu_eps": np.nan_to_num(nu_eps, nan=0.0), "nu_rec": np.nan_to_num(nu_rec, nan=0.0)}


def diagnose(scales: dict[str, np.ndarray], norms_LK: np.ndarray, low: float = 0.3,
             eps_threshold: float = 0.5, rec_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Flags per latent: shrinkage, decoupling, and `confirmed` (weak somewhere and neither flag).

    A checkpoint m is *weak* for latent j when ||d_{j,m}|| / (||d_{j,m}|| + ||d_{j,ref}||) < low
    (for 2 checkpoints this is exactly RelDec's discontinued/emerging cut). Shrinkage: some weak m has
    nu^eps_m > eps_threshold; decoupling: some weak m has nu^rec_m > rec_threshold.
    """
    norms = np.asarray(norms_LK, dtype=np.float64)
    ref_norm = norms[np.arange(len(norms)), scales["ref"]][:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        weak = np.where(ref_norm > 0, norms / (norms + ref_norm), 0.5) < low
    shrink = (weak & (scales["nu_eps"] > eps_threshold)).any(axis=1)
    decouple = (weak & (scales["nu_rec"] > rec_threshold)).any(axis=1)
    return {"weak": weak, "shrinkage": shrink, "decoupling": decouple,
            "confirmed": weak.any(axis=1) & ~shrink & ~decouple}

"""Dictionary quality: reconstruction, sparsity, latent health, and CE/KL recovered when spliced in.

Definitions (per token n, activation x_n in R^D, reconstruction x_hat_n, codes a_n):
  mse         = mean_n ||x_n - x_hat_n||^2                     (summed over D, as the training loss)
  fvu         = sum_n ||x_n - x_hat_n||^2 / sum_n ||x_n - mean(x)||^2   (1 - explained variance)
  l0          = mean_n #{i: a_ni != 0}
  dead_frac   = share of latents that never fire on the evaluation tokens
  dense_frac  = share of latents that fire on more than `dense_threshold` of the tokens
  ce_recovered = (CE_zero - CE_dict) / (CE_zero - CE_clean)    (SAELens/SAEBench `ce_loss_score`)
  kl_recovered = (KL_zero - KL_dict) / KL_zero                 KL(clean || patched) per token, averaged
CE_zero / KL_zero splice zeros at the site (zero ablation), CE_dict / KL_dict splice the reconstruction.
Both ratios are undefined (NaN; the report says "not measured") when zero-ablating the site changes the
model by less than `min_gap` nats (|CE_zero - CE_clean| or KL_zero): the denominator is then noise, and
the ratio swings far outside [0, 1] (seen at the first checkpoints of a series, where the residual stream
carries almost nothing yet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ontogeny.errors import ConfigError


@torch.no_grad()
def reconstruction_metrics(dictionary: nn.Module, acts_ND: torch.Tensor, batch_size: int = 4096,
                           dense_threshold: float = 0.1) -> dict[str, float]:
    """mse, fvu, l0, dead_frac, dense_frac of a dictionary on activations [N, D] (see module docstring)."""
    if acts_ND.dim() != 2:
        raise ConfigError(f"acts must be [N, D], got {tuple(acts_ND.shape)}")
    device = next(dictionary.parameters()).device
    was_training = dictionary.training
    dictionary.eval()
    n = acts_ND.shape[0]
    sq_err = 0.0
    l0 = 0.0
    fired = None
    mean_D = acts_ND.double().mean(0)
    total_var = float((acts_ND.double() - mean_D).pow(2).sum())
    for i in range(0, n, batch_size):
        x = acts_ND[i:i + batch_size].to(device)
        codes = dictionary.encode(x)
        recon = dictionary.decode(codes)
        sq_err += float((x - recon).double().pow(2).sum())
        active = codes != 0
        l0 += float(active.sum())
        c = active.sum(0).double().cpu()
        fired = c if fired is None else fired + c
    dictionary.train(was_training)
    freq = fired / n
    return {"mse": sq_err / n, "fvu": sq_err / max(total_var, 1e-30), "l0": l0 / n,
            "dead_frac": float((freq == 0).double().mean()), "dense_frac": float((freq > dense_threshold).double().mean())}


def _patch_fn(dictionary: nn.Module | None):
    """A site patch that replaces the activation by its reconstruction (None: by zeros)."""
    def fn(act: torch.Tensor) -> torch.Tensor:
        if dictionary is None:
            return torch.zeros_like(act)
        lead = act.shape[:2]
        flat = act.reshape(lead[0] * lead[1], -1)
        return dictionary(flat.float()).to(act.dtype).reshape(act.shape)
    return fn


@torch.no_grad()
def splice_metrics(model: nn.Module, token_ids_ST: torch.Tensor, site: str, dictionary: nn.Module,
                   batch_size: int = 16, min_gap: float = 0.05) -> dict[str, float]:
    """CE loss and KL to the clean model when the site is replaced by the reconstruction or by zeros.

    Per-token next-token cross-entropy over positions 0..T-2; KL(p_clean || p_patched) over all positions.
    `min_gap` (nats): below this zero-ablation effect the recovered ratios are NaN (module docstring).
    """
    from ontogeny.series.sites import patched

    device = next(model.parameters()).device
    sums = {"ce_clean": 0.0, "ce_dict": 0.0, "ce_zero": 0.0, "kl_dict": 0.0, "kl_zero": 0.0}
    n_ce = n_kl = 0
    for i in range(0, token_ids_ST.shape[0], batch_size):
        ids = token_ids_ST[i:i + batch_size].to(device)
        clean = model(input_ids=ids).logits.float()
        logp_clean = clean.log_softmax(-1)
        sums["ce_clean"] += float(_ce_sum(clean, ids))
        for tag, dict_ in (("dict", dictionary), ("zero", None)):
            with patched(model, {site: _patch_fn(dict_)}):
                logits = model(input_ids=ids).logits.float()
            sums[f"ce_{tag}"] += float(_ce_sum(logits, ids))
            logp = logits.log_softmax(-1)
            sums[f"kl_{tag}"] += float((logp_clean.exp() * (logp_clean - logp)).sum())
        n_ce += ids.shape[0] * (ids.shape[1] - 1)
        n_kl += ids.shape[0] * ids.shape[1]
    out = {k: v / (n_ce if k.startswith("ce") else n_kl) for k, v in sums.items()}
    gap = out["ce_zero"] - out["ce_clean"]
    floor = max(min_gap, 1e-12)
    out["ce_recovered"] = (out["ce_zero"] - out["ce_dict"]) / gap if abs(gap) >= floor else float("nan")
    out["kl_recovered"] = ((out["kl_zero"] - out["kl_dict"]) / out["kl_zero"]
                           if out["kl_zero"] >= floor else float("nan"))
    return out


def _ce_sum(logits_BTV: torch.Tensor, ids_BT: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits_BTV[:, :-1].reshape(-1, logits_BTV.shape[-1]), ids_BT[:, 1:].reshape(-1),
                           reduction="sum")


def latent_frequencies(dictionary: nn.Module, acts_ND: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Share of tokens on which each latent fires ([F])."""
    with torch.no_grad():
        counts = None
        for i in range(0, acts_ND.shape[0], batch_size):
            c = (dictionary.encode(acts_ND[i:i + batch_size]) != 0).sum(0).double()
            counts = c if counts is None else counts + c
    return (counts / acts_ND.shape[0]).float()


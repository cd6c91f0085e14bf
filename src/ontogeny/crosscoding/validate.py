"""Causal validation of RelDec/RelIE by zero-ablating single latents (Bayazit et al. 2025, "Table 7").

For latent i and checkpoint m, zero a_i in the joint encoding, decode model m's activation with its error
term kept, splice it in at every position and measure, over the minimal pairs,
    delta_mu_m(i)  = mean(mu_ablated - mu_clean)     (mu = logit(wrong) - logit(correct))
    delta_acc_m(i) = acc_clean - acc_ablated         (acc = share of pairs with logit(correct) > logit(wrong))
The relative ablation effect |delta_mu_m| / sum_m' |delta_mu_m'| is the ablation analogue of RelDec and
RelIE; `spearman_table` gives Spearman's rho between each of its columns and theirs. (The authors
correlate ratios delta_M1 / delta_M2; the normalised ratio used here is one of their variants.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ontogeny.causal.attribution import _splice, logit_diff, site_stack
from ontogeny.causal.tasks import PairBatch
from ontogeny.crosscoding.reldec import relative
from ontogeny.errors import ConfigError
from ontogeny.series.sites import patched


@torch.no_grad()
def spliced_metric(model: nn.Module, m: int, crosscoder: nn.Module, site: str, ids_BT: torch.Tensor,
                   last_B: torch.Tensor, correct_B: torch.Tensor, wrong_B: torch.Tensor,
                   codes_NF: torch.Tensor, err_NKD: torch.Tensor) -> torch.Tensor:
    """mu [B] of model m with decode(codes)_m + eps_m spliced at every position of the site."""
    b, t = ids_BT.shape
    x_ND = crosscoder.decode(codes_NF)[:, m] + err_NKD[:, m]
    with patched(model, {site: _splice(x_ND.reshape(b, t, -1))}):
        logits = model(input_ids=ids_BT).logits.float()
    return logit_diff(logits, last_B, correct_B, wrong_B)


@torch.no_grad()
def ablation_effects(models: Sequence[nn.Module], crosscoder: nn.Module, site: str, pairs: PairBatch,
                     latents: Sequence[int], batch_size: int = 16, pad_id: int = 0,
                     on_latent: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """delta_mu and delta_acc [L, K] of zero-ablating each latent (see module docstring)."""
    if len(pairs) == 0 or len(latents) == 0:
        raise ConfigError("ablation_effects needs at least one pair and one latent")
    k, n_lat = len(models), len(latents)
    device = next(models[0].parameters()).device
    d_mu = np.zeros((n_lat, k))
    d_acc = np.zeros((n_lat, k))
    batches = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs.select(range(start, min(start + batch_size, len(pairs))))
        ids_BT, last_B = (t.to(device) for t in chunk.padded(pad_id))
        x_BTKD = site_stack(models, site, ids_BT)
        x_NKD = x_BTKD.reshape(-1, k, x_BTKD.shape[-1])
        codes_NF = crosscoder.encode(x_NKD)
        err_NKD = x_NKD - crosscoder.decode(codes_NF)
        correct_B, wrong_B = torch.tensor(chunk.correct, device=device), torch.tensor(chunk.wrong, device=device)
        clean = [logit_diff(mdl(input_ids=ids_BT).logits.float(), last_B, correct_B, wrong_B) for mdl in models]
        batches.append((ids_BT, last_B, correct_B, wrong_B, codes_NF, err_NKD, clean))
    for row, lat in enumerate(latents):
        for ids_BT, last_B, correct_B, wrong_B, codes_NF, err_NKD, clean in batches:
            ablated = codes_NF.clone()
            ablated[:, lat] = 0
            for m, model in enumerate(models):
                mu = spliced_metric(model, m, crosscoder, site, ids_BT, last_B, correct_B, wrong_B, ablated,
                                    err_NKD)
                d_mu[row, m] += float((mu - clean[m]).sum())
                d_acc[row, m] += float((clean[m] < 0).sum() - (mu < 0).sum())
        if on_latent is not None:
            on_latent(lat)
    return {"delta_mu": d_mu / len(pairs), "delta_acc": d_acc / len(pairs)}


def spearman_table(rel_ablation_LK: np.ndarray, others: dict[str, np.ndarray],
                   names: Sequence[str]) -> list[dict[str, float | str]]:
    """Spearman rho (and p) between each checkpoint's relative ablation effect and each other ratio."""
    rows: list[dict[str, float | str]] = []
    for label, other_LK in others.items():
        for m, name in enumerate(names):
            a, b = rel_ablation_LK[:, m], other_LK[:, m]
            if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
                rho, p = float("nan"), float("nan")
            else:
                res = spearmanr(a, b)
                rho, p = float(res.statistic), float(res.pvalue)
            rows.append({"against": label, "checkpoint": name, "rho": rho, "p": p, "n": len(a)})
    return rows


def relative_ablation(delta_mu_LK: np.ndarray) -> np.ndarray:
    """|delta_mu_m| / sum_m' |delta_mu_m'| per latent (1/K where all are 0, as RelIE)."""
    return relative(delta_mu_LK)

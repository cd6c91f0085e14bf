"""A k / sparsity diagnostic for crosscoders: dead, duplicate and (on planted data) split latents.

Why: BatchTopK has no L1 term, so when k exceeds the number of features truly active per token the fit
is not unique: the spare slots split one direction across several latents (at noise 0 the fit is exact,
FVU ~ 1e-9, yet shared features are not single latents). These counts show it: duplicates are pairs of
alive latents whose decoders (concatenated over checkpoints, normalised space) have cosine >= 0.9; a
planted feature is split when more than one alive latent carries its direction at a checkpoint where
both exist. On planted data BatchTopK recovers every class when k equals the planted mean L0 and splits
features when k is 2-4x larger (docs/crosscoder.md, benchmarks/crosscoder_taxonomy.py); k = "auto" (the
default, `ontogeny.dictionaries.ksearch.KSearch`) finds that k without the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ontogeny.crosscoding.presence import presence

def duplicate_pairs(W_dec_FKD: torch.Tensor, alive_F: np.ndarray, min_cos: float = 0.9) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of alive latents whose decoders (concatenated over checkpoints) have cos >= min_cos."""
    idx = np.nonzero(alive_F)[0]
    if len(idx) < 2:
        return []
    W = torch.nn.functional.normalize(W_dec_FKD.detach()[idx].reshape(len(idx), -1).double(), dim=-1)
    cos = (W @ W.T).numpy()
    a, b = np.nonzero(np.triu(cos >= min_cos, k=1))
    return [(int(idx[i]), int(idx[j])) for i, j in zip(a, b)]


def split_counts(W_dec_FKD: torch.Tensor, dirs_GKD: torch.Tensor, present_GK: np.ndarray, alive_F: np.ndarray,
                 tau: float = 0.3, min_cos: float = 0.9) -> np.ndarray:
    """Per planted feature, how many alive latents carry it: cos(d_{i,m}, u_{g,m}) >= min_cos at a checkpoint
    m where the feature exists and the latent is present (norm ratio >= tau). > 1 means split."""
    W = W_dec_FKD.detach().double()
    pres_FK = presence(W.norm(dim=-1).numpy(), tau) & np.asarray(alive_F, dtype=bool)[:, None]
    cos_FGK = torch.einsum("fkd,gkd->fgk", torch.nn.functional.normalize(W, dim=-1),
                           dirs_GKD.double()).numpy()
    carries = (cos_FGK >= min_cos) & pres_FK[:, None, :] & np.asarray(present_GK, dtype=bool)[None]
    return carries.any(axis=2).sum(axis=0)


@dataclass
class SparsityReport:
    """Numbers of one crosscoder: alive and dead latents, duplicate pairs, measured L0 and FVU."""

    alive: int
    dead: int
    duplicates: int
    l0: float
    fvu: float
    split: int | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"alive": self.alive, "dead": self.dead, "duplicates": self.duplicates,
                                             "l0": self.l0, "fvu": self.fvu}
        out["split_planted"] = self.split if self.split is not None else "not measured"
        return {**out, **self.extra}


def diagnose(cc, acts_NKD: torch.Tensor, codes_NF: torch.Tensor | None = None, planted=None,
             min_cos: float = 0.9, tau: float = 0.3) -> SparsityReport:
    """Dead / duplicate latents, L0 and FVU of a crosscoder on activations; split planted features if given."""
    from ontogeny.dictionaries.crosscoder import encode_in_chunks

    if codes_NF is None:
        codes_NF = torch.cat(list(encode_in_chunks(cc, acts_NKD)))
    with torch.no_grad():
        err = (acts_NKD - cc.decode(codes_NF)).pow(2).sum((0, 2))
        var = (acts_NKD - acts_NKD.mean(0)).pow(2).sum((0, 2)).clamp_min(1e-12)
    alive = (codes_NF > 0).any(0).numpy()
    W = cc.W_dec_FKD.detach() * cc.scale_K[None, :, None]
    split = None
    if planted is not None:
        split = int((split_counts(W, planted.dirs_GKD, planted.present_GK, alive, tau, min_cos) > 1).sum())
    return SparsityReport(alive=int(alive.sum()), dead=int((~alive).sum()),
                          duplicates=len(duplicate_pairs(W, alive, min_cos)),
                          l0=float((codes_NF > 0).sum(1).float().mean()), fvu=float((err / var).sum() / len(err)),
                          split=split)

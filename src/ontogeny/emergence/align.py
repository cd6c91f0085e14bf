"""How close a model's token-mixing patterns are to a task's true attention map.

For a query row q with true parents P_q (|P_q| = s_q) and a head's pattern a[q, :]:
- parent mass   M_h = mean_q sum_{k in P_q} a[q, k]  (GaganGutta's replication of seed 004); the model
                score is max_h M_h; `parent_mass_row` = mean_q max_h of the row's mass (best head per row);
- top-s IoU     mean_q max_h IoU(top_{s_q}(a_h[q, :]), P_q), the per-row best head, since different
                heads take different rows (cwhy/seewhy's replication);
- entropy       mean_q -sum_k a[q, k] log a[q, k] of the lowest-entropy head (heads that specialise drop).
Only rows with at least one parent count. When the parents are shared by the batch (leading dim 1)
the pattern is batch-averaged first, as in the paper's Fig. 3; otherwise scores are per sequence.
"""

from __future__ import annotations

import torch


def _rows(pattern_BHTT: torch.Tensor, parents_BTT: torch.Tensor):
    if parents_BTT.shape[0] == 1:
        pattern_BHTT = pattern_BHTT.mean(0, keepdim=True)
    pattern_BHTT = pattern_BHTT.expand(parents_BTT.shape[0], -1, -1, -1)
    has_BT = parents_BTT.any(-1)
    b, q = has_BT.nonzero(as_tuple=True)
    return pattern_BHTT[b, :, q], parents_BTT[b, q]  # [R, H, T], [R, T]


def head_scores(pattern_BHTT: torch.Tensor, parents_BTT: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-head parent mass, top-s IoU and entropy ([H] each), averaged over rows with parents."""
    a_RHT, par_RT = _rows(pattern_BHTT.float(), parents_BTT)
    if a_RHT.shape[0] == 0:
        nan = torch.full((pattern_BHTT.shape[1],), float("nan"))
        return {
            "parent_mass": nan,
            "iou": nan,
            "entropy": nan,
            "iou_best_row": torch.tensor(float("nan")),
            "mass_best_row": torch.tensor(float("nan")),
        }
    par = par_RT[:, None, :].float()
    mass_RH = (a_RHT * par).sum(-1)
    s_R = par_RT.sum(-1)
    rank_RHT = a_RHT.argsort(-1, descending=True).argsort(-1)
    top_RHT = (rank_RHT < s_R[:, None, None]).float()
    inter_RH = (top_RHT * par).sum(-1)
    iou_RH = inter_RH / (2 * s_R[:, None] - inter_RH)
    ent_RH = -(a_RHT * a_RHT.clamp_min(1e-12).log()).sum(-1)
    return {
        "parent_mass": mass_RH.mean(0),
        "iou": iou_RH.mean(0),
        "entropy": ent_RH.mean(0),
        "iou_best_row": iou_RH.max(1).values.mean(),
        "mass_best_row": mass_RH.max(1).values.mean(),
    }


def alignment(patterns: list[torch.Tensor], parents_BTT: torch.Tensor) -> dict[str, float]:
    """Model-level scores: the best layer's best head (mass), best per-row head (IoU), lowest entropy."""
    per_layer = [head_scores(p, parents_BTT) for p in patterns]
    return {
        "parent_mass": max(float(s["parent_mass"].max()) for s in per_layer),
        "parent_mass_row": max(float(s["mass_best_row"]) for s in per_layer),
        "iou": max(float(s["iou_best_row"]) for s in per_layer),
        "entropy": min(float(s["entropy"].min()) for s in per_layer),
    }

"""SLT results as table rows and Parquet files under `<run>/tables/`, plus the head-separation summary.

Rows are plain dicts; `write_table` stores them atomically with the provenance stamp in the Parquet
schema metadata (key `ontogeny`). `head_separation` quantifies the paper's finding that the response
matrix's leading components separate induction heads (as the head census names them) from the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr

from ontogeny.slt.susceptibility import SusceptibilityResult, response_pca
from ontogeny.store import tables as store_tables
from ontogeny.store.run import provenance


def write_table(rows: list[dict[str, Any]], path: Path, config: Any = None, inputs: dict[str, str] | None = None) -> Path:
    """Write rows to Parquet atomically, stamped with `provenance(config, inputs)`."""
    return store_tables.write_table(path, rows, provenance(config, inputs))


def parse_head(component: str) -> tuple[int | None, int | None]:
    if component.startswith("l") and "h" in component:
        a, b = component[1:].split("h", 1)
        if a.isdigit() and b.isdigit():
            return int(a), int(b)
    return None, None


def susceptibility_rows(res: SusceptibilityResult, step: int) -> dict[str, list[dict[str, Any]]]:
    """Tables of one sweep: response (probe × component), tokens (per-token χ), components (LLC)."""
    response = [{"step": step, "probe": p, "component": c, "chi": float(res.response_PK[i, j])}
                for i, p in enumerate(res.probes) for j, c in enumerate(res.components)]
    tokens = []
    for p in res.probes:
        ids = res.token_ids[p]
        S, T = ids.shape
        chi = res.chi_tokens[p]  # [K, S*(T-1)]
        for s in range(S):
            for t in range(T - 1):
                n = s * (T - 1) + t
                row = {"step": step, "probe": p, "seq": s, "target_position": t + 1,
                       "context_token": int(ids[s, t]), "target_token": int(ids[s, t + 1])}
                row.update({c: float(chi[j, n]) for j, c in enumerate(res.components)})
                tokens.append(row)
    comps = []
    for c, llc in res.llc.items():
        layer, head = parse_head(c)
        comps.append({"step": step, "component": c, "layer": layer, "head": head, "n_params": res.n_params[c],
                      "llc_mean": llc.llc_mean, "llc_std": llc.llc_std, "llc_half_diff": llc.half_diff,
                      "init_loss": llc.init_loss, "n_beta": llc.n_beta, "burnin_draws": llc.n_burnin_draws,
                      "kept_draws": llc.n_kept_draws, "below_init_frac": llc.below_init_frac,
                      "n_diverged": llc.n_diverged, "converged": llc.converged, "n_warnings": len(llc.warnings),
                      "warning": " | ".join(llc.warnings) or "none"})
    return {"susceptibility_response": response, "susceptibility_tokens": tokens, "susceptibility_components": comps}


def head_pca_rows(res: SusceptibilityResult, induction_LH: torch.Tensor, step: int, n_pcs: int = 3,
                  induction_heads: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """PCA of the token-level matrix (tokens × heads, column-centred): head loadings and explained variance.

    `induction_LH` is the census's probe-averaged induction score per head and `induction_heads` the heads
    the census names (`ontogeny.census.heads.named_heads`); each head row records both.
    """
    x_NK, _ = res.token_matrix()
    pca = response_pca(x_NK)
    r = min(n_pcs, pca.loadings_KR.shape[1])
    named = set(induction_heads)
    heads = []
    for j, c in enumerate(res.components):
        layer, head = parse_head(c)
        row = {"step": step, "component": c, "layer": layer, "head": head,
               "induction_score": float(induction_LH[layer, head]) if layer is not None else None,
               "induction_head": c in named, "llc_mean": res.llc[c].llc_mean}
        row.update({f"pc{k + 1}": float(pca.loadings_KR[j, k]) for k in range(r)})
        heads.append(row)
    pcs = [{"step": step, "pc": k + 1, "explained_ratio": float(pca.explained_ratio[k]),
            "singular_value": float(pca.singular_values[k])} for k in range(pca.explained_ratio.numel())]
    return heads, pcs


def head_separation(heads: list[dict[str, Any]], induction_heads: Sequence[str], threshold: float,
                    n_pcs: int = 3) -> list[dict[str, Any]]:
    """PROPOSAL: per PC, Spearman ρ(induction score, loading) and the standardised gap between the heads the
    census names as induction heads (`induction_heads`, score ≥ the census's `threshold`) and the rest:
    (mean_ind − mean_rest) / pooled std of loadings. A figure that cannot be measured is None, with a
    `note` in words (no head passed, every head passed, or constant scores)."""
    out = []
    named = set(induction_heads)
    scored = [h for h in heads if h["induction_score"] is not None]
    scores = torch.tensor([h["induction_score"] for h in scored], dtype=torch.float64)
    is_ind = torch.tensor([h["component"] in named for h in scored], dtype=torch.bool)
    n_ind = int(is_ind.sum())
    passed = ", ".join(h["component"] for h in scored if h["component"] in named)
    for k in range(1, n_pcs + 1):
        if not heads or f"pc{k}" not in heads[0]:
            break
        load = torch.tensor([h[f"pc{k}"] for h in scored], dtype=torch.float64)
        notes = []
        rho = None
        if len(scored) > 2 and float(scores.std()) > 0:
            rho = float(spearmanr(scores.numpy(), load.numpy()).statistic)
        else:
            notes.append("Spearman ρ not measured (fewer than 3 heads or equal induction scores)")
        gap = None
        if 0 < n_ind < len(scored):
            a, b = load[is_ind], load[~is_ind]
            pooled = torch.sqrt((a.var(unbiased=False) * len(a) + b.var(unbiased=False) * len(b)) / len(load))
            gap = float((a.mean() - b.mean()) / pooled.clamp_min(1e-12))
        elif n_ind == 0:
            notes.append(f"no head passed the census induction threshold {threshold:g}: gap not measured")
        else:
            notes.append(f"every head passed the census induction threshold {threshold:g}: gap not measured")
        out.append({"pc": k, "spearman_induction": rho, "standardised_gap": gap, "n_induction_heads": n_ind,
                    "induction_heads": passed or "none passed", "threshold": threshold,
                    "note": "; ".join(notes) or "none"})
    return out

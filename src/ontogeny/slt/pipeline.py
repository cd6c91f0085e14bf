"""The SLT stages as library calls (used by `ontogeny llc`, `ontogeny susceptibility` and the study).

`llc_rows` gives one LLC-curve row per component at one checkpoint; `susceptibility_run` writes the
susceptibility tables and figures of one checkpoint and returns the headline numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ontogeny.slt.sgld import SGLDConfig


def llc_rows(model, ids_NT: torch.Tensor, cfg: SGLDConfig, components: Sequence[str], step: int,
             on_step: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """λ̂ = nβ(E[L] − L(w*)) for each component ('full', 'l<L>h<H>', ..., 'heads' = every head)."""
    from ontogeny.slt.heads import component_masks, head_names, n_selected
    from ontogeny.slt.llc import estimate_llc
    from ontogeny.slt.lm import eager_attention, lm_loss_fn, model_params
    from ontogeny.slt.sgld import shuffled_batches

    comps = [c for x in components for c in (head_names(model) if x == "heads" else [x])]
    params = model_params(model)
    rows = []
    for comp in comps:
        masks = component_masks(model, comp)
        with eager_attention(model):
            res = estimate_llc(lm_loss_fn(model), params, shuffled_batches(ids_NT, cfg.batch_size, cfg.seed), cfg,
                               masks=masks, on_step=on_step)
        rows.append({"step": step, "component": comp, "n_params": n_selected(model, masks),
                     "llc_mean": res.llc_mean, "llc_std": res.llc_std, "init_loss": res.init_loss,
                     "draws_per_s": res.draws_per_second, "n_warnings": len(res.warnings)})
    return rows


def susceptibility_run(model, tokenizer, cfg, out: Path, step: int, induction_threshold: float = 0.3,
                       corpus=None, induction_pool: torch.Tensor | None = None, on_component: Callable[[str], None] | None = None,
                       on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Per-head χ for each probe, the response matrix, its PCA and the induction-head separation.

    Writes tables/susceptibility_*.parquet and figures/response_matrix.*, figures/pc_scatter_heads.*
    under `out`; induction scores use random tokens from `induction_pool` (default: the whole vocabulary).
    Returns the tables' rows, the SGLD warnings and the result object.
    """
    from ontogeny.series.corpus import build_corpus
    from ontogeny.slt.figures import pc_scatter, response_heatmap
    from ontogeny.slt.heads import induction_scores
    from ontogeny.slt.susceptibility import susceptibility_sweep, token_sets_from_corpus
    from ontogeny.slt.tables import head_pca_rows, head_separation, susceptibility_rows, write_table
    from ontogeny.store.run import tensor_hash

    corpus = corpus or build_corpus(seed=0)
    sampling, base_ids, probe_ids = token_sets_from_corpus(tokenizer, cfg, corpus=corpus)
    res = susceptibility_sweep(model, sampling, base_ids, probe_ids, cfg, on_component=on_component,
                               on_step=on_step)
    induction = induction_scores(model, half_len=min(24, model.config.max_position_embeddings // 2),
                                 pool=induction_pool)
    tables = susceptibility_rows(res, step)
    heads, pcs = head_pca_rows(res, induction, step)
    sep = head_separation(heads, induction_threshold)
    tables.update({"susceptibility_heads": heads, "susceptibility_pcs": pcs, "susceptibility_separation": sep})
    inputs = {"step": str(step), "corpus": corpus.hash,
              **{f"ids_{k}": tensor_hash(v) for k, v in {"sampling": sampling, "base": base_ids, **probe_ids}.items()}}
    for name, rows in tables.items():
        write_table(rows, out / "tables" / f"{name}.parquet", cfg, inputs)
    response_heatmap(res.response_PK, res.probes, res.components, out / "figures")
    pc_scatter(heads, out / "figures")
    return {"step": step, "heads": heads, "pcs": pcs[:5], "separation": sep, "warnings": res.warnings[:20],
            "response": {"probes": res.probes, "components": res.components,
                         "matrix": res.response_PK.tolist() if hasattr(res.response_PK, "tolist") else res.response_PK}}

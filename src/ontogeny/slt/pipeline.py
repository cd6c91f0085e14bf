"""The SLT stages as library calls (used by `ontogeny llc`, `ontogeny susceptibility` and the study).

`llc_rows` gives one LLC-curve row per component at one checkpoint; `calibrate_lm` chooses ε and γ for
a language model; `susceptibility_run` writes the susceptibility tables and figures of one checkpoint
and returns the headline numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ontogeny.slt.sgld import SGLDConfig


def llc_rows(model, ids_NT: torch.Tensor, cfg: SGLDConfig, components: Sequence[str], step: int,
             on_step: Callable[[int], None] | None = None,
             traces: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """λ̂ = nβ(E[L] − L(w*)) for each component ('full', 'l<L>h<H>', ..., 'heads' = every head).

    Each row carries the convergence figures (between-chain std, half difference, burn-in, share of draws
    below L(w*), diverged chains, a `converged` flag and the warnings in words) and nβ as used. `traces`,
    if given, receives label -> (x[chain][draw], burn-in draws) for the trace figure; `extra` columns
    (e.g. the calibration summary) are added to every row.
    """
    from ontogeny.slt.heads import component_masks, head_names, n_selected
    from ontogeny.slt.llc import estimate_llc
    from ontogeny.slt.lm import eager_attention, lm_batches, lm_loss_fn, model_params

    comps = [c for x in components for c in (head_names(model) if x == "heads" else [x])]
    params = model_params(model)
    rows = []
    for comp in comps:
        masks = component_masks(model, comp)
        with eager_attention(model):
            res = estimate_llc(lm_loss_fn(model), params, lm_batches(ids_NT, cfg), cfg, masks=masks, on_step=on_step)
        summ = res.summary()
        rows.append({"step": step, "component": comp, "n_params": n_selected(model, masks),
                     "llc_mean": res.llc_mean, "llc_std": res.llc_std, "llc_half_diff": res.half_diff,
                     "init_loss": res.init_loss, "n_beta": res.n_beta, "lr": cfg.lr, "gamma": cfg.gamma,
                     "burnin_draws": res.n_burnin_draws, "kept_draws": res.n_kept_draws,
                     "below_init_frac": summ["below_init_frac"], "n_diverged": res.n_diverged,
                     "converged": res.converged, "draws_per_s": res.draws_per_second,
                     "n_warnings": len(res.warnings), "warning": " | ".join(res.warnings) or "none",
                     **(extra or {})})
        if traces is not None and res.excess_CD is not None:
            traces[f"step {step} {comp}"] = (res.excess_CD.tolist(), res.n_burnin_draws)
    return rows


def calibrate_lm(model, ids_NT: torch.Tensor, cfg: SGLDConfig, cal=None, component: str = "full",
                 on_point: Callable[[dict[str, Any]], None] | None = None):
    """`slt.calibrate.calibrate` for a language model's next-token loss on `ids_NT` (one component)."""
    from ontogeny.slt.calibrate import calibrate
    from ontogeny.slt.heads import component_masks
    from ontogeny.slt.lm import eager_attention, lm_batches, lm_loss_fn, model_params

    with eager_attention(model):
        return calibrate(lm_loss_fn(model), model_params(model), lm_batches(ids_NT, cfg), cfg, cal,
                         masks=component_masks(model, component), on_point=on_point)


def calibrate_and_record(model, ids_NT: torch.Tensor, cfg: SGLDConfig, out: Path, inputs: dict[str, str] | None = None,
                         cal=None, on_point: Callable[[dict[str, Any]], None] | None = None,
                         name: str = "llc_calibration"):
    """Calibrate SGLD on `model` (whole model) and write the grid: tables/<name>.parquet and
    figures/<name>.json under the run `out` (`llc_calibration` for the LLC curve, `susceptibility_calibration`
    for the sweep). Returns (chosen SGLDConfig, the columns for the estimate's table: calibrated lr, gamma,
    plateau flag, points passed) and the Calibration itself."""
    from ontogeny.slt.figures import calibration_plot
    from ontogeny.slt.tables import write_table
    from ontogeny.store import layout

    calib = calibrate_lm(model, ids_NT, cfg, cal, on_point=on_point)
    write_table(calib.rows, layout.table_path(out, name), cal, inputs)
    calibration_plot(calib.rows, layout.figures_dir(out), name)
    return calib.config, calib.summary(), calib


def susceptibility_run(model, tokenizer, cfg, out: Path, step: int, census=None, corpus=None,
                       census_pool: torch.Tensor | None = None, on_component: Callable[[str], None] | None = None,
                       on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Per-head χ for each probe, the response matrix, its PCA and the induction-head separation.

    Induction heads are the ones the head census names (`ontogeny.census.heads.named_heads` with
    `census`, a CensusConfig; default thresholds when None), scored at this checkpoint on the census's
    probes from `census_pool` (default: every non-special token, as the census); one definition of an
    induction head for the whole project. Writes tables/susceptibility_*.parquet and
    figures/response_matrix.*, figures/pc_scatter_heads.* under `out`.
    With `cfg.calibration` set, ε and γ are first chosen on the full model and the sampling set by the
    same procedure as the LLC's (`calibrate_and_record`; tables/susceptibility_calibration.parquet), and
    every component is sampled at the chosen settings: one sampler for the per-head LLCs and the χ.
    Returns the tables' rows, the named heads, the SGLD warnings and the response matrix.
    """
    from ontogeny.census.heads import CensusConfig, census_checkpoint, named_heads, scores_LH
    from ontogeny.series.corpus import build_corpus
    from ontogeny.series.tokenizer import ordinary_token_ids
    from ontogeny.slt.figures import pc_scatter, response_heatmap, trace_plot
    from ontogeny.slt.susceptibility import susceptibility_sweep, token_sets_from_corpus
    from ontogeny.slt.tables import head_pca_rows, head_separation, susceptibility_rows, write_table
    from ontogeny.store.run import tensor_hash

    census = CensusConfig() if census is None else CensusConfig.model_validate(
        census.model_dump(include=set(CensusConfig.model_fields)))
    corpus = corpus or build_corpus(seed=0)
    sampling, base_ids, probe_ids = token_sets_from_corpus(tokenizer, cfg, corpus=corpus)
    calibrated: dict[str, Any] = {}
    if cfg.calibration is not None:
        chosen, calibrated, _ = calibrate_and_record(model, sampling, cfg.sgld, out,
                                                     {"step": str(step), "ids_sampling": tensor_hash(sampling)},
                                                     cal=cfg.calibration, name="susceptibility_calibration")
        cfg = cfg.model_copy(update={"sgld": chosen})
    res = susceptibility_sweep(model, sampling, base_ids, probe_ids, cfg, on_component=on_component,
                               on_step=on_step)
    pool = ordinary_token_ids(tokenizer) if census_pool is None else census_pool
    # the ablation column is not used to name heads: skip its forward passes
    census_rows, _ = census_checkpoint(model, pool, census.model_copy(update={"ablate": False}), step)
    named = named_heads(census_rows, census, step)
    tables = susceptibility_rows(res, step)
    for row in tables["susceptibility_components"]:
        row.update({"lr": cfg.sgld.lr, "gamma": cfg.sgld.gamma, **calibrated})
    heads, pcs = head_pca_rows(res, scores_LH(census_rows, "induction", step), step,
                               induction_heads=named["induction"])
    sep = head_separation(heads, named["induction"], census.induction_threshold)
    tables.update({"susceptibility_heads": heads, "susceptibility_pcs": pcs, "susceptibility_separation": sep})
    inputs = {"step": str(step), "corpus": corpus.hash,
              **{f"ids_{k}": tensor_hash(v) for k, v in {"sampling": sampling, "base": base_ids, **probe_ids}.items()}}
    for name, rows in tables.items():
        write_table(rows, out / "tables" / f"{name}.parquet", cfg, inputs)
    response_heatmap(res.response_PK, res.probes, res.components, out / "figures")
    pc_scatter(heads, out / "figures")
    trace_plot({f"step {step} {c}": (r.excess_CD.tolist(), r.n_burnin_draws) for c, r in res.llc.items()
                if r.excess_CD is not None and c in ("full", *res.components[:3])}, out / "figures",
               "susceptibility_traces")
    return {"step": step, "heads": heads, "pcs": pcs[:5], "separation": sep, "warnings": res.warnings[:20],
            "sgld": {"lr": cfg.sgld.lr, "gamma": cfg.sgld.gamma, "n_beta": res.llc["full"].n_beta, **calibrated},
            "induction_heads": named["induction"], "induction_threshold": census.induction_threshold,
            "response": {"probes": res.probes, "components": res.components,
                         "matrix": res.response_PK.tolist() if hasattr(res.response_PK, "tolist") else res.response_PK}}

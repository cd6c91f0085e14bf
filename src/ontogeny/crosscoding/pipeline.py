"""The `crosscode` study: train a crosscoder over K checkpoints, then RelDec and presence classes, latent
scaling and the sparsity diagnostic; with models and tasks also IE/RelIE, zero-ablation validation and
top-activating contexts. Written as tables (`<run>/tables/`) and figure data (`<run>/figures/`).

Units: the crosscoder is one unit (`train_crosscoder_unit`, always trains and saves to
`store.layout.crosscoder_dir`); what to skip is decided by the study manifest, not here. A caller that
already has the crosscoder passes it to `run_crosscode(..., crosscoder=...)`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ontogeny.crosscoding.config import CrosscodeConfig
from ontogeny.crosscoding.latent_scaling import diagnose, fit_scales
from ontogeny.crosscoding.presence import sensitivity
from ontogeny.crosscoding.sources import CrosscodeInputs, from_store
from ontogeny.crosscoding.sparsity import diagnose as sparsity_diagnose
from ontogeny.crosscoding.tables import ratio_columns, to_rows
from ontogeny.dictionaries.crosscoder import CrossCoder, CrossCoderConfig, encode_in_chunks, fit_crosscoder
from ontogeny.dictionaries.train import TrainConfig
from ontogeny.errors import ConfigError
from ontogeny.dictionaries.rules import RULES
from ontogeny.store import layout
from ontogeny.store.run import config_hash, provenance
from ontogeny.store.tables import write_table

Progress = Callable[[str, int, int], None]


@dataclass
class CrosscodeResult:
    """The trained crosscoder, the written paths and a summary of headline numbers."""

    crosscoder: CrossCoder
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def crosscoder_dir(run_dir: Path, cfg: CrosscodeConfig) -> Path:
    """Where the crosscoder unit lives: dictionaries/crosscoder/<site>/steps_<a>-<b>-<c>[.<name>]/."""
    return layout.crosscoder_dir(run_dir, cfg.site, cfg.steps, cfg.name)


def _train_part(cfg: CrosscodeConfig) -> dict[str, Any]:
    keys = ("steps", "site", "d_sae", "rule", "l1_coefficient", "l1_reference_width", "k", "n_steps", "batch_size",
            "lr", "l1_warmup_frac", "seed")
    search = ("k_max", "k_search_phase_steps", "k_search_rel_tol", "k_search_abs_tol", "k_search_plateau",
              "k_search_max_phases")
    return {k: getattr(cfg, k) for k in keys + (search if cfg.k == "auto" else ())}


def crosscoder_config(cfg: CrosscodeConfig, d_in: int) -> CrossCoderConfig:
    """The crosscoder's shape and rule settings from a study's config (k = auto: search from k_max)."""
    auto = cfg.k == "auto" and RULES[cfg.rule].reads("k")
    k = min(cfg.k_max if cfg.k == "auto" else cfg.k, cfg.d_sae)
    return CrossCoderConfig(n_sources=len(cfg.steps), d_in=d_in, d_sae=cfg.d_sae, rule=cfg.rule,
                            l1_coefficient=cfg.l1_coefficient, l1_reference_width=cfg.l1_reference_width, k=k,
                            threshold_start_step=min(1000, cfg.n_steps // 4),
                            k_search_phase_steps=cfg.k_search_steps if auto else 0,
                            k_search_rel_tol=cfg.k_search_rel_tol, k_search_abs_tol=cfg.k_search_abs_tol,
                            k_search_plateau=cfg.k_search_plateau, k_search_max_phases=cfg.k_search_max_phases)


def train_crosscoder_unit(acts_NKD: torch.Tensor, cfg: CrosscodeConfig, folder: Path, tokens_hash: str,
                          progress: Progress | None = None) -> tuple[CrossCoder, list[dict[str, float]]]:
    """The crosscoder unit: train on stacked activations [N, K, D] and save to `folder` (atomically)."""
    cc_cfg = crosscoder_config(cfg, acts_NKD.shape[-1])
    tcfg = TrainConfig(lr=cfg.lr, sparsity_warmup_steps=int(cfg.l1_warmup_frac * cfg.n_steps),
                       lr_end_fraction=0.0, b_dec_init="zeros", log_every=max(1, cfg.n_steps // 50),
                       dead_tokens=max(cfg.batch_size * 50, 100_000))
    on_step = (lambda i, rows: progress("train", i, cfg.n_steps)) if progress else None
    cc, result = fit_crosscoder(acts_NKD, cc_cfg, tcfg, cfg.batch_size, cfg.n_steps, cfg.seed, on_step)
    stamp = provenance(_train_part(cfg), {"activations": tokens_hash})
    cc.save(folder, {"config_hash": config_hash({"train": _train_part(cfg), "tokens": tokens_hash}),
                     "steps": cfg.steps, "site": cfg.site, "provenance": stamp, "history": result.history})
    return cc, result.history


def latent_table(cc: CrossCoder, acts_NKD: torch.Tensor, cfg: CrosscodeConfig) -> tuple[list[dict], torch.Tensor]:
    """One row per latent: firing rate, RelDec family and presence class (normalised space), latent scaling."""
    codes_NF = torch.cat(list(encode_in_chunks(cc, acts_NKD)))
    with torch.no_grad():
        recon_NKD = cc.decode(codes_NF)
    names = cfg.names
    norms_FK = cc.normalised_decoder_norms().detach().numpy()
    cols = ratio_columns("reldec", norms_FK, names, cfg.low, cfg.high, cfg.presence_tau)
    freq_F = (codes_NF > 0).float().mean(0).numpy()
    cols["freq"] = freq_F
    cols["mean_act"] = codes_NF.mean(0).numpy()
    for m, n in enumerate(names):
        cols[f"dec_norm_{n}"] = norms_FK[:, m]
    alive = np.nonzero(freq_F > 0)[0]
    nu_eps = np.zeros_like(norms_FK)
    nu_rec = np.zeros_like(norms_FK)
    flags = {k: np.zeros(len(freq_F), dtype=bool) for k in ("shrinkage", "decoupling", "confirmed")}
    if len(alive):
        W_raw = cc.W_dec_FKD.detach() * cc.scale_K[None, :, None]      # decoder rows in normalised space
        s_K = cc.scale_K[None, :, None]
        sc = fit_scales(acts_NKD * s_K, codes_NF, recon_NKD * s_K, W_raw, alive)
        diag = diagnose(sc, norms_FK[alive], cfg.low, cfg.scaling_eps_threshold, cfg.scaling_rec_threshold)
        nu_eps[alive], nu_rec[alive] = sc["nu_eps"], sc["nu_rec"]
        for k in flags:
            flags[k][alive] = diag[k]
    for m, n in enumerate(names):
        cols[f"nu_eps_{n}"] = nu_eps[:, m]
        cols[f"nu_rec_{n}"] = nu_rec[:, m]
    cols.update(flags)
    rows = to_rows({}, cols, len(freq_F))
    for i, r in enumerate(rows):
        r["latent"] = i
    return rows, codes_NF


def contexts(codes_NF: torch.Tensor, latents: list[int], token_ids_ST: torch.Tensor, tokenizer,
             n: int, left: int) -> list[dict]:
    """Top-n activating tokens of each latent with `left` tokens of context; the token is in [[ ]]."""
    T = token_ids_ST.shape[1]
    rows = []
    for lat in latents:
        vals, idx = codes_NF[:, lat].topk(min(n, codes_NF.shape[0]))
        for rank, (v, r) in enumerate(zip(vals.tolist(), idx.tolist())):
            if v <= 0:
                break
            s, t = divmod(r, T)
            before = tokenizer.decode(token_ids_ST[s, max(0, t - left):t].tolist())
            tok = tokenizer.decode([int(token_ids_ST[s, t])])
            rows.append({"latent": lat, "rank": rank, "activation": v, "row": r,
                         "context": f"{before}[[{tok}]]"})
    return rows


def run_crosscode(run_dir: str | Path, cfg: CrosscodeConfig, store, series=None,
                  progress: Progress | None = None, crosscoder: CrossCoder | None = None) -> CrosscodeResult:
    """The whole study (module docstring).

    `store`: an ActivationStore or `CrosscodeInputs` (e.g. `sources.from_files`). `series`: a
    CheckpointSeries, or None for RelDec only (no IE/RelIE, ablations or contexts). `crosscoder`: a
    trained crosscoder over the same steps to analyse instead of training one.
    """
    from ontogeny.crosscoding.figures import write_figures

    run_dir = Path(run_dir)
    inputs = store if isinstance(store, CrosscodeInputs) else from_store(store, cfg.steps, cfg.site)
    acts_NKD = inputs.acts_NKD
    if acts_NKD.dim() != 3 or acts_NKD.shape[1] != len(cfg.steps):
        raise ConfigError(f"activations must be [N, {len(cfg.steps)}, D] for steps {cfg.steps}, "
                          f"got {tuple(acts_NKD.shape)}")
    if crosscoder is None:
        cc, history = train_crosscoder_unit(acts_NKD, cfg, crosscoder_dir(run_dir, cfg), inputs.tokens_hash,
                                            progress)
    else:
        cc, history = crosscoder.eval(), []
    stamp = provenance(cfg.model_dump(mode="json"), {"activations": inputs.tokens_hash,
                                                     "origin": inputs.origin,
                                                     "crosscoder": str(crosscoder_dir(run_dir, cfg))})
    tables: dict[str, list[dict]] = {"crosscoder_training": history}
    lat_rows, codes_NF = latent_table(cc, acts_NKD, cfg)
    tables["crosscoder_latents"] = lat_rows
    alive_F = np.array([r["freq"] > 0 for r in lat_rows])
    norms_FK = cc.normalised_decoder_norms().detach().numpy()
    tables["crosscoder_presence_sensitivity"] = sensitivity(norms_FK[alive_F], cfg.names, cfg.tau_grid)
    sparsity = sparsity_diagnose(cc, acts_NKD, codes_NF, min_cos=cfg.duplicate_cos, tau=cfg.presence_tau)
    tables["crosscoder_sparsity"] = [{"rule": cfg.rule, **k_columns(cc, cfg), **sparsity.row()}]
    summary: dict[str, Any] = {"tasks": {}}
    selected: set[int] = set()
    if series is not None and (cfg.tasks or cfg.pairs_file is not None):
        from ontogeny.crosscoding.effects import run_tasks

        models = _models(series, cfg.steps)
        cc = cc.to(next(models[0].parameters()).device)
        reldec_FK = np.array([[r[f"reldec_{n}"] for n in cfg.names] for r in lat_rows])
        task_tables, summary["tasks"], selected = run_tasks(models, cc, cfg, series.tokenizer, reldec_FK,
                                                            alive_F, progress)
        tables.update(task_tables)
        cc = cc.cpu()
    if series is not None and inputs.token_ids_ST is not None:
        shown = _shown_latents(lat_rows, cfg) | selected
        tables["crosscoder_contexts"] = contexts(codes_NF, sorted(shown), inputs.token_ids_ST, series.tokenizer,
                                                 cfg.n_contexts, cfg.context_tokens)
    paths = {name: write_table(layout.tables_dir(run_dir) / f"{name}.{cfg.tag}.parquet", rows, stamp)
             for name, rows in tables.items() if rows}
    paths.update(write_figures(layout.figures_dir(run_dir), tables, cfg))
    summary.update(_summary(lat_rows, history, cfg, tables["crosscoder_sparsity"][0],
                            tables["crosscoder_presence_sensitivity"]))
    return CrosscodeResult(cc, paths, summary)


def k_columns(cc: CrossCoder, cfg: CrosscodeConfig) -> dict[str, Any]:
    """k as configured ('auto' or a number), the k the crosscoder encodes with, and the search's trials."""
    if not RULES[cfg.rule].reads("k"):
        return {"k": "not used", "k_chosen": "not used", "k_search": "not used"}
    trials = cc.k_search_trials
    tried = ", ".join(f"{int(t['k'])}:{t['fvu']:.4g}{'' if t['accepted'] else ' rejected'}" for t in trials)
    return {"k": str(cfg.k), "k_chosen": cc.current_k, "k_search": tried or "not run"}


def _models(series, steps: list[int]) -> list[torch.nn.Module]:
    """One model per step, loaded fresh (the series caches only the last one)."""
    from transformers import AutoModelForCausalLM

    out = []
    for s in steps:
        ck = series.checkpoint(s)
        model = AutoModelForCausalLM.from_pretrained(ck.path, revision=ck.revision, cache_dir=series.cache_dir)
        out.append(model.eval().to(series.device))
    return out


def _shown_latents(lat_rows: list[dict], cfg: CrosscodeConfig) -> set[int]:
    """Per presence class, the alive latents with the largest mean activation."""
    by_class: dict[str, list[dict]] = {}
    for r in lat_rows:
        if r["freq"] > 0:
            by_class.setdefault(r["reldec_class"], []).append(r)
    out: set[int] = set()
    for rows in by_class.values():
        rows.sort(key=lambda r: -r["mean_act"])
        out.update(r["latent"] for r in rows[:cfg.features_per_class])
    return out


def _summary(lat_rows: list[dict], history: list[dict], cfg: CrosscodeConfig, sparsity: dict,
             sens_rows: list[dict]) -> dict[str, Any]:
    alive = [r for r in lat_rows if r["freq"] > 0]
    final = history[-1] if history else {}
    by_tau: dict[str, dict[str, int]] = {}
    for r in sens_rows:
        by_tau.setdefault(f"{r['tau']:g}", {})[r["class"]] = r["latents"]
    return {"alive": len(alive), "dead": len(lat_rows) - len(alive),
            "reldec_classes": dict(sorted(Counter(r["reldec_class"] for r in alive).items())),
            "presence_tau": cfg.presence_tau, "presence_sensitivity": by_tau,
            "paper_classes": dict(sorted(Counter(r["reldec_paper_class"] for r in alive).items())),
            "sparsity": sparsity,
            "artefacts": {"shrinkage": sum(r["shrinkage"] for r in alive),
                          "decoupling": sum(r["decoupling"] for r in alive),
                          "confirmed": sum(r["confirmed"] for r in alive)},
            "fvu": final.get("fvu", "not measured"), "l0": final.get("l0", "not measured"),
            **{f"fvu_{n}": final.get(f"fvu_{m}", "not measured") for m, n in enumerate(cfg.names)}}

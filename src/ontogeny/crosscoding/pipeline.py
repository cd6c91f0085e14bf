"""The `crosscode` study: train a crosscoder over K checkpoints, then RelDec, latent scaling, IE/RelIE on
minimal-pair tasks, zero-ablation validation and top-activating contexts, written as tables and figures.

Units: the crosscoder folder (`dictionaries/crosscoder/<site>/<steps>/`) is reused when its config hash
matches, so a rerun with new tasks or thresholds does not retrain. Tables go to `<run>/tables/`,
figures to `<run>/figures/`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ontogeny.causal.attribution import indirect_effects
from ontogeny.causal.tasks import MinimalPair, PairBatch, load_pairs, make_task, tokenize_pairs
from ontogeny.crosscoding.config import CrosscodeConfig
from ontogeny.crosscoding.latent_scaling import diagnose, fit_scales
from ontogeny.crosscoding.tables import ratio_columns, to_rows
from ontogeny.store.tables import write_table
from ontogeny.crosscoding.validate import ablation_effects, relative_ablation, spearman_table
from ontogeny.dictionaries.crosscoder import CrossCoder, CrossCoderConfig, encode_in_chunks, fit_crosscoder
from ontogeny.dictionaries.train import TrainConfig
from ontogeny.errors import ConfigError
from ontogeny.store.run import config_hash, provenance

Progress = Callable[[str, int, int], None]


@dataclass
class CrosscodeResult:
    """The trained crosscoder, the written paths and a summary of headline numbers."""

    crosscoder: CrossCoder
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def crosscoder_dir(run_dir: Path, cfg: CrosscodeConfig) -> Path:
    """Where the crosscoder unit lives: dictionaries/crosscoder/<site>/steps_<a>-<b>-<c>/."""
    leaf = "steps_" + "-".join(map(str, cfg.steps)) + (f".{cfg.name}" if cfg.name else "")
    return Path(run_dir) / "dictionaries" / "crosscoder" / cfg.site / leaf


def _train_part(cfg: CrosscodeConfig) -> dict[str, Any]:
    keys = ("steps", "site", "d_sae", "rule", "l1_coefficient", "k", "n_steps", "batch_size", "lr",
            "l1_warmup_frac", "seed")
    return {k: getattr(cfg, k) for k in keys}


def train_or_load(acts_NKD: torch.Tensor, cfg: CrosscodeConfig, folder: Path, tokens_hash: str,
                  progress: Progress | None = None) -> tuple[CrossCoder, list[dict[str, float]]]:
    """The crosscoder unit: load it when its config and inputs match, else train and save it."""
    want = config_hash({"train": _train_part(cfg), "tokens": tokens_hash})
    meta = folder / "cfg.json"
    if meta.exists() and json.loads(meta.read_text()).get("config_hash") == want:
        history = json.loads(meta.read_text()).get("history", [])
        return CrossCoder.load(folder), history
    cc_cfg = CrossCoderConfig(n_sources=len(cfg.steps), d_in=acts_NKD.shape[-1], d_sae=cfg.d_sae, rule=cfg.rule,
                              l1_coefficient=cfg.l1_coefficient, k=cfg.k,
                              threshold_start_step=min(1000, cfg.n_steps // 4))
    tcfg = TrainConfig(lr=cfg.lr, sparsity_warmup_steps=int(cfg.l1_warmup_frac * cfg.n_steps),
                       lr_end_fraction=0.0, b_dec_init="zeros", log_every=max(1, cfg.n_steps // 50),
                       dead_tokens=max(cfg.batch_size * 50, 100_000))
    on_step = (lambda i, rows: progress("train", i, cfg.n_steps)) if progress else None
    cc, result = fit_crosscoder(acts_NKD, cc_cfg, tcfg, cfg.batch_size, cfg.n_steps, cfg.seed, on_step)
    stamp = provenance(_train_part(cfg), {"activations": tokens_hash})
    cc.save(folder, {"config_hash": want, "steps": cfg.steps, "site": cfg.site, "provenance": stamp,
                     "history": result.history})
    return cc, result.history


def latent_table(cc: CrossCoder, acts_NKD: torch.Tensor, cfg: CrosscodeConfig) -> tuple[list[dict], torch.Tensor]:
    """One row per latent: firing rate, RelDec family (normalised space), latent-scaling flags."""
    codes_NF = torch.cat(list(encode_in_chunks(cc, acts_NKD)))
    with torch.no_grad():
        recon_NKD = cc.decode(codes_NF)
    names = cfg.names
    norms_FK = cc.normalised_decoder_norms().detach().numpy()
    cols = ratio_columns("reldec", norms_FK, names, cfg.low, cfg.high, empty=None)
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


def task_pairs(cfg: CrosscodeConfig, tokenizer) -> dict[str, PairBatch]:
    """Tokenised pairs per task (built-in tasks, plus the user's JSONL grouped by its `task` field)."""
    raw: dict[str, list[MinimalPair]] = {t: make_task(t, cfg.n_pairs, cfg.seed) for t in cfg.tasks}
    if cfg.pairs_file is not None:
        for p in load_pairs(cfg.pairs_file):
            raw.setdefault(p.task, []).append(p)
    return {t: tokenize_pairs(tokenizer, ps) for t, ps in raw.items()}


def top_latents(ie_KF: np.ndarray, k: int) -> list[int]:
    """Union over checkpoints of the top-k latents by |IE| (effects of exactly 0 excluded)."""
    out: set[int] = set()
    for row in np.abs(ie_KF):
        order = np.argsort(-row)[:k]
        out.update(int(i) for i in order if row[i] > 0)
    return sorted(out)


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


def run_crosscode(run_dir: str | Path, cfg: CrosscodeConfig, store, series,
                  progress: Progress | None = None) -> CrosscodeResult:
    """The whole study (see module docstring); `store` is an ActivationStore, `series` a CheckpointSeries."""
    from ontogeny.crosscoding.figures import write_figures

    run_dir = Path(run_dir)
    missing = [s for s in cfg.steps if s not in store.steps]
    if missing:
        raise ConfigError(f"steps {missing} are not in the activation store {store.root} (has {store.steps})")
    acts_NKD = store.load_stack(cfg.steps, cfg.site)
    cc, history = train_or_load(acts_NKD, cfg, crosscoder_dir(run_dir, cfg), store.tokens_hash, progress)
    stamp = provenance(cfg.model_dump(mode="json"), {"activations": store.tokens_hash,
                                                     "crosscoder": str(crosscoder_dir(run_dir, cfg))})
    tables: dict[str, list[dict]] = {"crosscoder_training": history}
    lat_rows, codes_NF = latent_table(cc, acts_NKD, cfg)
    tables["crosscoder_latents"] = lat_rows
    models = _models(series, cfg.steps)
    cc = cc.to(next(models[0].parameters()).device)
    effects_rows, valid_rows, rho_rows, selected = [], [], [], set()
    pairs_by_task = task_pairs(cfg, series.tokenizer)
    reldec_FK = np.array([[r[f"reldec_{n}"] for n in cfg.names] for r in lat_rows])
    pad = series.tokenizer.pad_token_id or 0
    summary: dict[str, Any] = {"tasks": {}}
    for ti, (task, pairs) in enumerate(pairs_by_task.items()):
        if progress:
            progress("tasks", ti, len(pairs_by_task))
        if len(pairs) == 0:
            summary["tasks"][task] = {"pairs": 0, "dropped": pairs.dropped}
            continue
        eff = indirect_effects(models, cc, cfg.site, pairs, cfg.ig, pad_id=pad)
        cols = ratio_columns("relie", eff.ie_KF.T, cfg.names, cfg.low, cfg.high, empty=0.5)
        for m, n in enumerate(cfg.names):
            cols[f"ie_{n}"] = eff.ie_KF[m]
        top = top_latents(eff.ie_KF, cfg.top_k)
        cols["top"] = np.isin(np.arange(cc.n_latents), top)
        rows = to_rows({"task": task}, cols, cc.n_latents)
        for i, r in enumerate(rows):
            r["latent"] = i
        effects_rows += rows
        selected.update(top)
        summary["tasks"][task] = {"pairs": len(pairs), "dropped": pairs.dropped,
                                  **{f"metric_{n}": float(eff.metric_K[m]) for m, n in enumerate(cfg.names)},
                                  **{f"acc_{n}": float(eff.accuracy_K[m]) for m, n in enumerate(cfg.names)},
                                  **{f"ie_err_{n}": float(eff.ie_err_K[m]) for m, n in enumerate(cfg.names)}}
        if cfg.ablate and top:
            abl = ablation_effects(models, cc, cfg.site, pairs, top, cfg.ig.batch_size, pad)
            rel_abl = relative_ablation(abl["delta_mu"])
            relie = eff.rel_ie()[top]
            for row, lat in enumerate(top):
                valid_rows.append({"task": task, "latent": lat,
                                   **{f"delta_mu_{n}": abl["delta_mu"][row, m] for m, n in enumerate(cfg.names)},
                                   **{f"delta_acc_{n}": abl["delta_acc"][row, m] for m, n in enumerate(cfg.names)},
                                   **{f"rel_ablation_{n}": rel_abl[row, m] for m, n in enumerate(cfg.names)}})
            for r in spearman_table(rel_abl, {"reldec": reldec_FK[top], "relie": relie}, cfg.names):
                rho_rows.append({"task": task, **r})
                if r["checkpoint"] == cfg.names[-1]:
                    summary["tasks"][task][f"rho_{r['against']}_{r['checkpoint']}"] = r["rho"]
        summary["tasks"][task]["top"] = len(top)
    if progress:
        progress("tasks", len(pairs_by_task), len(pairs_by_task))
    tables.update({"crosscoder_effects": effects_rows, "crosscoder_validation": valid_rows,
                   "crosscoder_spearman": rho_rows})
    shown = _shown_latents(lat_rows, cfg) | selected
    tables["crosscoder_contexts"] = contexts(codes_NF, sorted(shown), store.token_ids, series.tokenizer,
                                             cfg.n_contexts, cfg.context_tokens)
    paths = {name: write_table(run_dir / "tables" / f"{name}.{cfg.tag}.parquet", rows, stamp)
             for name, rows in tables.items() if rows}
    paths.update(write_figures(run_dir / "figures", tables, cfg))
    summary.update(_summary(lat_rows, history, cfg))
    return CrosscodeResult(cc, paths, summary)


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
    """Per RelDec class, the alive latents with the largest mean activation."""
    by_class: dict[str, list[dict]] = {}
    for r in lat_rows:
        if r["freq"] > 0:
            by_class.setdefault(r["reldec_class"], []).append(r)
    out: set[int] = set()
    for rows in by_class.values():
        rows.sort(key=lambda r: -r["mean_act"])
        out.update(r["latent"] for r in rows[:cfg.features_per_class])
    return out


def _summary(lat_rows: list[dict], history: list[dict], cfg: CrosscodeConfig) -> dict[str, Any]:
    alive = [r for r in lat_rows if r["freq"] > 0]
    counts: dict[str, int] = {}
    for r in alive:
        counts[r["reldec_class"]] = counts.get(r["reldec_class"], 0) + 1
    final = history[-1] if history else {}
    return {"alive": len(alive), "dead": len(lat_rows) - len(alive), "reldec_classes": counts,
            "artefacts": {"shrinkage": sum(r["shrinkage"] for r in alive),
                          "decoupling": sum(r["decoupling"] for r in alive),
                          "confirmed": sum(r["confirmed"] for r in alive)},
            "fvu": final.get("fvu"), "l0": final.get("l0"),
            **{f"fvu_{n}": final.get(f"fvu_{m}") for m, n in enumerate(cfg.names)}}

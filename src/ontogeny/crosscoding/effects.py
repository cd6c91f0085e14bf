"""The causal half of a crosscode study: IG indirect effects, RelIE and its classes, and the zero-ablation
validation, per minimal-pair task (needs the K models; RelDec does not).

RelIE classes are presence classes of |IE_m(i)| (`presence.effect_classes`) with "no effect" where a
latent's summed |IE| is at or below the task's noise floor (random-direction null, `IGConfig.n_null`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ontogeny.causal.attribution import indirect_effects
from ontogeny.causal.tasks import MinimalPair, PairBatch, load_pairs, make_task, tokenize_pairs
from ontogeny.crosscoding.config import CrosscodeConfig
from ontogeny.crosscoding.presence import NO_EFFECT, effect_classes
from ontogeny.crosscoding.reldec import rel_ie
from ontogeny.crosscoding.tables import ratio_columns, to_rows
from ontogeny.crosscoding.validate import ablation_effects, relative_ablation, spearman_table

Progress = Callable[[str, int, int], None]


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


def effect_columns(ie_KF: np.ndarray, floor: float, cfg: CrosscodeConfig) -> dict[str, np.ndarray]:
    """RelIE family of one task (`ratio_columns`), `ie_<s>`, `ie_total`, `no_effect` and the RelIE class."""
    ie_FK = np.asarray(ie_KF).T
    cols = ratio_columns("relie", ie_FK, cfg.names, cfg.low, cfg.high, cfg.presence_tau)
    cols["relie_class"] = effect_classes(ie_FK, cfg.names, floor, cfg.presence_tau)
    for m, n in enumerate(cfg.names):
        cols[f"ie_{n}"] = ie_FK[:, m]
    cols["ie_total"] = np.abs(ie_FK).sum(1)
    cols["no_effect"] = cols["relie_class"] == NO_EFFECT
    return cols


def run_tasks(models: list[torch.nn.Module], cc, cfg: CrosscodeConfig, tokenizer, reldec_FK: np.ndarray,
              alive_F: np.ndarray, progress: Progress | None = None) -> tuple[dict[str, list[dict]], dict, set[int]]:
    """Effects, validation and Spearman rows for every task, the per-task summary, and the top latents."""
    effects_rows, valid_rows, rho_rows, selected = [], [], [], set()
    pairs_by_task = task_pairs(cfg, tokenizer)
    pad = tokenizer.pad_token_id or 0
    summary: dict[str, Any] = {}
    for ti, (task, pairs) in enumerate(pairs_by_task.items()):
        if progress:
            progress("tasks", ti, len(pairs_by_task))
        if len(pairs) == 0:
            summary[task] = {"pairs": 0, "dropped": pairs.dropped}
            continue
        eff = indirect_effects(models, cc, cfg.site, pairs, cfg.ig, pad_id=pad)
        floor = eff.noise_floor(cfg.ig.null_quantile)
        cols = effect_columns(eff.ie_KF, floor, cfg)
        top = top_latents(eff.ie_KF, cfg.top_k)
        cols["top"] = np.isin(np.arange(cc.n_latents), top)
        rows = to_rows({"task": task, "noise_floor": floor}, cols, cc.n_latents)
        for i, r in enumerate(rows):
            r["latent"] = i
        effects_rows += rows
        selected.update(top)
        classes = Counter(cols["relie_class"][alive_F].tolist())
        summary[task] = {"pairs": len(pairs), "dropped": pairs.dropped,
                         **{f"metric_{n}": float(eff.metric_K[m]) for m, n in enumerate(cfg.names)},
                         **{f"acc_{n}": float(eff.accuracy_K[m]) for m, n in enumerate(cfg.names)},
                         **{f"ie_err_{n}": float(eff.ie_err_K[m]) for m, n in enumerate(cfg.names)},
                         "noise_floor": floor, "no_effect": int(classes.get(NO_EFFECT, 0)),
                         "relie_classes": dict(sorted(classes.items()))}
        if cfg.ablate and top:
            abl = ablation_effects(models, cc, cfg.site, pairs, top, cfg.ig.batch_size, pad)
            rel_abl = relative_ablation(abl["delta_mu"])
            relie = rel_ie(eff.ie_KF)[top]
            for row, lat in enumerate(top):
                valid_rows.append({"task": task, "latent": lat,
                                   **{f"delta_mu_{n}": abl["delta_mu"][row, m] for m, n in enumerate(cfg.names)},
                                   **{f"delta_acc_{n}": abl["delta_acc"][row, m] for m, n in enumerate(cfg.names)},
                                   **{f"rel_ablation_{n}": rel_abl[row, m] for m, n in enumerate(cfg.names)}})
            for r in spearman_table(rel_abl, {"reldec": reldec_FK[top], "relie": relie}, cfg.names):
                rho_rows.append({"task": task, **r})
                if r["checkpoint"] == cfg.names[-1]:
                    rho = r["rho"]
                    summary[task][f"rho_{r['against']}_{r['checkpoint']}"] = (
                        rho if np.isfinite(rho) else "not measured")
        summary[task]["top"] = len(top)
    if progress:
        progress("tasks", len(pairs_by_task), len(pairs_by_task))
    tables = {"crosscoder_effects": effects_rows, "crosscoder_validation": valid_rows,
              "crosscoder_spearman": rho_rows}
    return tables, summary, selected

"""The life-history stage of a run directory: read activations and dictionaries, analyse, write results.

Reads `<run>/activations/` (ActivationStore) and `<run>/dictionaries/step_XXXXXX/<site>/` (SAELens
layout), encodes every (step, site) on the shared token set, runs `analyse`, the load-bearing test on
the final checkpoint's model from `<run>/series/`, and writes `<run>/tables/*.parquet`,
`<run>/tables/lifehistory_summary.json` and `<run>/figures/lifehistory_*.json`. It always computes:
only the study manifest decides what to skip.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ontogeny.errors import StoreError
from ontogeny.lifehistory import figures
from ontogeny.lifehistory.analysis import LifeHistoryInputs, analyse
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.lifehistory.tables import (
    lineage_rows,
    precedence_rows,
    summary,
    survival_rows,
    write_table,
    write_tables,
)
from ontogeny.lifehistory.turnover import null_band, window
from ontogeny.store.layout import activations_dir, dictionary_dir, figures_dir, series_dir, tables_dir
from ontogeny.store.run import file_hash, provenance, write_json

Progress = Callable[[str, int, int], None]
SUMMARY = "lifehistory_summary.json"


def available(run_dir: Path, sites: Sequence[str] | None, steps: Sequence[int] | None) -> tuple[list[str], list[int]]:
    """Sites and steps that have both activations and a dictionary (all of them, or those asked for)."""
    from ontogeny.store.activations import ActivationStore

    store = ActivationStore(activations_dir(run_dir))
    sites = list(sites) if sites else store.sites
    have = [s for s in store.steps if all(dictionary_dir(run_dir, s, site).exists() for site in sites)]
    if steps:
        missing = [s for s in steps if s not in have]
        if missing:
            raise StoreError(f"steps {missing} lack activations or dictionaries for sites {sites} in {run_dir}")
        have = sorted(steps)
    if len(have) < 2:
        raise StoreError(f"{run_dir}: a life history needs >= 2 steps with activations and dictionaries for "
                         f"{sites}; found {have}")
    return sites, have


def special_token_mask(tokenizer, token_ids_N: torch.Tensor) -> torch.Tensor:
    """Tokens that are special (BOS/EOS/pad) or pure punctuation/whitespace, for the onset features."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids = torch.unique(token_ids_N).tolist()
    punct = set(string.punctuation) | set(string.whitespace)
    flag = {i: i in special or all(ch in punct for ch in tokenizer.decode([i])) for i in ids}
    return torch.tensor([flag[int(i)] for i in token_ids_N.tolist()], dtype=torch.bool)


@torch.no_grad()
def load_inputs(run_dir: Path, sites: Sequence[str], steps: Sequence[int], max_tokens: int | None,
                progress: Progress | None = None) -> tuple[LifeHistoryInputs, dict[str, Any]]:
    """Encode every (step, site) with its dictionary; returns the inputs and the final dictionaries."""
    from ontogeny.dictionaries.saelens_io import load_dictionary
    from ontogeny.store.activations import ActivationStore

    tick = progress or (lambda stage, done, total: None)
    store = ActivationStore(activations_dir(run_dir))
    seq_len = int(store.token_ids.shape[1])
    token_ids_N = store.token_ids.reshape(-1)
    n = token_ids_N.numel() if not max_tokens else min(max_tokens, token_ids_N.numel())
    codes: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    W_dec: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    final: dict[str, Any] = {}
    total, done = len(sites) * len(steps), 0
    for site in sites:
        for step in steps:
            path = dictionary_dir(run_dir, step, site)
            d = load_dictionary(path)
            acts_ND = store.load(step, site)[:n]
            codes[site].append(torch.cat([d.encode(x) for x in acts_ND.split(4096)]).float())
            W_dec[site].append(d.W_dec_FD.detach().float().clone())
            if step == steps[-1]:
                final[site] = d
            done += 1
            tick("encoding", done, total)
    special = None
    tok_dir = series_dir(run_dir) / "tokenizer"
    if tok_dir.exists():
        from ontogeny.series.tokenizer import load_tokenizer

        special = special_token_mask(load_tokenizer(tok_dir), token_ids_N[:n])
    return LifeHistoryInputs(list(steps), list(sites), codes, W_dec, token_ids_N[:n], special, seq_len), final


def input_hashes(run_dir: Path, sites: Sequence[str], steps: Sequence[int]) -> dict[str, str]:
    """Hashes of what the stage reads: the store's token ids and every dictionary folder."""
    from ontogeny.store.activations import ActivationStore

    out = {"tokens": ActivationStore(activations_dir(run_dir)).tokens_hash}
    for site in sites:
        for step in steps:
            out[f"{site}@{step}"] = file_hash(dictionary_dir(run_dir, step, site))
    return out


def run_lifehistory(run_dir: Path, cfg: LifeHistoryConfig, sites: Sequence[str] | None = None,
                    steps: Sequence[int] | None = None, max_tokens: int | None = 16384, ablate: bool = True,
                    ablation_seqs: int = 32, progress: Progress | None = None) -> dict[str, Any]:
    """The whole stage; returns the summary written to <run>/tables/lifehistory_summary.json.

    Every headline number sits beside its null (see `tables.summary`); `files` lists what was written.
    """
    run_dir = Path(run_dir)
    sites, steps = available(run_dir, sites, steps)
    hashes = input_hashes(run_dir, sites, steps)
    settings = {"config": cfg.model_dump(mode="json"), "sites": sites, "steps": steps, "max_tokens": max_tokens,
                "ablate": ablate, "ablation_seqs": ablation_seqs}
    stamp = provenance(settings, hashes)
    out_path = tables_dir(run_dir) / SUMMARY
    inputs, final_dicts = load_inputs(run_dir, sites, steps, max_tokens, progress)
    lh = analyse(inputs, cfg, progress)
    paths = write_tables(lh, tables_dir(run_dir), stamp, cfg.match)
    result: dict[str, Any] = summary(lh)
    figs = {"river": figures.river(lineage_rows(lh), steps),
            "turnover": figures.turnover([{"site": "all", **r} for r in null_band(lh.turnover, steps, "all")],
                                         window(steps, cfg.phase, cfg.phase.headline)),
            "survival": figures.survival(survival_rows(lh)), "carriers": figures.carriers(lh.carrier_curve),
            "sensitivity": figures.sensitivity(lh.sensitivity), "precedence": figures.precedence(precedence_rows(lh))}
    if ablate and lh.carriers:
        from ontogeny.causal.ablate import AblationRunner
        from ontogeny.lifehistory.loadbearing import load_bearing
        from ontogeny.series.load import load_series
        from ontogeny.store.activations import ActivationStore

        model = load_series(series_dir(run_dir), steps=[steps[-1]]).model(steps[-1])
        ids = ActivationStore(activations_dir(run_dir)).token_ids[:ablation_seqs]
        runner = AblationRunner(model, ids, final_dicts, cfg.ablation.batch_size, cfg.match.fire_eps)
        rows, abl = load_bearing(runner, lh, cfg.ablation, cfg.seed, progress)
        paths["ablations"] = write_table(tables_dir(run_dir) / "ablations.parquet", rows, stamp)
        result["ablation"] = abl
        figs["ablation"] = figures.ablation(rows)
    elif ablate:
        result["ablation"] = {"error": "not measured: no carriers to ablate"}
    paths.update({f"figure_{k}": v for k, v in figures.write_figures(figs, figures_dir(run_dir)).items()})
    result["files"] = {k: str(v) for k, v in paths.items()}
    result["provenance"] = stamp
    write_json(out_path, result)
    return result

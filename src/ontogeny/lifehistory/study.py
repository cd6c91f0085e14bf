"""The life-history stage of a run directory: read activations and dictionaries, analyse, write results.

Reads `<run>/activations/` (ActivationStore) and `<run>/dictionaries/step_XXXXXX/<site>/` (SAELens
layout), encodes every (step, site) on the shared token set, runs `analyse`, the load-bearing test on
the final checkpoint's model from `<run>/series/`, and writes `<run>/tables/*.parquet`,
`<run>/tables/lifehistory_summary.json` and `<run>/figures/lifehistory*`. The stage is skipped when its
summary already carries the same config and input hashes.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ontogeny.errors import StoreError
from ontogeny.lifehistory import figures
from ontogeny.lifehistory.analysis import LifeHistoryInputs, analyse
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.lifehistory.tables import lineage_rows, summary, survival_rows, write_table, write_tables
from ontogeny.store.run import file_hash, provenance, write_json

Progress = Callable[[str, int, int], None]
SUMMARY = "lifehistory_summary.json"


def dictionary_dir(run_dir: Path, step: int, site: str) -> Path:
    from ontogeny.series.load import step_dir

    return Path(run_dir) / "dictionaries" / step_dir(step) / site


def available(run_dir: Path, sites: Sequence[str] | None, steps: Sequence[int] | None) -> tuple[list[str], list[int]]:
    """Sites and steps that have both activations and a dictionary (all of them, or those asked for)."""
    from ontogeny.store.activations import ActivationStore

    store = ActivationStore(Path(run_dir) / "activations")
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
    store = ActivationStore(Path(run_dir) / "activations")
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
    series_dir = Path(run_dir) / "series"
    if (series_dir / "tokenizer").exists():
        from ontogeny.series.tokenizer import load_tokenizer

        special = special_token_mask(load_tokenizer(series_dir / "tokenizer"), token_ids_N[:n])
    return LifeHistoryInputs(list(steps), list(sites), codes, W_dec, token_ids_N[:n], special), final


def input_hashes(run_dir: Path, sites: Sequence[str], steps: Sequence[int]) -> dict[str, str]:
    """Hashes of what the stage reads: the store's token ids and every dictionary folder."""
    from ontogeny.store.activations import ActivationStore

    out = {"tokens": ActivationStore(Path(run_dir) / "activations").tokens_hash}
    for site in sites:
        for step in steps:
            out[f"{site}@{step}"] = file_hash(dictionary_dir(run_dir, step, site))
    return out


def run_lifehistory(run_dir: Path, cfg: LifeHistoryConfig, sites: Sequence[str] | None = None,
                    steps: Sequence[int] | None = None, max_tokens: int | None = 16384, ablate: bool = True,
                    ablation_seqs: int = 32, force: bool = False,
                    progress: Progress | None = None) -> dict[str, Any]:
    """The whole stage; returns the summary written to <run>/tables/lifehistory_summary.json."""
    run_dir = Path(run_dir)
    sites, steps = available(run_dir, sites, steps)
    hashes = input_hashes(run_dir, sites, steps)
    settings = {"config": cfg.model_dump(mode="json"), "sites": sites, "steps": steps, "max_tokens": max_tokens,
                "ablate": ablate, "ablation_seqs": ablation_seqs}
    stamp = provenance(settings, hashes)
    out_path = run_dir / "tables" / SUMMARY
    if out_path.exists() and not force:
        old = json.loads(out_path.read_text())
        if old.get("provenance", {}).get("config") == stamp["config"] and old["provenance"].get("inputs") == hashes:
            return {**old, "skipped": True}
    inputs, final_dicts = load_inputs(run_dir, sites, steps, max_tokens, progress)
    lh = analyse(inputs, cfg, progress)
    paths = write_tables(lh, run_dir / "tables", stamp, cfg.match)
    result: dict[str, Any] = summary(lh)
    figs = {"river": figures.river(lineage_rows(lh), steps),
            "turnover": figures.turnover([r.__dict__ for r in lh.turnover], lh.cutoff),
            "survival": figures.survival(survival_rows(lh))}
    if ablate and lh.carriers:
        from ontogeny.causal.ablate import AblationRunner
        from ontogeny.lifehistory.loadbearing import load_bearing
        from ontogeny.series.load import load_series
        from ontogeny.store.activations import ActivationStore

        model = load_series(run_dir / "series", steps=[steps[-1]]).model(steps[-1])
        ids = ActivationStore(run_dir / "activations").token_ids[:ablation_seqs]
        runner = AblationRunner(model, ids, final_dicts, cfg.ablation.batch_size, cfg.match.fire_eps)
        rows, abl = load_bearing(runner, lh, cfg.ablation, cfg.seed, progress)
        paths["ablations"] = write_table(run_dir / "tables" / "ablations.parquet", rows, stamp)
        result["ablation"] = abl
        figs["ablation"] = figures.ablation(rows)
    elif ablate:
        result["ablation"] = {"error": "no carriers to ablate"}
    paths.update(figures.write_figures(figs, run_dir / "figures"))
    result["files"] = {k: str(v) for k, v in paths.items()}
    result["provenance"] = stamp
    write_json(out_path, result)
    return result

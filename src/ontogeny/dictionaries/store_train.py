"""Units of work over an activation store: train one dictionary per (checkpoint, site), all units in
one pass over their data, each written atomically to `<run>/dictionaries/step_{step:06d}/<site>/`.
A unit already on disk is skipped, so a stopped run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.saelens_io import CFG_FILE, save_dictionary
from ontogeny.dictionaries.train import TrainConfig, train_many
from ontogeny.errors import StoreError
from ontogeny.series.load import step_dir
from ontogeny.store.run import tensor_hash


def dictionary_dir(run: str | Path, step: int, site: str) -> Path:
    """Where the dictionary of one (checkpoint, site) lives in a run directory."""
    return Path(run) / "dictionaries" / step_dir(step) / site


def train_store_dictionaries(store, run: str | Path, dict_cfg: dict[str, Any], train_cfg: TrainConfig,
                             steps: Sequence[int] | None = None, sites: Sequence[str] | None = None,
                             batch_size: int = 1024, n_epochs: int = 1, seed: int = 0, force: bool = False,
                             units_per_pass: int | None = None, on_step: Callable[[int, int], Any] | None = None,
                             ) -> list[dict[str, Any]]:
    """Train the missing (step, site) dictionaries of `store`; return one summary row per unit.

    `dict_cfg` holds DictionaryConfig fields except d_in (taken from the store). Units are trained
    `units_per_pass` at a time (None: all at once), each group in one shared pass over its data, so
    memory holds one group's activations. `on_step(i, total)` follows the shared steps of all groups.
    """
    steps = list(store.steps if steps is None else steps)
    sites = list(store.sites if sites is None else sites)
    for s in steps:
        if s not in store.steps:
            raise StoreError(f"step {s} is not complete in the store at {store.root} (steps: {store.steps})")
    units = [(st, si) for st in steps for si in sites
             if force or not (dictionary_dir(run, st, si) / CFG_FILE).exists()]
    if not units:
        return []
    n_rows = store.token_ids.numel()
    if n_rows < batch_size:
        raise StoreError(f"the store holds {n_rows} tokens per unit, fewer than batch_size={batch_size}")
    per_group = (n_rows // batch_size) * n_epochs
    size = units_per_pass or len(units)
    groups = [units[i:i + size] for i in range(0, len(units), size)]
    rows: list[dict[str, Any]] = []
    for g, group in enumerate(groups):
        tick = (lambda i, total, g=g: on_step(g * per_group + i, len(groups) * per_group)) if on_step else None
        rows += _train_group(store, run, group, dict_cfg, train_cfg, batch_size, n_epochs, seed, tick)
    return rows


def _train_group(store, run, units, dict_cfg, train_cfg, batch_size, n_epochs, seed, on_step):
    """One shared pass over a group of units (see `train_store_dictionaries`)."""
    acts = {u: store.load(*u) for u in units}
    n_rows = next(iter(acts.values())).shape[0]
    total = (n_rows // batch_size) * n_epochs
    models = [Dictionary(DictionaryConfig(d_in=acts[u].shape[1], **dict_cfg), seed=seed) for u in units]
    gen = torch.Generator().manual_seed(seed)

    def data():
        for _ in range(n_epochs):
            perm = torch.randperm(n_rows, generator=gen)  # one shuffle shared by all units (same tokens)
            for i in range(0, n_rows - batch_size + 1, batch_size):
                idx = perm[i:i + batch_size]
                yield [acts[u][idx] for u in units]

    results = train_many(models, data(), train_cfg, total_steps=total,
                         on_step=(lambda i, _rows: on_step(i, total)) if on_step else None)
    rows = []
    for (step, site), model, res in zip(units, models, results, strict=True):
        path = dictionary_dir(run, step, site)
        meta = {"checkpoint_step": step, "site": site, "hook_name": site, "tokens_hash": store.tokens_hash,
                "train_config": train_cfg.model_dump(mode="json"), "training_tokens": res.tokens,
                "input_scale_folded": res.scale, "final_metrics": res.final()}
        save_dictionary(model, path, meta, inputs={"activations": tensor_hash(acts[(step, site)])})
        rows.append({"step": step, "site": site, "path": str(path),
                     **{k: v for k, v in res.final().items() if k in ("fvu", "l0", "dead_frac")}})
    return rows

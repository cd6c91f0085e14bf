"""Units of work that train dictionaries: one per (checkpoint, site), written atomically to
`<run>/dictionaries/step_{step:06d}/<site>/`; a unit already on disk is skipped, so a stopped run resumes.

Two data paths: `train_store_dictionaries` reads cached activations (an ActivationStore, small studies
and tests); `stream_checkpoint_dictionaries` streams them from one forward pass of the checkpoint over
corpus windows (`dictionaries/stream.py`), every site of the checkpoint training in the same pass, for a
token budget per dictionary (`StreamConfig.training_tokens`). `evaluate_dictionaries` measures each on
the held-out evaluation set and `write_dictionaries_table` writes `tables/dictionaries.parquet`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.saelens_io import CFG_FILE, save_dictionary
from ontogeny.dictionaries.train import TrainConfig, train_many
from ontogeny.errors import ConfigError, StoreError
from ontogeny.series.load import step_dir
from ontogeny.store.run import file_hash, tensor_hash


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


# ---------------------------------------------------------------------------------------- streamed units
def stream_train(model, windows, dictionaries: dict[str, torch.nn.Module], train_cfg: TrainConfig,
                 stream, warm_sites: Sequence[str] = (), device: str | torch.device | None = None,
                 on_step: Callable[[int, int], Any] | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Train every site's dictionary of one checkpoint in ONE streamed pass; returns (results, scales).

    `model` runs forward on `windows.batches(stream.forward_seqs)`; all sites of `dictionaries` are
    captured at once, mixed in a `MixingBuffer` of `stream.buffer_tokens` rows on `device` and fed to
    `train_many` for `stream.n_steps` steps of `stream.batch_size` tokens (the forward reads exactly
    n_steps x batch_size token positions). With `stream.normalize`, each
    site's rows are scaled by s = sqrt(D / mean ||x||^2) estimated on the first buffer fill and s is folded
    into the weights afterwards. Sites in `warm_sites` hold a raw-space dictionary of the previous
    checkpoint: it is brought into this checkpoint's scaled space (fold by 1/s) and trained with an
    L2 pull of weight `stream.l2_pull` toward that starting point (`AnchoredDictionary`).
    """
    import itertools

    from ontogeny.dictionaries.stream import (AnchoredDictionary, MixingBuffer, activation_chunks, input_scale,
                                              limit_rows)

    sites = list(dictionaries)
    n_steps = stream.n_steps
    if n_steps < 1:
        raise ConfigError(f"training_tokens={stream.training_tokens} is less than one batch of {stream.batch_size}")
    train_device = torch.device(device) if device is not None else next(dictionaries[sites[0]].parameters()).device
    # exactly the budget's rows are read: the buffer's last fill does not run the forward past the budget
    chunks = limit_rows(activation_chunks(model, windows.batches(stream.forward_seqs), sites, train_device),
                        n_steps * stream.batch_size)
    scales = dict.fromkeys(sites, 1.0)
    if stream.normalize:
        first, n = [], 0
        while n < min(stream.buffer_tokens, n_steps * stream.batch_size):
            first.append(next(chunks))
            n += first[-1][sites[0]].shape[0]
        scales = {s: input_scale(torch.cat([c[s] for c in first])) for s in sites}
        chunks = itertools.chain(_drain(first), chunks)  # drained: the buffer's copy is the only one kept
    models = []
    for s in sites:
        d = dictionaries[s]
        if s in warm_sites:
            d.fold_input_scale(1.0 / scales[s])  # raw space of the previous dictionary -> this scaled space
            d = AnchoredDictionary(d, stream.l2_pull)
        models.append(d)
    buffer = MixingBuffer(stream.buffer_tokens, stream.batch_size, stream.seed, train_device)
    data = ([b[s] * scales[s] for s in sites] for b in buffer.batches(chunks))
    tcfg = train_cfg.model_copy(update={"normalize": "none"})
    results = train_many(models, itertools.islice(data, n_steps), tcfg, total_steps=n_steps,
                         on_step=(lambda i, _rows: on_step(i, n_steps)) if on_step else None)
    for s, m in zip(sites, models, strict=True):
        if scales[s] != 1.0:
            m.fold_input_scale(scales[s])
    out = {}
    for s, r in zip(sites, results, strict=True):
        r.scale = scales[s]
        out[s] = r
    return out, {"max_buffer_rows": buffer.max_held, **{f"scale/{s}": v for s, v in scales.items()}}


def _drain(items: list) -> Any:
    """Yield and forget the items of a list (so a consumed chunk is freed, not kept by the list)."""
    items.reverse()
    while items:
        yield items.pop()


def stream_checkpoint_dictionaries(run: str | Path, model, step: int, sites: Sequence[str], dict_cfg: dict[str, Any],
                                   train_cfg: TrainConfig, stream, windows, previous_step: int | None = None,
                                   source: dict[str, Any] | None = None, device: str | torch.device | None = None,
                                   force: bool = False, on_step: Callable[[int, int], Any] | None = None,
                                   ) -> list[dict[str, Any]]:
    """The streamed unit of work of one checkpoint: train the missing sites' dictionaries, save each atomically.

    `dict_cfg` holds DictionaryConfig fields except d_in (each site's width comes from the model).
    Initialisation (`stream.init`): "shared" builds `Dictionary(cfg, seed=stream.seed)`, the same
    weights for a site at every checkpoint; "warm" loads the dictionary of `previous_step` (which must be
    on disk; None at the first checkpoint, which then uses the shared init). `source` describes the
    training tokens (corpus hash, split) for the metadata. Each cfg.json records `training_tokens`.
    """
    from ontogeny.dictionaries.saelens_io import load_dictionary
    from ontogeny.dictionaries.stream import StreamConfig

    from ontogeny.series.sites import site_width

    stream = stream if isinstance(stream, StreamConfig) else StreamConfig.model_validate(stream)
    todo = [s for s in sites if force or not (dictionary_dir(run, step, s) / CFG_FILE).exists()]
    if not todo:
        return []
    warm = stream.init == "warm" and previous_step is not None
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    dicts, init_from = {}, {}
    for s in todo:
        if warm:
            prev = dictionary_dir(run, previous_step, s)
            if not (prev / CFG_FILE).exists():
                raise StoreError(f"warm start of step {step}, site {s}: no dictionary of the previous step "
                                 f"{previous_step} at {prev}")
            dicts[s] = load_dictionary(prev, device=dev).train()
            init_from[s] = {"step": previous_step, "hash": file_hash(prev)}
        else:
            cfg = DictionaryConfig(d_in=site_width(model, s), **dict_cfg)
            dicts[s] = Dictionary(cfg, seed=stream.seed).to(dev)
            init_from[s] = {"seed": stream.seed}
    results, info = stream_train(model, windows, dicts, train_cfg, stream, warm_sites=todo if warm else (),
                                 device=dev, on_step=on_step)
    rows = []
    for s in todo:
        d, res = dicts[s], results[s]
        path = dictionary_dir(run, step, s)
        meta = {"checkpoint_step": step, "site": s, "hook_name": s, "training_tokens": res.tokens,
                "training_steps": res.steps, "init": "warm" if warm else "shared", "init_from": init_from[s],
                "stream_config": stream.model_dump(mode="json"), "train_config": train_cfg.model_dump(mode="json"),
                "training_source": dict(source or {}), "input_scale_folded": res.scale,
                "final_metrics": res.final()}
        save_dictionary(d.cpu(), path, meta, inputs={"training_source": json.dumps(source or {}, sort_keys=True)})
        rows.append({"step": step, "site": s, "path": str(path), "training_tokens": res.tokens,
                     **{f"train_{k}": v for k, v in res.final().items() if k in ("fvu", "l0", "dead_frac")}})
    return rows


def evaluate_dictionaries(run: str | Path, model, store, step: int, sites: Sequence[str],
                          splice_seqs: int = 16) -> list[dict[str, Any]]:
    """Held-out quality of one checkpoint's dictionaries: FVU, L0, dead fraction on the evaluation set's
    activations (`store`, never trained on) and CE/KL recovered when spliced into `model` on its first
    `splice_seqs` sequences (model None: the splice columns say "not measured" as None)."""
    from ontogeny.dictionaries.metrics import reconstruction_metrics, splice_metrics
    from ontogeny.dictionaries.saelens_io import load_dictionary, read_cfg

    rows = []
    for s in sites:
        path = dictionary_dir(run, step, s)
        d = load_dictionary(path)
        meta = read_cfg(path).get("metadata") or {}
        rec = reconstruction_metrics(d, store.load(step, s))
        row = {"step": step, "site": s, "training_tokens": meta.get("training_tokens"),
               "init": meta.get("init"), "eval_tokens": int(store.token_ids.numel()),
               "fvu": rec["fvu"], "l0": rec["l0"], "dead_frac": rec["dead_frac"], "dense_frac": rec["dense_frac"],
               "ce_clean": None, "ce_dict": None, "ce_zero": None, "ce_recovered": None, "kl_recovered": None}
        if model is not None and splice_seqs > 0:
            dev = next(model.parameters()).device
            sp = splice_metrics(model, store.token_ids[:splice_seqs], s, d.to(dev))
            row.update({k: (None if isinstance(sp[k], float) and math.isnan(sp[k]) else sp[k])
                        for k in ("ce_clean", "ce_dict", "ce_zero", "ce_recovered", "kl_recovered")})
        rows.append(row)
    return rows


def write_dictionaries_table(run: str | Path, rows: Sequence[dict[str, Any]], config: Any = None) -> Path:
    """`<run>/tables/dictionaries.parquet`: one held-out quality row per (step, site), sorted."""
    from ontogeny.store.run import provenance
    from ontogeny.store.tables import write_table

    rows = sorted(rows, key=lambda r: (r["step"], r["site"]))
    return write_table(Path(run) / "tables" / "dictionaries.parquet", rows, provenance(config))


QUALITY = (("fvu", "held-out FVU"), ("l0", "L0 (active latents per token)"), ("dead_frac", "dead fraction"),
           ("ce_recovered", "CE loss recovered (spliced)"))


def quality_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Range (min, max) of each held-out quality column over the dictionaries, and the least training tokens.

    None where no dictionary measured it (the report says "not measured")."""
    out: dict[str, Any] = {}
    for col, _ in QUALITY:
        vals = [r[col] for r in rows if r.get(col) is not None]
        out[f"{col}_min"], out[f"{col}_max"] = (min(vals), max(vals)) if vals else (None, None)
    toks = [r["training_tokens"] for r in rows if r.get("training_tokens") is not None]
    out["training_tokens_min"] = min(toks) if toks else None
    return out


def dictionaries_figure(rows: Sequence[dict[str, Any]], fig_dir: str | Path) -> Path:
    """Figure `dictionaries_quality`: each dictionary's held-out FVU, L0, dead fraction and CE recovered
    against its checkpoint (log step axis, step 0 drawn at 1), one line per site; hover gives the values."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ontogeny.store.figures import write_figure

    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in QUALITY])
    sites = sorted({r["site"] for r in rows})
    for i, (col, _) in enumerate(QUALITY):
        for site in sites:
            pts = sorted((r["step"], r[col]) for r in rows if r["site"] == site and r.get(col) is not None)
            fig.add_trace(go.Scatter(x=[max(s, 1) for s, _ in pts], y=[v for _, v in pts], name=site,
                                     legendgroup=site, showlegend=i == 0, mode="lines+markers",
                                     customdata=[s for s, _ in pts],
                                     hovertemplate="step %{customdata}: %{y:.4g}<extra>" + site + "</extra>"),
                          row=1 + i // 2, col=1 + i % 2)
    fig.update_xaxes(type="log", title_text="step")
    toks = sorted({r.get("training_tokens") for r in rows if r.get("training_tokens") is not None})
    fig.update_layout(title="Dictionaries on held-out tokens (trained on "
                      f"{', '.join(f'{t:,}' for t in toks) or 'an unknown number of'} tokens each)")
    return write_figure(fig_dir, "dictionaries_quality", fig)

"""Bring your own dictionaries: turn a folder of SAELens/sparsify dictionaries into a run directory.

Why: dictionaries trained elsewhere (SAELens, sparsify) over a checkpoint series should get the same life
history and report as those trained here. Input layout (a step folder is `step_000128` or `step1000`):

    DICTS/step_XXXXXX/<site>/cfg.json + sae_weights.safetensors     (SAELens)
    DICTS/step_XXXXXX/<site>/cfg.json + sae.safetensors             (sparsify; `layers.N` = blocks.N.hook_resid_post)

plus the evaluation activations, from one of
  - a checkpoint series (a local folder, a Hub repo or a run's `series/`): the shared token set is
    captured at every step (`ontogeny.series.capture`), and the ablation can run later; or
  - activation files: `ACTS/step_XXXXXX/<site>.safetensors` (key `acts`, [tokens, d_in]) or
    `ACTS/step_XXXXXX/activations.safetensors` (one key per site; key `acts` when the step has one site),
    the same tokens in the same order at every step; optionally `ACTS/tokens.safetensors` (key
    `token_ids`, [S, T] with S*T = tokens). Without it the store's token ids are the positions 0..N-1
    (recorded as such), so nothing token-specific (special-token masks, ablation) can run.

Everything is checked before anything is written (mismatched d_in, a step with activations but no
dictionary or the reverse, a site missing at a step, different token counts) and the run directory is
written as one atomic folder: on any error nothing is left behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.errors import ConfigError, StoreError
from ontogeny.series.capture import TokenSetConfig
from ontogeny.store.run import atomic_path, file_hash, provenance, tensor_hash, write_json

_SPARSIFY_SITE = re.compile(r"^layers\.(\d+)$")
IMPORT_RECORD = "import.json"


class ImportConfig(BaseModel):
    """`ontogeny import` settings: the evaluation token set (when captured from a series) and capture batch."""

    model_config = ConfigDict(extra="forbid")

    tokens: TokenSetConfig = Field(default_factory=TokenSetConfig, description="the shared evaluation token set "
                                   "captured from the series (unused with activation files)")
    batch_size: int = Field(32, gt=0, description="sequences per forward pass when capturing from the series")
    sites: list[str] | None = Field(None, description="import only these sites (default: every site found)")


def site_name(folder: str) -> str:
    """The hook site a dictionary folder stands for: its name, or `blocks.N.hook_resid_post` for sparsify's
    `layers.N` (the residual stream after layer N)."""
    m = _SPARSIFY_SITE.match(folder)
    return f"blocks.{m.group(1)}.hook_resid_post" if m else folder


def _step_folders(root: Path, what: str) -> dict[int, Path]:
    from ontogeny.series.load import _STEP_RE, parse_step

    if not root.is_dir():
        raise StoreError(f"{what} folder {root} does not exist")
    out: dict[int, Path] = {}
    for d in sorted(root.iterdir()):
        if _STEP_RE.match(d.name):
            step = parse_step(d.name)
            if step in out:
                raise StoreError(f"{what}: step {step} appears twice ({out[step].name} and {d.name}) in {root}")
            out[step] = d
    if not out:
        raise StoreError(f"{what} folder {root} holds no step folders (step_XXXXXX/)")
    return dict(sorted(out.items()))


def scan_dictionaries(root: str | Path, sites: list[str] | None = None) -> dict[int, dict[str, Path]]:
    """{step: {site: folder}} of a dictionaries folder; every step must hold the same sites."""
    root = Path(root)
    found: dict[int, dict[str, Path]] = {}
    for step, d in _step_folders(root, "dictionaries").items():
        units = {}
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (sub / "cfg.json").exists():
                raise StoreError(f"dictionary folder {sub} has no cfg.json")
            site = site_name(sub.name)
            if site in units:
                raise StoreError(f"step {step}: two dictionary folders stand for site {site} ({units[site].name}, "
                                 f"{sub.name})")
            units[site] = sub
        if sites:
            units = {s: p for s, p in units.items() if s in sites}
        if not units:
            raise StoreError(f"step folder {d} holds no dictionary" + (f" for sites {sites}" if sites else ""))
        found[step] = units
    all_sites = sorted({s for u in found.values() for s in u})
    for step, units in found.items():
        missing = [s for s in all_sites if s not in units]
        if missing:
            raise StoreError(f"step {step} has no dictionary for site(s) {missing} (other steps have them) in {root}")
    if len(found) < 2:
        raise StoreError(f"{root}: a life history needs dictionaries at >= 2 steps; found {sorted(found)}")
    return found


def scan_activations(root: str | Path, dict_units: dict[int, dict[str, Path]]) -> dict[int, dict[str, tuple[Path, str]]]:
    """{step: {site: (file, key)}} of an activation folder, matched one to one with the dictionaries."""
    root = Path(root)
    steps = _step_folders(root, "activations")
    extra = sorted(set(steps) - set(dict_units))
    if extra:
        raise StoreError(f"step(s) {extra} have activations in {root} but no dictionary")
    lacking = sorted(set(dict_units) - set(steps))
    if lacking:
        raise StoreError(f"step(s) {lacking} have dictionaries but no activations in {root}")
    out: dict[int, dict[str, tuple[Path, str]]] = {}
    for step, d in steps.items():
        combined = d / "activations.safetensors"
        keys = _keys(combined) if combined.exists() else []
        units = {}
        for site in dict_units[step]:
            single = d / f"{site}.safetensors"
            if single.exists():
                units[site] = (single, "acts")
            elif site in keys:
                units[site] = (combined, site)
            elif keys == ["acts"] and len(dict_units[step]) == 1:
                units[site] = (combined, "acts")
            else:
                raise StoreError(f"step {step}: no activations for site {site} in {d} (expected {single.name} "
                                 f"with key 'acts', or key {site!r} in activations.safetensors)")
        out[step] = units
    return out


def _keys(file: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as fh:
            return sorted(fh.keys())
    except Exception as e:  # safetensors raises several types for a corrupt file
        raise StoreError(f"cannot read {file}: {e}") from e


def _shape(file: Path, key: str) -> tuple[int, ...]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as fh:
            if key not in fh.keys():
                raise StoreError(f"{file} has no tensor {key!r} (keys: {sorted(fh.keys())})")
            return tuple(fh.get_slice(key).get_shape())
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"cannot read {file}: {e}") from e


def _read(file: Path, key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as fh:
        return fh.get_tensor(key)


def import_run(dictionaries: str | Path, run: str | Path, series: str | Path | None = None,
               activations: str | Path | None = None, cfg: ImportConfig | None = None,
               revisions: list[str] | None = None, device: str = "cpu", progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Write run directory `run` from foreign dictionaries plus a series or activation files (module docstring).

    `revisions` name Hub revisions when `series` is a Hub repo id. Returns a summary (steps, sites,
    widths, tokens, mode). `run` must not exist yet (or be empty).
    """
    from ontogeny.dictionaries.saelens_io import load_dictionary, read_cfg, save_dictionary
    from ontogeny.store.layout import dictionary_dir

    cfg = cfg or ImportConfig()
    tick = progress or (lambda stage, done, total: None)
    if (series is None) == (activations is None):
        raise ConfigError("ontogeny import needs exactly one of a series (--series) or activation files "
                          "(--activations)")
    run = Path(run)
    if run.exists() and any(run.iterdir()):
        raise StoreError(f"run directory {run} exists and is not empty; choose a new folder")
    units = scan_dictionaries(dictionaries, cfg.sites)
    steps = list(units)
    sites = sorted(units[steps[0]])

    loaded: dict[tuple[int, str], Any] = {}
    width: dict[str, int] = {}
    for i, (step, site) in enumerate((st, si) for st in steps for si in sites):
        d = load_dictionary(units[step][site])
        if site in width and width[site] != d.cfg.d_in:
            raise StoreError(f"site {site}: the dictionary at step {step} has d_in={d.cfg.d_in} but earlier steps "
                             f"have d_in={width[site]} ({units[step][site]})")
        width[site] = d.cfg.d_in
        loaded[(step, site)] = d
        tick("checking dictionaries", i + 1, len(steps) * len(sites))

    if activations is not None:
        act_units = scan_activations(activations, units)
        n_tokens: dict[tuple[int, str], int] = {}
        for step in steps:
            for site in sites:
                file, key = act_units[step][site]
                shape = _shape(file, key)
                if len(shape) != 2:
                    raise StoreError(f"{file}[{key}]: activations must be [tokens, d_in], got shape {shape}")
                if shape[1] != width[site]:
                    raise StoreError(f"{file}[{key}]: activations have d_in={shape[1]} but the dictionary of site "
                                     f"{site} at step {step} has d_in={width[site]}")
                n_tokens[(step, site)] = shape[0]
        if len(set(n_tokens.values())) != 1:
            counts = {f"step {s} {si}": n for (s, si), n in n_tokens.items()}
            raise StoreError(f"activation files hold different token counts (every step and site must hold the "
                             f"same tokens): {counts}")
        n = next(iter(n_tokens.values()))
        tok_file = Path(activations) / "tokens.safetensors"
        if tok_file.exists():
            token_ids = _read(tok_file, "token_ids") if "token_ids" in _keys(tok_file) else None
            if token_ids is None or token_ids.dim() != 2 or token_ids.numel() != n:
                raise StoreError(f"{tok_file}: key 'token_ids' must be [S, T] with S*T = {n} tokens")
            token_note = f"from {tok_file}"
        else:
            token_ids = torch.arange(n, dtype=torch.long).view(1, n)
            token_note = "positions 0..N-1 (no token ids given)"
        ser = None
    else:
        from ontogeny.series.capture import series_corpus, shared_token_ids
        from ontogeny.series.load import load_series
        from ontogeny.series.sites import site_width

        ser = load_series(series, revisions=revisions, device=device)
        absent = [s for s in steps if s not in ser.steps]
        if absent:
            raise StoreError(f"step(s) {absent} have dictionaries but are not checkpoints of the series {series} "
                             f"(steps: {ser.steps})")
        ser = ser.subset(steps)
        for site in sites:
            w = site_width(ser.model(steps[0]), site)
            if w != width[site]:
                raise StoreError(f"site {site}: the series' activations have width {w} but the dictionaries have "
                                 f"d_in={width[site]}")
        corpus = series_corpus(series if Path(series).exists() else None)
        token_ids = shared_token_ids(ser.tokenizer, corpus, cfg.tokens)
        token_note = f"shared token set of the series' corpus ({corpus.hash[:12]})"

    record = {"mode": "series" if ser is not None else "activations", "steps": steps, "sites": sites,
              "widths": width, "dictionaries": str(Path(dictionaries).resolve()),
              "series": str(series) if series is not None else None,
              "activations": str(Path(activations).resolve()) if activations is not None else None,
              "token_ids": token_note, "n_tokens": int(token_ids.numel()), "config": cfg.model_dump(mode="json")}
    with atomic_path(run) as tmp:
        tmp.mkdir()
        for i, ((step, site), d) in enumerate(loaded.items()):
            src = units[step][site]
            raw = read_cfg(src)
            meta = {**(getattr(d, "metadata", None) or {}), "checkpoint_step": step, "site": site, "hook_name": site,
                    "imported_from": str(src.resolve()), "imported_cfg": raw}
            meta.pop("provenance", None)
            save_dictionary(d, dictionary_dir(tmp, step, site), meta, inputs={"source": file_hash(src)})
            tick("writing dictionaries", i + 1, len(loaded))
        store_root = tmp / "activations"
        if ser is None:
            from ontogeny.store.activations import ActivationStore, write_store_meta, write_unit

            write_store_meta(store_root, token_ids, sites, width, steps, record,
                             {"activations": str(Path(activations).resolve())})
            store = ActivationStore(store_root)
            for i, step in enumerate(steps):
                for site in sites:
                    file, key = act_units[step][site]
                    acts = _read(file, key).float()
                    if not torch.isfinite(acts).all():
                        raise StoreError(f"{file}[{key}]: activations contain NaN or inf")
                    write_unit(store, step, site, acts)
                tick("writing activations", i + 1, len(steps))
        else:
            from ontogeny.series.capture import cache_activations
            from ontogeny.series.load import parse_step, write_pointer

            cache_activations(ser, token_ids, sites, store_root, batch_size=cfg.batch_size, config=record,
                              on_step=lambda s: tick("capturing", steps.index(s) + 1, len(steps)))
            source = Path(series)
            write_pointer(tmp / "series", str(source.resolve()) if source.exists() else str(series),
                          [r for r in revisions if parse_step(r) in steps] if revisions else None)
            if source.exists() and (source / "tokenizer").is_dir():
                import shutil

                shutil.copytree(source / "tokenizer", tmp / "series" / "tokenizer")
        write_json(tmp / IMPORT_RECORD, {**record, "tokens_hash": tensor_hash(token_ids),
                                         **provenance(cfg.model_dump(mode="json"))})
    return record


def read_import_record(run: str | Path) -> dict[str, Any]:
    """The `import.json` of an imported run ({} for a run made by a study)."""
    p = Path(run) / IMPORT_RECORD
    return json.loads(p.read_text()) if p.exists() else {}

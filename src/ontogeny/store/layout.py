"""The run directory's layout: every path and file name of a study, in one place.

Why one module: analyses, the study pipeline and the CLI all find each other's artifacts through these
functions, so moving a folder or renaming a file is one edit here (DESIGN.md, "A run directory").

    <run>/series/step_000128/            checkpoints (or source.json pointing elsewhere), tokenizer/
    <run>/activations/                   the activation store (store.json, tokens.safetensors, step_*/<site>/)
    <run>/dictionaries/step_000128/<site>/   cfg.json + sae_weights.safetensors (SAELens layout)
    <run>/dictionaries/crosscoder/<site>/steps_<a>-<b>[.<name>]/
    <run>/tables/<name>.parquet          analysis tables
    <run>/figures/<name>.json            figure data (plotly JSON; the report renders it)
    <run>/manifest/<unit>.json           one entry per finished unit of the study
    <run>/study.json                     the study's record (status, config, versions, units)
    <run>/features/lineage_<id>.json     feature-page data (the report's per-lineage pages)
    <run>/report/index.html              the report
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

STEP_DIR = "step_{step:06d}"
CFG_FILE = "cfg.json"  # SAELens: a dictionary's config beside its weights
WEIGHTS_FILE = "sae_weights.safetensors"  # SAELens: a dictionary's weights
STORE_META = "store.json"  # activation store: sites, widths, steps, tokens hash
TOKENS_FILE = "tokens.safetensors"  # activation store: the shared token ids
UNIT_DONE = "done.json"  # activation store: written last in each (step, site) folder
STUDY_RECORD = "study.json"
LOCK_FILE = ".lock"


def step_dir(step: int) -> str:
    """Folder name of a checkpoint step (`step_000128`), in a series, the store and dictionaries alike."""
    return STEP_DIR.format(step=step)


def series_dir(run: str | Path) -> Path:
    return Path(run) / "series"


def activations_dir(run: str | Path) -> Path:
    return Path(run) / "activations"


def activation_unit_dir(store_root: str | Path, step: int, site: str) -> Path:
    """Folder of one (step, site) unit inside an activation store."""
    return Path(store_root) / step_dir(step) / site


def dictionaries_dir(run: str | Path) -> Path:
    return Path(run) / "dictionaries"


def dictionary_dir(run: str | Path, step: int, site: str) -> Path:
    """Where the dictionary of one (checkpoint, site) lives in a run directory."""
    return dictionaries_dir(run) / step_dir(step) / site


def crosscoder_dir(run: str | Path, site: str, steps: Sequence[int], name: str = "") -> Path:
    """Where a crosscoder over `steps` at `site` lives: dictionaries/crosscoder/<site>/steps_<a>-<b>[.<name>]/."""
    leaf = "steps_" + "-".join(map(str, steps)) + (f".{name}" if name else "")
    return dictionaries_dir(run) / "crosscoder" / site / leaf


def tables_dir(run: str | Path) -> Path:
    return Path(run) / "tables"


def table_path(run: str | Path, name: str) -> Path:
    """`<run>/tables/<name>.parquet`."""
    return tables_dir(run) / f"{name}.parquet"


def figures_dir(run: str | Path) -> Path:
    return Path(run) / "figures"


def emergence_dir(run: str | Path) -> Path:
    """The study's synthetic-task sweep folder (its own runs/, tables/, figures/)."""
    return Path(run) / "emergence"


def manifest_dir(run: str | Path) -> Path:
    return Path(run) / "manifest"


def manifest_entry(run: str | Path, unit: str) -> Path:
    """Manifest file of one unit (`llc/step_000010` -> manifest/llc__step_000010.json)."""
    return manifest_dir(run) / f"{unit.replace('/', '__')}.json"


def study_record(run: str | Path) -> Path:
    return Path(run) / STUDY_RECORD


def lock_path(run: str | Path) -> Path:
    return Path(run) / LOCK_FILE


def features_dir(run: str | Path) -> Path:
    """Feature-page data (`lineage_<id>.json`, `index.json`) that the report's feature pages read."""
    return Path(run) / "features"


def report_dir(run: str | Path) -> Path:
    return Path(run) / "report"


def report_page(run: str | Path) -> Path:
    return report_dir(run) / "index.html"

"""The run manifest: which units of a study are complete, under which key, with which artifacts.

A unit's key hashes its own config and its dependencies' keys, so a changed config invalidates exactly
the units that depend on the change. A unit counts as complete only when its manifest entry, written
atomically after its outputs, carries the current key AND every artifact it recorded is still there
unchanged: each entry lists its files with size, mtime and SHA-256 (hashed once, on write), so a
truncated shard, a NaN written into a file or a deleted checkpoint folder is noticed on the next run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ontogeny.store import layout
from ontogeny.store.run import config_hash, file_hash, provenance, write_json

# Files several units rewrite (the activation store's index): not owned by any one unit.
SHARED_FILES = {f"activations/{layout.STORE_META}"}


def unit_key(config: Any, dep_keys: list[str]) -> str:
    """Key of a unit: its config and the keys of the units it reads."""
    return config_hash({"config": config, "deps": sorted(dep_keys)})


def snapshot(run_dir: str | Path) -> dict[str, tuple[int, int]]:
    """Every artifact file under the run directory: {relative path: (size, mtime_ns)}.

    Leaves out the manifest itself, study.json, the lock and temporaries of writes in flight.
    """
    root = Path(run_dir)
    out: dict[str, tuple[int, int]] = {}
    skip_top = {layout.manifest_dir(root).name, layout.STUDY_RECORD, layout.LOCK_FILE}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip_top and not d.startswith(".")]
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if f.startswith(".") or (rel_dir == "." and f in skip_top):
                continue
            st = os.stat(os.path.join(dirpath, f))
            rel = f if rel_dir == "." else f"{rel_dir}/{f}"
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def new_artifacts(run_dir: str | Path, before: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """Files created or changed since `before` (a `snapshot`), each with size, mtime and content hash."""
    after = snapshot(run_dir)
    out = {}
    for rel, stat in sorted(after.items()):
        if before.get(rel) != stat and rel not in SHARED_FILES:
            out[rel] = {"size": stat[0], "mtime_ns": stat[1], "sha256": file_hash(Path(run_dir) / rel)}
    return out


def verify_artifacts(run_dir: str | Path, artifacts: dict[str, dict[str, Any]], full: bool = False) -> list[str]:
    """What is wrong with a unit's recorded artifacts ([] when intact), one phrase per file.

    Cheap by default: size and mtime; a file whose mtime moved (a copy, a touch) is hashed. With `full`,
    every file is hashed.
    """
    problems = []
    for rel, want in artifacts.items():
        p = Path(run_dir) / rel
        try:
            st = p.stat()
        except FileNotFoundError:
            problems.append(f"{rel} is missing")
            continue
        if st.st_size != want["size"]:
            problems.append(f"{rel} changed size ({want['size']} -> {st.st_size} bytes)")
        elif (full or st.st_mtime_ns != want["mtime_ns"]) and file_hash(p) != want["sha256"]:
            problems.append(f"{rel} changed content")
    return problems


class Manifest:
    """`<run>/manifest/<unit name>.json` per completed unit."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.root = layout.manifest_dir(run_dir)

    def path(self, name: str) -> Path:
        return layout.manifest_entry(self.run_dir, name)

    def entry(self, name: str) -> dict[str, Any] | None:
        p = self.path(name)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            return None

    def is_done(self, name: str, key: str) -> bool:
        e = self.entry(name)
        return e is not None and e.get("key") == key

    def problems(self, name: str, full: bool = False) -> list[str]:
        """What is wrong with a finished unit's artifacts on disk ([] when all are intact)."""
        e = self.entry(name)
        return verify_artifacts(self.run_dir, (e or {}).get("artifacts", {}), full)

    def record(self, name: str, key: str, config: Any, result: dict[str, Any], seconds: float,
               artifacts: dict[str, dict[str, Any]] | None = None) -> None:
        write_json(self.path(name), {"unit": name, "key": key, "result": result, "seconds": seconds,
                                     "artifacts": artifacts or {},
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     **provenance(config)})

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("*.json"))] if self.root.exists() else []

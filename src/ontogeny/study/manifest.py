"""The run manifest: which units of a study are complete, under which key.

A unit's key hashes its own config and its dependencies' keys, so a changed config invalidates exactly
the units that depend on the change. A unit counts as complete only when its manifest entry, written
atomically after its outputs, carries the current key.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ontogeny.store import layout
from ontogeny.store.run import config_hash, provenance, write_json


def unit_key(config: Any, dep_keys: list[str]) -> str:
    """Key of a unit: its config and the keys of the units it reads."""
    return config_hash({"config": config, "deps": sorted(dep_keys)})


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

    def record(self, name: str, key: str, config: Any, result: dict[str, Any], seconds: float) -> None:
        write_json(self.path(name), {"unit": name, "key": key, "result": result, "seconds": seconds,
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     **provenance(config)})

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("*.json"))] if self.root.exists() else []

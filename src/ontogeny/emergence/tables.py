"""Parquet tables of the emergence lab, written atomically with their provenance in the file's metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ontogeny.errors import StoreError
from ontogeny.store.run import _json_default, atomic_path

PROVENANCE_KEY = b"ontogeny.provenance"


def write_table(path: str | Path, rows: Sequence[Mapping[str, Any]], prov: Mapping[str, Any]) -> Path:
    """Write rows (flat dicts with the same keys) as Parquet; the provenance stamp goes in the metadata."""
    path = Path(path)
    table = pa.Table.from_pylist([dict(r) for r in rows])
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(prov, sort_keys=True, default=_json_default).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a Parquet table as dicts; StoreError naming the file when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"table {path} does not exist (run `ontogeny emergence sweep` first)")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise StoreError(f"cannot read table {path}: {e}") from e


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance stamp stored in a table's metadata."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else {}

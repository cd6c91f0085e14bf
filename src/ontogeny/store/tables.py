"""The run's tables: Parquet files stamped with their provenance, queried together with DuckDB.

Every analysis writes its rows with `write_table` (atomically; the provenance stamp goes in the Parquet
schema metadata under `ontogeny.provenance`); `query` sees each `tables/<name>.parquet` as a view `<name>`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ontogeny.errors import StoreError
from ontogeny.store.run import _json_default, atomic_path

PROVENANCE_KEY = b"ontogeny.provenance"


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def write_table(path: str | Path, rows: Sequence[Mapping[str, Any]], stamp: Mapping[str, Any],
                schema: pa.Schema | None = None) -> Path:
    """Write rows (flat dicts) as Parquet atomically, with the provenance stamp in the schema metadata."""
    path = Path(path)
    table = pa.Table.from_pylist([{k: _plain(v) for k, v in r.items()} for r in rows], schema=schema)
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(stamp, sort_keys=True, default=_json_default).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    return path


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a Parquet table as dicts; StoreError naming the file when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"table {path} does not exist")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise StoreError(f"cannot read table {path}: {e}") from e


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance stamp stored in a table's metadata ({} when there is none)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else {}


def connect(run_dir: str | Path):
    """An in-memory DuckDB connection with a view per Parquet table of the run."""
    import duckdb

    tables = Path(run_dir) / "tables"
    files = sorted(tables.glob("*.parquet"))
    if not files:
        raise StoreError(f"no Parquet tables under {tables}")
    con = duckdb.connect()
    for f in files:
        if not pq.read_schema(f).names:  # an empty table written without columns has nothing to query
            continue
        con.execute(f"CREATE VIEW \"{f.stem}\" AS SELECT * FROM read_parquet('{f.as_posix()}')")
    return con


def query(run_dir: str | Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL over the run's tables; returns (column names, rows)."""
    import duckdb

    con = connect(run_dir)
    try:
        cur = con.execute(sql)
    except duckdb.Error as e:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        raise StoreError(f"query failed: {e} (tables: {', '.join(sorted(names))})") from None
    return [d[0] for d in cur.description], cur.fetchall()

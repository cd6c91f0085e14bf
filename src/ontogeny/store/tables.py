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


def _open_tables(tables: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Each readable `tables/*.parquet` as a lazy Arrow dataset by view name, and the unreadable ones' errors."""
    import pyarrow.dataset as ds

    good: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for f in sorted(tables.glob("*.parquet")):
        try:
            schema = pq.read_schema(f)  # reads the footer: a truncated or foreign file fails here
            if not schema.names:  # an empty table written without columns has nothing to query
                continue
            good[f.stem] = ds.dataset(str(f), format="parquet")
        except Exception as e:  # pyarrow raises several types for a corrupt file
            broken[f.stem] = f"{f} is not a readable Parquet file ({type(e).__name__}: {e})"
    return good, broken


def connect(run_dir: str | Path):
    """A read-only, in-memory DuckDB connection with a view per readable Parquet table of the run.

    Why this way: the SQL comes from the user, so the connection has no file system access
    (`enable_external_access = false`, locked): COPY ... TO, read_csv('/etc/passwd') and ATTACH fail.
    The tables are handed over as Arrow datasets registered by name (no SQL is built from file names),
    so a table file named like SQL stays a name. Unreadable tables are left out and listed in
    `con.ontogeny_broken` ({view name: reason}); the others still answer.
    """
    import duckdb

    tables = Path(run_dir) / "tables"
    files = sorted(tables.glob("*.parquet"))
    if not files:
        raise StoreError(f"no Parquet tables under {tables}")
    good, broken = _open_tables(tables)
    con = duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})
    for name, dataset in good.items():
        con.register(name, dataset)
    return con, broken


def query(run_dir: str | Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL over the run's tables; returns (column names, rows). Errors name the tables (and broken files)."""
    import duckdb

    con, broken = connect(run_dir)
    try:
        cur = con.execute(sql)
        return [d[0] for d in cur.description or []], cur.fetchall()
    except duckdb.Error as e:
        hit = [reason for name, reason in broken.items() if name.lower() in sql.lower()]
        if hit:
            raise StoreError("; ".join(hit)) from None
        names = sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall())
        extra = f"; unreadable: {'; '.join(broken.values())}" if broken else ""
        raise StoreError(f"query failed: {e} (tables: {', '.join(names)}){extra}") from None

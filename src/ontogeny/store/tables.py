"""The run's tables (Parquet) as one DuckDB database: each `tables/<name>.parquet` is a view `<name>`."""

from __future__ import annotations

from pathlib import Path

from ontogeny.errors import StoreError


def connect(run_dir: str | Path):
    """An in-memory DuckDB connection with a view per Parquet table of the run."""
    import duckdb

    tables = Path(run_dir) / "tables"
    files = sorted(tables.glob("*.parquet"))
    if not files:
        raise StoreError(f"no Parquet tables under {tables}")
    import pyarrow.parquet as pq

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

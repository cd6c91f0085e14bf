"""Hardening (issue 16), the cheap cases: nothing here trains a series.

One process per run directory (the lock, and taking over a killed holder's lock), validation before any
file is written, a study.json that tells the truth on failure, artifact verification, read-only SQL with
the three injections, and clear errors for permission, disk-full and corrupt-file cases.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ontogeny.cli import app
from ontogeny.errors import SeriesError, SiteError, StoreError
from ontogeny.store.lock import RunLock
from ontogeny.store.tables import query, write_table
from ontogeny.study.demo import tiny_config
from ontogeny.study.manifest import new_artifacts, snapshot, verify_artifacts
from ontogeny.study.pipeline import run_study

runner = CliRunner()


def _out(res) -> str:
    return " ".join(res.output.split())  # rich wraps long lines


# -- one process per run directory -------------------------------------------------------------------
def test_second_holder_gets_an_error_naming_the_pid(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(StoreError, match=rf"in use by process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: free again
        pass


def test_a_killed_holders_lock_is_taken_over(tmp_path):
    script = (f"from ontogeny.store.lock import RunLock; RunLock({str(tmp_path)!r}).acquire(); "
              "print('locked', flush=True); import time; time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=rf"in use by process {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    with RunLock(tmp_path):  # the kernel dropped the dead holder's lock
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_study_command_refuses_a_held_run_dir_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "s.toml").write_text("[series.train]\nn_steps = 5\n")
    with RunLock(run):
        res = runner.invoke(app, ["study", str(tmp_path / "s.toml"), "--run-dir", str(run)])
    assert res.exit_code == 2 and f"in use by process {os.getpid()}" in _out(res)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


# -- validate before writing ----------------------------------------------------------------------------
def test_unknown_site_fails_before_any_file(tmp_path):
    cfg = tiny_config().model_copy(deep=True)
    cfg.activations.sites = ["blocks.7.hook_resid_post"]
    with pytest.raises(SiteError, match="blocks.7.hook_resid_post"):
        run_study(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_dictionary_fields_fail_before_any_file(tmp_path):
    cfg = tiny_config().model_copy(deep=True)
    cfg.dictionaries.k = 10_000
    with pytest.raises(Exception, match="k"):
        run_study(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_mixed_architecture_source_fails_before_any_file(tmp_path):
    from ontogeny.testing import make_tiny_series

    a = make_tiny_series(tmp_path / "a", steps=(0,))
    make_tiny_series(tmp_path / "b", steps=(1,), hidden_size=48)
    (tmp_path / "b" / "step_000001").rename(a / "step_000001")
    cfg = tiny_config().model_copy(deep=True)
    cfg.series.source = str(a)
    with pytest.raises(SeriesError, match="different architecture"):
        run_study(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- study.json tells the truth ---------------------------------------------------------------------------
@pytest.mark.parametrize(("exc", "status"), [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")])
def test_failed_or_interrupted_study_is_recorded(tmp_path, monkeypatch, exc, status):
    from ontogeny.study import stages

    def broken(run_dir, cfg_json, arg):
        raise exc

    monkeypatch.setattr(stages, "series_unit", broken)
    with pytest.raises(type(exc)):
        run_study(tiny_config(), tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "study.json").read_text())
    assert rec["status"] == status and rec["failure"]["units"] == ["series"]
    assert type(exc).__name__ in rec["failure"]["error"]
    with RunLock(tmp_path / "run"):  # the lock went with the failed run
        pass


# -- artifact verification ----------------------------------------------------------------------------------
def test_artifacts_are_recorded_and_verified(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "old.txt").write_text("before")
    before = snapshot(tmp_path)
    (tmp_path / "tables" / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "u.json").write_text("{}")  # the manifest is not an artifact
    (tmp_path / ".a.tmp").mkdir()  # nor a temporary
    arts = new_artifacts(tmp_path, before)
    assert list(arts) == ["tables/a.bin"] and arts["tables/a.bin"]["size"] == 100
    assert verify_artifacts(tmp_path, arts) == []
    os.utime(tmp_path / "tables" / "a.bin", ns=(1, 1))  # a copy or a touch: mtime moved, content the same
    assert verify_artifacts(tmp_path, arts) == []
    with open(tmp_path / "tables" / "a.bin", "r+b") as fh:  # same size, other bytes (a NaN written in)
        fh.write(b"y")
    os.utime(tmp_path / "tables" / "a.bin", ns=(arts["tables/a.bin"]["mtime_ns"],) * 2)  # even at the same mtime
    assert verify_artifacts(tmp_path, arts) == []  # the cheap check trusts size + mtime ...
    assert verify_artifacts(tmp_path, arts, full=True) == ["tables/a.bin changed content"]  # ... --verify does not
    (tmp_path / "tables" / "a.bin").write_bytes(b"x" * 50)
    assert verify_artifacts(tmp_path, arts) == ["tables/a.bin changed size (100 -> 50 bytes)"]
    (tmp_path / "tables" / "a.bin").unlink()
    assert verify_artifacts(tmp_path, arts) == ["tables/a.bin is missing"]


# -- read-only SQL ------------------------------------------------------------------------------------------
@pytest.fixture()
def run_with_tables(tmp_path) -> Path:
    run = tmp_path / "it's a run"  # a quote in the path broke every query before
    write_table(run / "tables" / "llc.parquet", [{"step": 0, "llc_mean": 1.5}, {"step": 4, "llc_mean": 2.5}], {})
    return run


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 42) TO '{out}/inj.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "ATTACH '{out}/other.db' AS other",
    "SET enable_external_access = true",
])
def test_query_has_no_file_access(run_with_tables, sql):
    out = run_with_tables.parent
    with pytest.raises(StoreError, match="query failed"):
        query(run_with_tables, sql.format(out=out))
    assert not (out / "inj.csv").exists() and not (out / "other.db").exists()
    assert query(run_with_tables, "SELECT sum(llc_mean) AS s FROM llc") == (["s"], [(4.0,)])


def test_a_table_named_like_sql_stays_a_name(run_with_tables):
    name = "x'); COPY (SELECT 42) TO 'inj.csv'; SELECT ('"
    write_table(run_with_tables / "tables" / f"{name}.parquet", [{"a": 1}], {})
    cwd = os.getcwd()
    os.chdir(run_with_tables.parent)
    try:
        assert query(run_with_tables, "SELECT count(*) FROM llc")[1] == [(2,)]
        assert query(run_with_tables, f'SELECT a FROM "{name.replace(chr(34), chr(34) * 2)}"')[1] == [(1,)]
    finally:
        os.chdir(cwd)
    assert not (run_with_tables.parent / "inj.csv").exists()


def test_a_corrupt_table_is_named_and_the_others_still_answer(run_with_tables):
    (run_with_tables / "tables" / "events.parquet").write_bytes(b"PAR1 truncated")
    assert query(run_with_tables, "SELECT count(*) FROM llc")[1] == [(2,)]
    with pytest.raises(StoreError, match=r"events\.parquet is not a readable Parquet file"):
        query(run_with_tables, "SELECT * FROM events")
    res = runner.invoke(app, ["query", "SELECT * FROM events", "--run-dir", str(run_with_tables)])
    assert res.exit_code == 2 and "events.parquet is not a readable Parquet file" in _out(res)
    assert "Traceback" not in res.output


# -- clear errors instead of tracebacks ------------------------------------------------------------------
def test_read_only_run_dir_is_a_clear_error(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", denied)  # as root, chmod would not stop us: simulate the refusal
    with pytest.raises(StoreError, match="permission denied"):
        RunLock(tmp_path).acquire()


def test_disk_full_names_the_path(tmp_path, monkeypatch):
    import ontogeny.commands.cache as cache_cmd

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "acts" / "store.json"))

    monkeypatch.setattr(cache_cmd, "build_config", full)
    res = runner.invoke(app, ["cache", str(tmp_path), "--out", str(tmp_path / "acts")])
    assert res.exit_code == 2 and "No space left on device" in _out(res) and "store.json" in _out(res)


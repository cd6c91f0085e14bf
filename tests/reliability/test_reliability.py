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
from ontogeny.store.run import file_hash
from ontogeny.store.tables import query, write_table
from ontogeny.study.demo import tiny_config
from ontogeny.study.manifest import new_artifacts, snapshot, verify_artifacts
from ontogeny.study.pipeline import run_study

runner = CliRunner()


def _out(res) -> str:
    return " ".join(res.output.split())  # rich wraps long lines


def _has(res, text: str) -> bool:
    """`text` is in the command's output (rich wraps long lines, even inside a path: compared without spaces)."""
    return "".join(str(text).split()) in "".join(res.output.split())


def _files(root: Path) -> dict[str, str]:
    """Every file under `root` with its content hash: what is on disk, to compare before and after."""
    return {str(p.relative_to(root)): file_hash(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _copy(run: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, dst))


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
        (run / ".features.json.x1y2.tmp").mkdir()  # the holder's write in flight
        res = runner.invoke(app, ["study", str(tmp_path / "s.toml"), "--run-dir", str(run)])
    assert res.exit_code == 2 and f"in use by process {os.getpid()}" in _out(res)
    assert sorted(p.name for p in run.iterdir()) == [".features.json.x1y2.tmp", ".lock"]  # not deleted


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
    before = _files(out)
    with pytest.raises(StoreError, match="query failed"):
        query(run_with_tables, sql.format(out=out))
    res = runner.invoke(app, ["query", sql.format(out=out), "--run-dir", str(run_with_tables)])
    assert res.exit_code == 2 and _has(res, "error: query failed") and "Traceback" not in res.output
    assert _files(out) == before  # no inj.csv, no other.db
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
    before = _files(run_with_tables.parent)
    assert query(run_with_tables, "SELECT count(*) FROM llc")[1] == [(2,)]
    with pytest.raises(StoreError, match=r"events\.parquet is not a readable Parquet file"):
        query(run_with_tables, "SELECT * FROM events")
    res = runner.invoke(app, ["query", "SELECT * FROM events", "--run-dir", str(run_with_tables)])
    assert res.exit_code == 2 and _has(res, f"{run_with_tables}/tables/events.parquet is not a readable Parquet file")
    assert "Traceback" not in res.output
    assert _files(run_with_tables.parent) == before  # a query writes nothing, not even beside the tables


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



# -- each row of issue 16's table through the command a user runs: exit code, message, what is on disk ---------
def test_unknown_site_leaves_a_finished_run_as_it_was(tiny_study, tiny_toml, study_toml, tmp_path):
    """The issue's run: a bad site was written into store.json first, and the right config then failed too."""
    run = _copy(tiny_study[0], tmp_path / "run")
    before = _files(run)
    cfg = tiny_config().model_copy(deep=True)
    cfg.activations.sites = ["blocks.7.hook_resid_post"]
    res = runner.invoke(app, ["study", str(study_toml(cfg, "bad.toml")), "--run-dir", str(run)])
    assert res.exit_code == 2 and _has(res, "error:") and _has(res, "blocks.7.hook_resid_post")
    assert "Traceback" not in res.output
    assert _files(run) == before  # store.json, study.json, the lock: untouched
    res = runner.invoke(app, ["study", str(tiny_toml), "--run-dir", str(run), "--quiet"])
    assert res.exit_code == 0 and _has(res, "ran 0 units"), res.output


def test_unknown_site_in_a_new_run_dir_creates_nothing(study_toml, tmp_path):
    cfg = tiny_config().model_copy(deep=True)
    cfg.activations.sites = ["blocks.0.hook_resid_post", "blocks.0.no_such_hook"]
    res = runner.invoke(app, ["study", str(study_toml(cfg, "bad.toml")), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and _has(res, "blocks.0.no_such_hook") and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_different_architecture_source_is_refused_by_the_command(study_toml, tmp_path):
    from ontogeny.testing import make_tiny_series

    a = make_tiny_series(tmp_path / "a", steps=(0,))
    make_tiny_series(tmp_path / "b", steps=(1,), hidden_size=48)
    (tmp_path / "b" / "step_000001").rename(a / "step_000001")
    cfg = tiny_config().model_copy(deep=True)
    cfg.series.source = str(a)
    res = runner.invoke(app, ["study", str(study_toml(cfg)), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and _has(res, "different architecture") and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()  # neither series/source.json nor study.json


class _ReadOnlyOS:
    """The `os` module as seen by `store.lock`, on a file system that refuses writes (root ignores chmod)."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def open(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))


def test_read_only_run_dir_is_one_line_and_left_as_it_was(tiny_study, tiny_toml, tmp_path, monkeypatch):
    import ontogeny.store.lock as lock

    run = _copy(tiny_study[0], tmp_path / "run")
    before = _files(run)
    monkeypatch.setattr(lock, "os", _ReadOnlyOS())
    res = runner.invoke(app, ["study", str(tiny_toml), "--run-dir", str(run)])
    assert res.exit_code == 2 and _has(res, f"cannot write to the run directory {run}: permission denied")
    assert "Traceback" not in res.output and _files(run) == before


def test_run_dir_in_a_read_only_folder_is_one_line(tiny_toml, tmp_path, monkeypatch):
    run = tmp_path / "ro" / "run"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):
        if self == run:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    res = runner.invoke(app, ["study", str(tiny_toml), "--run-dir", str(run)])
    assert res.exit_code == 2 and _has(res, f"cannot create the run directory {run}: permission denied")
    assert "Traceback" not in res.output and not run.exists()


def test_disk_full_during_a_unit_names_the_file_and_records_the_failure(tiny_study, tiny_toml, tmp_path, monkeypatch):
    """A real write path (tables/llc.parquet through `store.tables.write_table`) fails with ENOSPC."""
    import pyarrow.parquet as pq

    run = _copy(tiny_study[0], tmp_path / "run")
    (run / "tables" / "llc.parquet").unlink()  # the llc merge unit must write it again

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full)
    res = runner.invoke(app, ["study", str(tiny_toml), "--run-dir", str(run)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert _has(res, "recomputing llc: tables/llc.parquet is missing")
    assert _has(res, f"cannot write {run / 'tables' / 'llc.parquet'}: no space left on device")
    rec = json.loads((run / "study.json").read_text())
    assert rec["status"] == "failed" and rec["failure"]["units"] == ["llc"]
    assert "no space left on device" in rec["failure"]["error"]
    assert not (run / "tables" / "llc.parquet").exists() and not list(run.rglob(".*.tmp"))  # nothing partial


def test_a_terminated_study_says_interrupted(tiny_toml, tmp_path):
    """`kill PID` (SIGTERM) inside the first unit: exit 130, the resume hint, study.json "interrupted" with
    the unit, the unit's temporaries removed and nothing recorded as finished."""
    from ontogeny.store import faults

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", faults.ENV: "series:1", faults.SIGNAL_ENV: "TERM"}
    res = subprocess.run([sys.executable, "-m", "ontogeny", "study", str(tiny_toml), "--run-dir", str(run)],
                         env=env, capture_output=True, text=True, timeout=600)
    out = " ".join(res.stderr.split())
    assert res.returncode == 130, res.stderr[-2000:]
    assert "ontogeny test hook: SIGTERM at series:1" in out and "interrupted: rerun the same command to resume" in out
    assert "Traceback" not in res.stderr
    rec = json.loads((run / "study.json").read_text())
    assert rec["status"] == "interrupted" and rec["failure"]["units"] == ["series"]
    assert "signal 15" in rec["failure"]["error"]
    assert not (run / "series").exists() and not list(run.rglob(".*.tmp")) and not list(run.glob("manifest/*.json"))


def test_a_nan_in_a_shard_is_caught_where_it_is_read(tmp_path):
    """Outside a study (no manifest to compare with), the reader itself refuses a poisoned shard, naming it."""
    import torch

    from ontogeny.store.activations import ActivationStore, write_store_meta, write_unit

    root = tmp_path / "acts"
    ids_ST = torch.arange(12).reshape(3, 4)
    write_store_meta(root, ids_ST, ["blocks.0.hook_resid_post"], {"blocks.0.hook_resid_post": 5}, [0], {})
    acts_ND = torch.randn(12, 5)
    acts_ND[7, 2] = float("nan")
    write_unit(ActivationStore(root), 0, "blocks.0.hook_resid_post", acts_ND)
    with pytest.raises(StoreError, match=r"step_000000/blocks\.0\.hook_resid_post: activations contain NaN"):
        ActivationStore(root).load(0, "blocks.0.hook_resid_post")

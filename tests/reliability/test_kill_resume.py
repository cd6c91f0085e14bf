"""Kill `ontogeny study` (SIGKILL) inside every stage of the tiny study, resume it, and compare with an
uninterrupted run.

The kills are deterministic: the test-only hook `ontogeny.store.faults`
(`ONTOGENY_TEST_KILL_AT=UNIT:POINT`) kills the process just before a unit's N-th atomic write is renamed
into place, in the middle of a folder swap, or after a unit returned but before its manifest entry was
written. One run directory is killed once per stage, in the order the stages run, each rerun resuming the
previous one (13 killed runs, then one to finish and one that must find nothing to do). The runs are forks
of the test process (torch is imported once), except the first and the one that finishes, which are fresh
`python -m ontogeny study` processes; so the chain costs about one study and a half. On the way, two of
the issue's injections are made between runs: a checkpoint folder of the finished series is deleted, and
one activation shard truncated and another poisoned with a NaN; the next run must name them and recompute
exactly those units and their dependents.

After every kill: the process died at the named point; no unit finished before it was recomputed (its
manifest entry is byte-identical), except the damaged ones, which were; the unit killed inside has no
entry; a temporary (or a swapped-aside folder) is what the kill left. At the end: the last run exits 0,
a rerun runs 0 units, no temporary is left, and every output file equals the uninterrupted reference
(`tiny_study`): table values and column order, tensors, figures' data, cfg.json files and their key
order, the report, once the run's path and wall-clock timings are set aside.

The chain kills the tiny study's head census too (tiny_config enables a small one). A second, short chain
does the same for STREAMED dictionaries (`[dictionaries.stream]` at a subset of checkpoints, as the demo
trains them; tiny_config caches them): killed inside a streamed dictionaries unit and inside their merge unit
(tables/dictionaries.parquet), then compared with an uninterrupted streamed run.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ontogeny.store import layout
from ontogeny.store.faults import ENV

# One kill per stage, in the order the tiny study runs its units: (stage, UNIT:POINT, damage done before
# that run). Each POINT lies strictly inside its unit: N counts the unit's atomic writes (counted at 15:07 on
# Dec 1 with faults._maybe_kill replaced by a recorder: series 17, activations 2, dictionaries 1, lifehistory
# 25, crosscoder 12, susceptibility 9, capabilities 8, census 3, llc merge 2, features 16, report 40).
KILLS = [
    ("series", "series:9", None),  # mid-training: 8 checkpoint folders written inside the series' temporary
    ("activations", "activations/step_000002:2", None),
    # its folder final, no manifest entry
    ("dictionaries", "dictionaries/step_000004:end", "delete a checkpoint"),
    ("dictionaries", "dictionaries/step_000004:swap1", None),  # its recompute killed, old folder moved aside
    ("lifehistory", "lifehistory:12", "truncate a shard, NaN into another"),
    ("crosscoder", "crosscoder:6", None),
    ("llc", "llc/step_000040:end", None),  # writes no file: its rows live in the manifest entry
    ("susceptibility", "susceptibility:5", None),
    ("capabilities", "capabilities:4", None),
    ("census", "census:2", None),  # tables/heads.parquet final, heads_copy not yet
    ("llc merge", "llc:2", None),  # tables/llc.parquet final, the LLC figure not yet
    ("features", "features:14", None),
    ("report", "report:25", None),
]
SITE = "blocks.0.hook_resid_post"


def damage(run_dir: Path, what: str) -> tuple[list[str], set[str]]:
    """Change a finished run behind the study's back, as the issue did; returns the messages the next run
    must print and the finished units it may recompute (the damaged ones and their dependents)."""
    if what == "delete a checkpoint":  # everything depends on the series: every finished unit is redone
        shutil.rmtree(run_dir / "series" / "step_000004")
        return (["recomputing series: series/step_000004/"],
                {"series.json", "activations__step_000000.json", "activations__step_000001.json"})
    shard0 = run_dir / "activations" / "step_000000" / SITE / "shard_0000.safetensors"
    size = shard0.stat().st_size
    shard0.write_bytes(shard0.read_bytes()[:100])
    shard2 = run_dir / "activations" / "step_000002" / SITE / "shard_0000.safetensors"
    with safe_open(shard2, "pt") as f:
        acts, meta = f.get_tensor("acts"), f.metadata()
    acts[3, 1] = float("nan")  # same size, one value poisoned
    save_file({"acts": acts}, str(shard2), metadata=meta)
    return ([f"recomputing activations/step_000000: activations/step_000000/{SITE}/shard_0000.safetensors "
             f"changed size ({size} -> 100 bytes)",
             f"recomputing activations/step_000002: activations/step_000002/{SITE}/shard_0000.safetensors "
             f"changed content"],
            {"activations__step_000000.json", "activations__step_000002.json",
             "dictionaries__step_000000.json", "dictionaries__step_000002.json"})


# Fields that measure the machine, not the study (found by diffing two uninterrupted runs): left out.
TIMINGS = {"wall_s", "tokens_per_s", "draws_per_s"}
NOT_OUTPUTS = {layout.STUDY_RECORD, layout.LOCK_FILE, "manifest"}


@dataclass
class Ran:
    returncode: int  # the exit code, or -signal (-9: SIGKILL)
    stderr: str  # what the command wrote (stdout and stderr together)
    seconds: float  # wall clock
    cpu_s: float  # user + system CPU time of the process


def study(config: Path, run_dir: Path, kill_at: str | None = None, fresh: bool = False) -> Ran:
    """`ontogeny study CONFIG --run-dir RUN` in a process of its own, forked from this one (or, `fresh`, a
    new `python -m ontogeny study`).

    Forked so that torch and transformers are imported once, not 14 times (about 5 s of CPU each); the
    child runs the real command line (`ontogeny.cli.app`) with its own stdout/stderr, exit code and death.
    A fork inherits this process's hash seed and caches, so the chain's first and last runs are fresh
    interpreters: what they compute must not depend on either.
    """
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"{len(list(run_dir.parent.glob('*.run.log')))}.run.log"
    t0 = time.perf_counter()
    if fresh:
        env = {k: v for k, v in os.environ.items() if k not in (ENV, "PYTHONHASHSEED")}
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **({ENV: kill_at} if kill_at else {})})
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(log, "w") as fh:
            cmd = [sys.executable, "-m", "ontogeny", "study", str(config), "--run-dir", str(run_dir)]
            proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=600)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return Ran(proc.returncode, log.read_text(), time.perf_counter() - t0, cpu)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)
            os.environ.pop(ENV, None)
            if kill_at:
                os.environ[ENV] = kill_at
            from ontogeny.cli import app

            try:
                app(["study", str(config), "--run-dir", str(run_dir)], prog_name="ontogeny")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    try:
        _, status, usage = os.wait4(pid, 0)
    except BaseException:  # the test timed out or was interrupted: leave no study running
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return Ran(os.waitstatus_to_exitcode(status), log.read_text(), time.perf_counter() - t0,
               usage.ru_utime + usage.ru_stime)


def entries(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Each finished unit's manifest entry: (bytes, mtime_ns)."""
    root = layout.manifest_dir(run_dir)
    if not root.exists():
        return {}
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.glob("*.json")}


def leftovers(run_dir: Path) -> list[str]:
    """Temporaries of writes in flight and folders moved aside by a killed swap."""
    return sorted(str(p.relative_to(run_dir)) for pat in (".*.tmp", ".*.old-*") for p in run_dir.rglob(pat))


def outputs(run_dir: Path) -> list[str]:
    """Every output file (relative path), leaving out the bookkeeping: manifest, study.json, lock."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.is_file() and p.relative_to(run_dir).parts[0] not in NOT_OUTPUTS)


def _norm(obj, run_dir: Path):
    """JSON content with the run's own path replaced and the timing fields left out."""
    if isinstance(obj, dict):
        return {_norm(k, run_dir): _norm(v, run_dir) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [_norm(v, run_dir) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(run_dir), "<run>")
    return obj


def _meta(meta: dict | None, run_dir: Path) -> dict:
    out = {}
    for k, v in (meta or {}).items():
        k, v = (x.decode() if isinstance(x, bytes) else x for x in (k, v))
        try:
            out[k] = _norm(json.loads(v), run_dir)
        except ValueError:
            out[k] = v.replace(str(run_dir), "<run>")
    return out


def same_output(a: Path, b: Path, rel: str) -> str | None:
    """None when file `rel` of run `a` equals that of run `b`; else what differs."""
    fa, fb = a / rel, b / rel
    if fa.suffix == ".parquet":
        ta, tb = pq.read_table(fa), pq.read_table(fb)
        if ta.schema.names != tb.schema.names:
            return f"columns {tb.schema.names} instead of {ta.schema.names}"
        for col in ta.schema.names:
            if col not in TIMINGS and not ta[col].equals(tb[col]):
                return f"column {col} differs"
        if _meta(ta.schema.metadata, a) != _meta(tb.schema.metadata, b):
            return "table metadata differs"
        return None
    if fa.suffix == ".safetensors":  # (the metadata map is written in arbitrary order: compare parsed)
        with safe_open(fa, "pt") as x, safe_open(fb, "pt") as y:
            if sorted(x.keys()) != sorted(y.keys()):
                return "tensor names differ"
            if _meta(x.metadata(), a) != _meta(y.metadata(), b):
                return "safetensors metadata differs"
            bad = [k for k in x.keys() if not torch.equal(x.get_tensor(k), y.get_tensor(k))]
            return f"tensors {bad} differ" if bad else None
    if fa.suffix == ".json":
        ja, jb = json.loads(fa.read_text()), json.loads(fb.read_text())
        if _norm(ja, a) != _norm(jb, b):
            return "JSON content differs"
        if fa.name == layout.CFG_FILE and list(ja) != list(jb):
            return "cfg.json key order differs"
        return None
    da, db = fa.read_bytes(), fb.read_bytes()
    if da == db:
        return None
    try:
        same = da.decode().replace(str(a), "<run>") == db.decode().replace(str(b), "<run>")
        return None if same else "bytes differ"
    except UnicodeDecodeError:
        return "bytes differ"


def kill_chain(config: Path, run_dir: Path, kills,
               fresh_first: bool = True) -> tuple[dict, list[tuple[str, Ran]]]:
    """Run the study once per (stage, UNIT:POINT, damage) of `kills`, each killed at its point and resuming
    the previous one; checks after every kill that it died there, that no unit finished before was recomputed
    (except the damaged ones, which must be), that the killed unit recorded nothing, and that the kill left a
    temporary (or a folder swapped aside). Returns the entries the chain's runs recorded and the runs.

    A run directory that starts with entries (a copy of a finished study) may see those recomputed, where
    the config changed: only what the chain itself recorded is checked here."""
    inherited = entries(run_dir)
    finished: dict[str, tuple[bytes, int]] = {}
    runs: list[tuple[str, Ran]] = []
    for stage, point, what in kills:
        must_say, may_redo = damage(run_dir, what) if what else ([], set())
        before = entries(run_dir)
        res = study(config, run_dir, kill_at=point, fresh=fresh_first and not runs)
        runs.append((point, res))
        assert res.returncode == -9, f"{stage}: not killed at {point} ({res.returncode}):\n{res.stderr[-3000:]}"
        said = "".join(res.stderr.split())
        for text in [f"ontogeny test hook: SIGKILL at {point}", *must_say]:
            assert "".join(text.split()) in said, f"{stage}: no {text!r} in\n{res.stderr[-3000:]}"
        now = entries(run_dir)
        for name, entry in finished.items():  # nothing finished before was recomputed by this run
            assert name in may_redo or now.get(name) == entry, f"{name} recomputed by the run killed at {point}"
        for name in may_redo:
            assert now.get(name) != finished[name], f"{name} was damaged but not recomputed"
        # (an entry of an older config may stay: a copied run)
        entry = layout.manifest_entry(run_dir, point.split(":")[0]).name
        assert now.get(entry) == before.get(entry), f"{entry} recorded although killed inside"
        if point.endswith(":swap1"):
            assert any(".old-" in p for p in leftovers(run_dir)), "the swap kill left no folder aside"
        elif not point.endswith(":end"):
            assert leftovers(run_dir), f"the kill at {point} left no temporary"
        finished = {n: e for n, e in now.items() if inherited.get(n) != e}
    return finished, runs


def finish_and_compare(config: Path, run_dir: Path, ref: Path, finished: dict, runs: list[tuple[str, Ran]],
                       fresh: bool = True) -> None:
    """Run the killed study to its end (nothing finished recomputed, every unit of `ref` recorded, status
    complete, no temporary), once more (it must run 0 units), then compare every output file with `ref`."""
    res = study(config, run_dir, fresh=fresh)
    runs.append(("(to the end)", res))
    assert res.returncode == 0, res.stderr[-3000:]
    now = entries(run_dir)
    for name, entry in finished.items():
        assert now.get(name) == entry, f"{name} was recomputed by the last run"
    assert sorted(now) == sorted(entries(ref)), "not every unit finished"
    assert json.loads(layout.study_record(run_dir).read_text())["status"] == "complete"
    assert leftovers(run_dir) == []

    again = study(config, run_dir)
    runs.append(("(nothing to do)", again))
    print("\n".join(f"{p:32s} {r.seconds:6.1f} s wall {r.cpu_s:6.1f} s cpu" for p, r in runs),
          f"\ntotal {sum(r.seconds for _, r in runs):.1f} s wall, {sum(r.cpu_s for _, r in runs):.1f} s cpu")
    assert again.returncode == 0 and "ran 0 units" in " ".join(again.stderr.split()), again.stderr[-2000:]
    assert entries(run_dir) == now

    assert outputs(run_dir) == outputs(ref)
    differ = {rel: why for rel in outputs(ref) if (why := same_output(ref, run_dir, rel))}
    assert not differ, differ


@pytest.mark.slow
@pytest.mark.timeout(1200)  # about 1 min on 2 idle cores; the margin is for a loaded machine
def test_killed_in_every_stage_resumes_to_identical_outputs(tiny_study, tiny_toml, tmp_path):
    ref, config = tiny_study[0], tiny_toml
    run_dir = tmp_path / "kill" / ref.name  # same folder name as the reference (the report shows it)
    finished, runs = kill_chain(config, run_dir, KILLS)
    finish_and_compare(config, run_dir, ref, finished, runs)


# Streamed dictionaries (`[dictionaries.stream]`, as the demo trains them) at a subset of checkpoints, on a
# copy of the finished tiny study: only the streamed dictionaries units, their merge unit (the held-out
# quality table) and the report run. Each streamed unit makes 1 atomic write (its folder, swapped over the
# cached dictionary already there), the merge 2 (table, figure). The analyses are switched off: they are
# killed in the chain above, and here they would only re-read the same dictionaries.
STREAM = {"training_tokens": 1024, "batch_size": 64, "buffer_tokens": 256, "forward_seqs": 4}
STREAM_KILLS = [
    # step 0 finished, step 4's folder a complete temporary
    ("streamed dictionaries", "dictionaries/step_000004:1", None),
    ("dictionaries merge", "dictionaries:2", None),  # tables/dictionaries.parquet final, its figure not yet
]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_streamed_dictionaries_resume_to_identical_outputs(tiny_study, study_toml, tmp_path):
    from ontogeny.study.demo import tiny_config

    data = tiny_config().model_dump(mode="json")
    data["dictionaries"].update(stream=STREAM, checkpoints=3)  # steps 0, 4, 40 of the tiny series
    for section in ("lifehistory", "crosscoder", "llc", "susceptibility", "capabilities", "census"):
        data[section]["enabled"] = False
    config = study_toml(type(tiny_config()).model_validate(data), "streamed.toml")
    ref = Path(shutil.copytree(tiny_study[0], tmp_path / "ref" / tiny_study[0].name))
    run_dir = Path(shutil.copytree(tiny_study[0], tmp_path / "kill" / tiny_study[0].name))
    inherited = entries(run_dir)  # (copytree keeps the mtimes)
    res = study(config, ref)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (ref / "tables" / "dictionaries.parquet").exists()
    assert json.loads((layout.manifest_entry(ref, "dictionaries")).read_text())["result"]["dictionaries"] == 3
    kept = {n for n, e in entries(ref).items() if inherited.get(n) == e}  # what the streamed config leaves
    assert {"series.json", "activations__step_000004.json", "dictionaries__step_000001.json"} <= kept
    assert "dictionaries__step_000004.json" not in kept

    finished, runs = kill_chain(config, run_dir, STREAM_KILLS, fresh_first=False)
    finish_and_compare(config, run_dir, ref, finished, runs, fresh=False)
    now = entries(run_dir)
    assert all(now[n] == inherited[n] for n in kept), "a killed run recomputed a unit the config left alone"


def test_the_comparison_sees_a_reordered_table_and_a_changed_value(tiny_study, tmp_path):
    """`same_output` is what the kill test trusts: it must see column order, values, tensors, cfg.json order."""
    import pyarrow as pa
    from safetensors.torch import load_file

    ref = Path(shutil.copytree(tiny_study[0], tmp_path / "a" / "run"))  # (copies: the paths inside stay the
    run = Path(shutil.copytree(tiny_study[0], tmp_path / "b" / "run"))  # reference's, the same in both)
    assert all(same_output(ref, run, rel) is None for rel in outputs(ref))
    name = next(p for p in outputs(ref) if p.startswith("tables/crosscoder_training"))
    t = pq.read_table(run / name)
    pq.write_table(t.select(sorted(t.schema.names)).replace_schema_metadata(t.schema.metadata), run / name)
    assert "columns" in same_output(ref, run, name)
    pq.write_table(t.set_column(1, t.schema.names[1], pa.array([0.5] * t.num_rows, t.schema.types[1]))
                   .replace_schema_metadata(t.schema.metadata), run / name)
    assert "differs" in same_output(ref, run, name)
    weights = "dictionaries/step_000004/blocks.0.hook_resid_post/sae_weights.safetensors"
    with safe_open(run / weights, "pt") as f:
        meta = f.metadata()
    tensors = load_file(run / weights)
    key = sorted(tensors)[0]
    save_file(tensors, str(run / weights), metadata=meta)
    assert same_output(ref, run, weights) is None  # rewritten, same values
    tensors[key] = tensors[key] + 1e-6
    save_file(tensors, str(run / weights), metadata=meta)
    assert same_output(ref, run, weights) == f"tensors [{key!r}] differ"
    cfg = "dictionaries/step_000004/blocks.0.hook_resid_post/cfg.json"
    data = json.loads((run / cfg).read_text())
    (run / cfg).write_text(json.dumps(dict(reversed(list(data.items())))))
    assert same_output(ref, run, cfg) == "cfg.json key order differs"

"""Kill `ontogeny study` (SIGKILL) inside every stage of the tiny study, resume it, and compare with an
uninterrupted run.

The kills are deterministic: the test-only hook `ontogeny.store.faults` (`ONTOGENY_TEST_KILL_AT=UNIT:POINT`)
kills the process just before a unit's N-th atomic write is renamed into place, in the middle of a folder
swap, or after a unit returned but before its manifest entry was written. One run directory is killed
once per stage, in the order the stages run, each rerun resuming the previous one (13 processes in all),
so the chain costs about one study plus process starts. After every kill: the process died at the named
point, nothing it finished is recomputed later (its manifest entry is byte-identical at the end). At the
end: the last run exits 0, a rerun runs 0 units, no temporary is left, and every output file equals the
uninterrupted reference (`tiny_study`): table values and column order, tensors, figures' data, cfg.json
files, the report, once run paths and wall-clock timings are set aside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open

from ontogeny.commands._common import build_config
from ontogeny.config import StudyConfig
from ontogeny.store import layout
from ontogeny.store.faults import ENV
from ontogeny.study.demo import tiny_config

# One kill per stage, in the order the tiny study runs its units (stage -> UNIT:POINT). Each POINT lies
# strictly inside its unit: N counts the unit's atomic writes (series 17, activations 2, dictionaries 1,
# lifehistory 25, crosscoder 12, susceptibility 9, capabilities 8, llc merge 2, features 27, report 50).
KILLS = [
    ("series", "series:9"),  # mid-training: 8 checkpoint folders written inside the series' temporary
    ("activations", "activations/step_000002:2"),
    ("dictionaries", "dictionaries/step_000004:end"),  # folder final, no manifest entry
    ("dictionaries", "dictionaries/step_000004:swap1"),  # its recompute killed with the old folder moved aside
    ("lifehistory", "lifehistory:12"),
    ("crosscoder", "crosscoder:6"),
    ("llc", "llc/step_000040:end"),  # writes no file: its rows live in the manifest entry
    ("susceptibility", "susceptibility:5"),
    ("capabilities", "capabilities:4"),
    ("llc merge", "llc:2"),  # tables/llc.parquet final, the LLC figure not yet
    ("features", "features:14"),
    ("report", "report:25"),
]

# Fields that measure the machine, not the study (found by diffing two uninterrupted runs): left out.
TIMINGS = {"wall_s", "tokens_per_s", "draws_per_s"}
NOT_OUTPUTS = {layout.STUDY_RECORD, layout.LOCK_FILE, "manifest"}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(type(v))


def to_toml(d: dict, prefix: str = "") -> list[str]:
    """A nested config dict as TOML lines (None means "the default": left out)."""
    scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict) and v is not None]
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += to_toml(v, f"{prefix}.{k}" if prefix else k)
    return lines


def study(config: Path, run_dir: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """`ontogeny study CONFIG --run-dir RUN` as a user runs it (one torch thread, like the reference)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(ENV, None)
    if kill_at:
        env[ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "ontogeny", "study", str(config), "--run-dir", str(run_dir)],
                          env=env, capture_output=True, text=True, timeout=600)


def entries(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Each finished unit's manifest entry: (bytes, mtime_ns)."""
    root = layout.manifest_dir(run_dir)
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.glob("*.json")} if root.exists() else {}


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
        return {k: _norm(v, run_dir) for k, v in obj.items() if k not in TIMINGS}
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
        return None if da.decode().replace(str(a), "<run>") == db.decode().replace(str(b), "<run>") else "bytes differ"
    except UnicodeDecodeError:
        return "bytes differ"


@pytest.mark.slow
def test_killed_in_every_stage_resumes_to_identical_outputs(tiny_study, tmp_path):
    ref = tiny_study[0]
    config = tmp_path / "tiny.toml"
    config.write_text("\n".join(to_toml(tiny_config().model_dump(mode="json", exclude_defaults=True))) + "\n")
    assert build_config(StudyConfig, config) == tiny_config()  # the TOML is the tiny study
    run_dir = tmp_path / "kill" / ref.name  # same folder name as the reference (the report shows it)

    finished: dict[str, tuple[bytes, int]] = {}
    for stage, point in KILLS:
        res = study(config, run_dir, kill_at=point)
        assert res.returncode == -9, f"{stage}: not killed at {point} (exit {res.returncode}):\n{res.stderr[-3000:]}"
        assert f"ontogeny test hook: SIGKILL at {point}" in res.stderr, stage
        now = entries(run_dir)
        for name, entry in finished.items():  # nothing finished before was recomputed by this run
            assert now.get(name) == entry, f"{name} was recomputed by the run killed at {point}"
        unit = point.split(":")[0]
        assert layout.manifest_entry(run_dir, unit).name not in now, f"{unit} recorded although killed inside"
        if point.endswith(":swap1"):
            assert any(".old-" in p for p in leftovers(run_dir)), "the swap kill left no folder aside"
        elif not point.endswith(":end"):
            assert leftovers(run_dir), f"the kill at {point} left no temporary"
        finished = now

    res = study(config, run_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    now = entries(run_dir)
    for name, entry in finished.items():
        assert now.get(name) == entry, f"{name} was recomputed by the last run"
    assert sorted(now) == sorted(entries(ref)), "not every unit finished"
    assert json.loads(layout.study_record(run_dir).read_text())["status"] == "complete"
    assert leftovers(run_dir) == []

    again = study(config, run_dir)
    assert again.returncode == 0 and "ran 0 units" in " ".join(again.stderr.split()), again.stderr[-2000:]
    assert entries(run_dir) == now

    assert outputs(run_dir) == outputs(ref)
    differ = {rel: why for rel in outputs(ref) if (why := same_output(ref, run_dir, rel))}
    assert not differ, differ


def test_the_comparison_sees_a_reordered_table_and_a_changed_value(tiny_study, tmp_path):
    """`same_output` is what the kill test trusts: it must catch column order, values, tensors, cfg.json order."""
    import shutil

    import pyarrow as pa
    from safetensors.torch import load_file, save_file

    ref = tiny_study[0]
    run = Path(shutil.copytree(ref, tmp_path / "copy" / ref.name))
    assert all(same_output(ref, run, rel) is None for rel in outputs(ref))
    name = next(p for p in outputs(ref) if p.startswith("tables/crosscoder_training"))
    t = pq.read_table(run / name)
    pq.write_table(t.select(sorted(t.schema.names)).replace_schema_metadata(t.schema.metadata), run / name)
    assert "columns" in same_output(ref, run, name)
    pq.write_table(t.set_column(1, t.schema.names[1], pa.array([0.5] * t.num_rows, t.schema.types[1]))
                   .replace_schema_metadata(t.schema.metadata), run / name)
    assert "differs" in same_output(ref, run, name)
    weights = "dictionaries/step_000004/blocks.0.hook_resid_post/sae_weights.safetensors"
    tensors = load_file(run / weights)
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 1e-6
    save_file(tensors, str(run / weights))
    assert "differ" in same_output(ref, run, weights)
    cfg = "dictionaries/step_000004/blocks.0.hook_resid_post/cfg.json"
    data = json.loads((run / cfg).read_text())
    (run / cfg).write_text(json.dumps(dict(reversed(list(data.items())))))
    assert same_output(ref, run, cfg) == "cfg.json key order differs"

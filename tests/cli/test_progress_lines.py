"""`ontogeny study` off a terminal (output to a pipe, as `ontogeny demo > log 2>&1`): a line when each unit
starts and ends, heartbeats inside long units, a final summary; `--quiet` silences the progress lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from ontogeny.series.train import SeriesConfig


def _toml_value(v) -> str:
    """A JSON-like value as a TOML value (inline tables), enough for a config dump."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def _small_study(path) -> None:
    """The tiny series, its activations and dictionaries and the capability curves; no other analysis."""
    series = SeriesConfig.tiny().model_dump(mode="json", exclude_defaults=True)
    path.write_text("\n".join([
        'name = "progress"',
        f"[series]\ntrain = {_toml_value(series)}",
        '[activations]\nsites = ["blocks.0.hook_resid_post"]\nn_seqs = 16\nctx = 32\nbatch_size = 8',
        "[dictionaries]\nexpansion = 2\nk = 4\nbatch_size = 64\nepochs = 2",
        "[capabilities.config]\nn_prompts = 4\nrep_len = 6",
        *(f"[{s}]\nenabled = false" for s in ("lifehistory", "crosscoder", "llc", "susceptibility", "features")),
        "",
    ]))


def _run(args, tmp_path, **env):
    return subprocess.run([sys.executable, "-m", "ontogeny", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600, cwd=tmp_path)


def test_non_tty_study_prints_unit_starts_heartbeats_and_a_summary(tmp_path):
    cfg = tmp_path / "study.toml"
    _small_study(cfg)
    res = _run(["study", str(cfg), "--run-dir", str(tmp_path / "run")], tmp_path, ONTOGENY_HEARTBEAT_S="1")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stderr.splitlines()
    started = [m.group(1) for line in lines if (m := re.search(r"▶ (\S+) started", line))]
    ended = [m.group(1) for line in lines if (m := re.search(r"✓ (\S+) done in", line))]
    assert started[0] == "series" and "capabilities" in started and "report" in started
    assert set(started) == set(ended)
    for name in started:  # each unit's start line comes before its end line
        first_start = next(i for i, line in enumerate(lines) if f"▶ {name} started" in line)
        first_end = next(i for i, line in enumerate(lines) if f"✓ {name} done in" in line)
        assert first_start < first_end, name
    series_end = next(i for i, line in enumerate(lines) if "✓ series done in" in line)
    beats = [line for line in lines[:series_end] if "… " in line]
    assert beats, "no heartbeat while the series trained:\n" + "\n".join(lines[:series_end])
    assert any(line.split("] ", 1)[-1].startswith("summary:") for line in lines)

    # a rerun skips every unit and says so per unit; with --quiet it says nothing of them
    loud = _run(["study", str(cfg), "--run-dir", str(tmp_path / "run")], tmp_path)
    assert loud.returncode == 0 and "· series already complete, skipped" in loud.stderr, loud.stderr[-3000:]
    quiet = _run(["study", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "already complete" not in quiet.stderr and "▶" not in quiet.stderr

"""Progress lines when stderr is not a terminal: unit starts and ends, heartbeats inside long units."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import pytest
import torch

from ontogeny import progress


def test_line_reporter_shows_starts_heartbeats_ends_and_a_summary():
    out = io.StringIO()
    with progress.use(progress.LineReporter(out, heartbeat_s=0.2)) as rep:
        with progress.unit("series") as figs:
            bar = progress.start("series training", total=4, unit="steps")
            bar.advance(1, loss=5.25)
            time.sleep(0.7)  # a slow step: no advance, the heartbeat must still speak
            bar.advance(3, loss=4.5)
            figs["steps"] = 4
        rep.skip("activations/step_000000")
        with pytest.raises(RuntimeError):
            with progress.unit("llc"):
                raise RuntimeError("chain diverged")
        summary = rep.summary()
    lines = out.getvalue().splitlines()
    text = "\n".join(lines)
    assert re.search(r"▶ series started", lines[0])
    beats = [ln for ln in lines if "… series training: 1/4 steps (25%)" in ln]
    assert len(beats) >= 2 and "loss 5.25" in beats[0]  # at least one per interval while it is slow
    assert re.search(r"series training: 4/4 steps \(100%\).*done", text)
    assert re.search(r"✓ series done in \d+\.\d s \(steps 4\)", text)
    assert "already complete, skipped" in text and "✗ llc failed" in text and "chain diverged" in text
    assert "2 units ran" in summary and "1 skipped" in summary and lines[-1].endswith(summary)


def test_heartbeat_names_a_unit_that_reports_no_task():
    out = io.StringIO()
    with progress.use(progress.LineReporter(out, heartbeat_s=0.15)):
        with progress.unit("report"):
            time.sleep(0.5)
    assert re.search(r"… running report \(\d+ s\)", out.getvalue())


def test_choice_of_reporter_and_the_silent_default():
    assert type(progress.current()) is progress.Reporter  # outside the CLI: nothing is shown
    bar = progress.start("x", total=2)
    bar.advance(2)
    assert bar.closed
    assert type(progress.for_stream(io.StringIO(), quiet=True)) is progress.Reporter
    rep = progress.for_stream(io.StringIO())
    assert isinstance(rep, progress.LineReporter)
    rep.close()


def test_library_training_reports_through_the_installed_reporter():
    from ontogeny.dictionaries import DictionaryConfig, train
    from ontogeny.dictionaries.model import Dictionary

    out = io.StringIO()
    x = torch.randn(256, 8)
    with progress.use(progress.LineReporter(out, heartbeat_s=30)):
        train(Dictionary(DictionaryConfig(d_in=8, d_sae=16, rule="topk", k=2)), x.split(32), total_steps=8)
    assert "dictionary training (1 dictionaries): started (8 steps)" in out.getvalue()
    assert "8/8 steps (100%)" in out.getvalue()


def test_a_piped_process_prints_lines_as_they_happen(tmp_path):
    """Through a real pipe (not a TTY): the start line arrives while the unit is still running."""
    code = ("import sys, time; from ontogeny import progress\n"
            "with progress.use(progress.for_stream(sys.stderr, heartbeat_s=0.2)):\n"
            "    with progress.unit('slow unit'):\n"
            "        time.sleep(3)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    still_running = proc.poll() is None
    rest = proc.stderr.read()
    proc.wait(timeout=30)
    assert "▶ slow unit started" in first and still_running
    assert "… running slow unit" in rest and "✓ slow unit done" in rest

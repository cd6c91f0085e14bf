"""A TEST-ONLY fault hook: SIGKILL this process at a chosen point inside a chosen unit of a study.

Why: the kill-and-resume test (tests/reliability/test_kill_resume.py) must kill a study inside every
stage, at a point it names, every time; killing after a sleep or on a progress line lands wherever the
scheduler happens to be. Set `ONTOGENY_TEST_KILL_AT` to `UNIT:POINT` (UNIT is a manifest unit name such
as `series`, `dictionaries/step_000004`, `llc/step_000040`):

- `UNIT:N`     just before the N-th atomic write of that unit is renamed into place (`store.run.atomic_path`):
               its N-1 earlier writes are final, the N-th is a complete temporary, nothing is recorded;
- `UNIT:swapN` inside the N-th write's swap of a directory over an existing one, after the old folder was
               moved aside and before the new one is moved in (the one moment a folder is briefly absent);
- `UNIT:end`   after the unit returned, before its manifest entry is written (all its files are final).

The process writes `ontogeny test hook: SIGKILL at UNIT:POINT` to stderr and kills itself
(`ONTOGENY_TEST_KILL_SIGNAL=TERM` sends SIGTERM instead: what `kill PID` does, which the CLI turns into an
orderly "interrupted"). Never set in normal use; unset, each hook call is one environment lookup. Counts are
per unit and per process, and only writes made while a unit runs in this process count (in-process backend;
Ray workers do not see it).
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "ONTOGENY_TEST_KILL_AT"
SIGNAL_ENV = "ONTOGENY_TEST_KILL_SIGNAL"

_unit: str | None = None
_writes = 0


def enter_unit(name: str) -> None:
    """A unit starts running in this process: its writes are counted from 1."""
    global _unit, _writes
    _unit, _writes = name, 0


def leave_unit(name: str) -> None:
    """The unit returned (its files are final); kill here for `UNIT:end`."""
    global _unit
    _maybe_kill(name, "end")
    _unit = None


def before_commit() -> None:
    """An atomic write is about to be renamed into place; kill here for `UNIT:N`."""
    global _writes
    if _unit is None:
        return
    _writes += 1
    _maybe_kill(_unit, str(_writes))


def inside_swap() -> None:
    """A directory write has moved the old folder aside and not yet moved the new one in (`UNIT:swapN`)."""
    if _unit is not None:
        _maybe_kill(_unit, f"swap{_writes}")


def _maybe_kill(unit: str, point: str) -> None:
    want = os.environ.get(ENV)
    if want and want == f"{unit}:{point}":
        name = "SIG" + os.environ.get(SIGNAL_ENV, "KILL").upper().removeprefix("SIG")
        sys.stderr.write(f"ontogeny test hook: {name} at {want}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), getattr(signal, name))

"""Progress reporting the library can call without knowing who (if anyone) is watching.

Why: a study runs for minutes to hours, often with its output going to a file; a person must see each
unit start and end and a sign of life inside long units (issue 17), while library code stays free of
printing (STYLE.md 4). The library calls this module's functions; the CLI decides what they show by
installing a reporter:

    from ontogeny import progress
    bar = progress.start("series training", total=n_steps, unit="steps")   # inside the library
    for ...: bar.advance(1, loss=loss)                                      # closes itself at total

    with progress.use(progress.for_stream(sys.stderr, quiet=False)):       # in the CLI
        with progress.unit("dictionaries/step_000128"):
            ...                                                             # start line, end line + seconds

Reporters: `Reporter` (the default: does nothing), `LineReporter` (one line per unit start/end, a
heartbeat line with progress at least every `heartbeat_s` seconds from a background thread, whether or
not the work calls `advance`, and a summary), `RichReporter` (rich bars on a terminal). The current
reporter is a context variable, falling back to the one installed process-wide, so threads started by
the library see it too.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def _figures(figs: dict[str, Any]) -> str:
    out = []
    for k, v in figs.items():
        if isinstance(v, float):
            out.append(f"{k} {v:.4g}")
        elif isinstance(v, (int, str)):
            out.append(f"{k} {v}")
    return ", ".join(out)


class Task:
    """A long piece of work with a count of done items out of an optional total."""

    def __init__(self, reporter: Reporter, name: str, total: int | None, unit: str):
        self.reporter, self.name, self.total, self.unit = reporter, name, total, unit
        self.done = 0
        self.figures: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        self.closed = False

    def advance(self, n: int = 1, **figures: Any) -> None:
        """Count `n` more items done; `figures` (loss=…, …) are shown with the next line."""
        if self.closed:
            return
        self.done += n
        self.figures.update(figures)
        self.reporter.on_advance(self)
        if self.total is not None and self.done >= self.total:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reporter.on_close(self)

    def status(self) -> str:
        secs = time.perf_counter() - self.t0
        count = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
        if self.total:
            count += f" ({100 * self.done / self.total:.0f}%)"
        figs = _figures(self.figures)
        return f"{self.name}: {count}, {secs:.0f} s" + (f", {figs}" if figs else "")

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Reporter:
    """Shows nothing (the default outside the CLI). Subclasses override the `on_*` hooks."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.units: dict[str, float] = {}
        self.finished: list[tuple[str, float, dict[str, Any]]] = []
        self.skipped: list[str] = []
        self.lock = threading.Lock()

    # hooks ------------------------------------------------------------------------------------
    def on_start(self, task: Task) -> None: ...
    def on_advance(self, task: Task) -> None: ...
    def on_close(self, task: Task) -> None: ...
    def on_unit_start(self, name: str) -> None: ...
    def on_unit_end(self, name: str, seconds: float, figures: dict[str, Any], error: str | None) -> None: ...
    def on_skip(self, name: str) -> None: ...
    def on_summary(self, text: str) -> None: ...

    # API --------------------------------------------------------------------------------------
    def start(self, name: str, total: int | None = None, unit: str = "steps") -> Task:
        t = Task(self, name, total, unit)
        with self.lock:
            self.tasks = [x for x in self.tasks if not x.closed] + [t]
        self.on_start(t)
        return t

    def unit_start(self, name: str) -> None:
        with self.lock:
            self.units[name] = time.perf_counter()
        self.on_unit_start(name)

    def unit_end(self, name: str, figures: dict[str, Any] | None = None, error: str | None = None,
                 seconds: float | None = None) -> None:
        with self.lock:
            t0 = self.units.pop(name, None)
            for t in self.tasks:  # a unit's unfinished tasks end with it
                t.closed = True
            self.tasks = []
        secs = seconds if seconds is not None else (time.perf_counter() - t0 if t0 is not None else 0.0)
        self.finished.append((name, secs, dict(figures or {})))
        self.on_unit_end(name, secs, dict(figures or {}), error)

    def skip(self, name: str) -> None:
        self.skipped.append(name)
        self.on_skip(name)

    def summary(self, extra: str = "") -> str:
        total = sum(s for _, s, _ in self.finished)
        slowest = sorted(self.finished, key=lambda r: -r[1])[:3]
        text = (f"{len(self.finished)} units ran ({total:.0f} s), {len(self.skipped)} skipped"
                + (f"; slowest: " + ", ".join(f"{n} {s:.0f} s" for n, s, _ in slowest) if slowest else "")
                + (f"; {extra}" if extra else ""))
        self.on_summary(text)
        return text

    def close(self) -> None: ...


class LineReporter(Reporter):
    """Plain lines on a stream (for logs and pipes): starts, ends, heartbeats, a summary."""

    def __init__(self, stream: TextIO | None = None, heartbeat_s: float = 30.0):
        super().__init__()
        if heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s}")
        self.stream = stream if stream is not None else sys.stderr
        self.heartbeat_s = heartbeat_s
        self.last_line = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="ontogeny-progress", daemon=True)
        self._thread.start()

    def line(self, text: str) -> None:
        with self.lock:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
            self.stream.flush()
            self.last_line = time.perf_counter()

    def _beat(self) -> None:
        tick = min(self.heartbeat_s / 4, 1.0)
        while not self._stop.wait(tick):
            if time.perf_counter() - self.last_line < self.heartbeat_s:
                continue
            with self.lock:
                tasks = [t for t in self.tasks if not t.closed]
                units = dict(self.units)
            if tasks:
                self.line("… " + tasks[-1].status())
            elif units:
                now = time.perf_counter()
                self.line("… running " + ", ".join(f"{n} ({now - t0:.0f} s)" for n, t0 in units.items()))

    def on_start(self, task: Task) -> None:
        self.line(f"  {task.name}: started" + (f" ({task.total} {task.unit})" if task.total else ""))

    def on_close(self, task: Task) -> None:
        self.line(f"  {task.status()} — done")

    def on_unit_start(self, name: str) -> None:
        self.line(f"▶ {name} started")

    def on_unit_end(self, name: str, seconds: float, figures: dict[str, Any], error: str | None) -> None:
        figs = _figures(figures)
        if error:
            self.line(f"✗ {name} failed after {seconds:.1f} s: {error}")
        else:
            self.line(f"✓ {name} done in {seconds:.1f} s" + (f" ({figs})" if figs else ""))

    def on_skip(self, name: str) -> None:
        self.line(f"· {name} already complete, skipped")

    def on_summary(self, text: str) -> None:
        self.line(f"summary: {text}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class RichReporter(Reporter):
    """rich bars on a terminal (one per task) and a line per unit."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream if stream is not None else sys.stderr)
        self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("{task.fields[figs]}"), console=self.console,
                             transient=True)
        self.bars.start()
        self.ids: dict[int, Any] = {}

    def on_start(self, task: Task) -> None:
        self.ids[id(task)] = self.bars.add_task(task.name, total=task.total, figs="")

    def on_advance(self, task: Task) -> None:
        if id(task) in self.ids:
            self.bars.update(self.ids[id(task)], completed=task.done, figs=_figures(task.figures))

    def on_close(self, task: Task) -> None:
        tid = self.ids.pop(id(task), None)
        if tid is not None:
            self.bars.remove_task(tid)

    def on_unit_start(self, name: str) -> None:
        self.console.print(f"[bold]▶[/] {name}")

    def on_unit_end(self, name: str, seconds: float, figures: dict[str, Any], error: str | None) -> None:
        for tid in list(self.ids.values()):
            self.bars.remove_task(tid)
        self.ids.clear()
        if error:
            self.console.print(f"[red]✗[/] {name} failed: {error}")
        else:
            self.console.print(f"[green]✓[/] {name} {seconds:.1f} s {_figures(figures)}")

    def on_skip(self, name: str) -> None:
        self.console.print(f"[dim]· {name} skipped (complete)[/]")

    def on_summary(self, text: str) -> None:
        self.console.print(f"[bold]summary:[/] {text}")

    def close(self) -> None:
        self.bars.stop()


_NULL = Reporter()
_global: Reporter = _NULL
_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("ontogeny_progress", default=None)


def current() -> Reporter:
    """The reporter in effect here (the context's, else the process-wide one, else the no-op)."""
    return _current.get() or _global


def start(name: str, total: int | None = None, unit: str = "steps") -> Task:
    """Begin a task on the current reporter; call `.advance()` on it, it closes itself at `total`."""
    return current().start(name, total, unit)


@contextmanager
def unit(name: str, figures: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """A unit of work: a start line, then an end line with its seconds and the figures put in the dict."""
    rep = current()
    figs = dict(figures or {})
    rep.unit_start(name)
    try:
        yield figs
    except BaseException as e:
        rep.unit_end(name, figs, error=f"{type(e).__name__}: {e}")
        raise
    rep.unit_end(name, figs)


@contextmanager
def use(reporter: Reporter) -> Iterator[Reporter]:
    """Install `reporter` for this context and process-wide (threads see it), then close it."""
    global _global
    token = _current.set(reporter)
    previous, _global = _global, reporter
    try:
        yield reporter
    finally:
        _current.reset(token)
        _global = previous
        reporter.close()


def for_stream(stream: TextIO | None = None, quiet: bool = False, heartbeat_s: float | None = None) -> Reporter:
    """The CLI's choice: nothing when quiet, rich bars on a terminal, plain lines otherwise.

    Off a terminal a heartbeat line comes at least every `heartbeat_s` seconds (default: the
    `ONTOGENY_HEARTBEAT_S` environment variable, else 30).
    """
    stream = stream if stream is not None else sys.stderr
    if heartbeat_s is None:
        heartbeat_s = float(os.environ.get("ONTOGENY_HEARTBEAT_S", "30"))
    if quiet:
        return Reporter()
    if getattr(stream, "isatty", lambda: False)():
        return RichReporter(stream)
    return LineReporter(stream, heartbeat_s)

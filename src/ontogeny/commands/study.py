"""`ontogeny study`, `ontogeny demo` and `ontogeny query`: the main job and its tables."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

import typer

from ontogeny.commands._common import build_config, console, set_option, show_table, user_errors


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run(cfg, run_dir: Path, backend: str | None, address: str | None, report: Path | None,
         verify: bool = False, quiet: bool = False) -> None:
    from ontogeny import progress as reporting
    from ontogeny.study.pipeline import run_study

    if backend:
        cfg = cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"backend": backend,
                                                                                "address": address})})
    t0 = time.perf_counter()

    def on_event(kind: str, name: str, info: dict) -> None:
        if kind == "stale":
            console.print(f"[yellow]recomputing {name}:[/yellow] {'; '.join(info['problems'][:3])}")

    # units report their start, end and heartbeats through ontogeny.progress (lines, or bars on a terminal)
    with reporting.use(reporting.for_stream(sys.stderr, quiet=quiet)):

        previous = signal.signal(signal.SIGTERM, _interrupt)  # a terminated study says "interrupted"
        try:
            out = run_study(cfg, run_dir, on_event, verify=verify)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted[/yellow]: rerun the same command to resume ({run_dir}/study.json)")
            raise typer.Exit(130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
    if out["stale"]:
        console.print(f"recomputed {len(out['stale'])} units whose files had changed: {', '.join(out['stale'])}")
    console.print(f"ran {len(out['ran'])} units, skipped {len(out['skipped'])} complete ones "
                  f"in {time.perf_counter() - t0:.0f}s")
    from ontogeny.report.html import headlines

    show_table("headline numbers", [{"measure": a, "value": b} for a, b, _ in headlines(run_dir)])
    page = Path(out["report"])
    if report is not None:
        shutil.copytree(page.parent, report, dirs_exist_ok=True)  # index.html, figures/, feature pages
        page = report / "index.html"
    console.print(f"report: {page}")


def study(
    config: Path = typer.Argument(..., help="Study config (TOML); see docs/study.md."),
    set_: list[str] = set_option(),
    run_dir: Path = typer.Option(Path("runs/study"), "--run-dir", help="Run directory (resumed if it exists)."),
    backend: str = typer.Option(None, help="Override compute.backend: process or ray."),
    address: str = typer.Option(None, help="Ray cluster address (default: a local instance)."),
    report: Path = typer.Option(None, help="Also copy the report (index.html + PNGs) to this folder."),
    verify: bool = typer.Option(False, help="Hash every finished unit's files before trusting them "
                                            "(default: size and modification time; a moved time is hashed)."),
    quiet: bool = typer.Option(False, help="No progress lines (errors and the summary still show)."),
) -> None:
    """Run a study: series -> activations -> dictionaries -> analyses -> report. Rerunning skips finished units
    whose files are intact, and recomputes any unit (and its dependents) whose files were changed or deleted."""
    from ontogeny.config import StudyConfig

    with user_errors():
        _run(build_config(StudyConfig, config, set_, origin="study"), run_dir, backend, address, report, verify, quiet)


def demo(
    run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="Run directory (resumed if it exists)."),
    report: Path = typer.Option(Path("report"), help="Folder for a copy of the report (index.html + PNGs)."),
    set_: list[str] = set_option(),
    backend: str = typer.Option(None, help="process (default) or ray."),
    address: str = typer.Option(None, help="Ray cluster address."),
    quiet: bool = typer.Option(False, help="No progress lines (errors and the summary still show)."),
) -> None:
    """The study on the embedded default: trains the small series here, analyses it, writes the report."""
    from ontogeny.config import StudyConfig
    from ontogeny.study.demo import demo_config

    with user_errors():
        cfg = demo_config()
        if set_:
            cfg = build_config(StudyConfig, None, set_, base=cfg.model_dump(mode="json"), origin="demo")
        _run(cfg, run_dir, backend, address, report, quiet=quiet)


def query(
    sql: str = typer.Argument(..., help="SQL over the run's tables, e.g. 'SELECT * FROM llc'."),
    run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="Run directory with tables/*.parquet."),
    limit: int = typer.Option(50, help="Rows shown at most."),
) -> None:
    """Query the run's Parquet tables with DuckDB (each tables/<name>.parquet is a view <name>)."""
    from ontogeny.store.tables import query as run_query

    with user_errors():
        cols, rows = run_query(run_dir, sql)
        show_table(f"{len(rows)} rows", [dict(zip(cols, r)) for r in rows[:limit]])


def register(app: typer.Typer) -> None:
    app.command("study")(study)
    app.command("demo")(demo)
    app.command("query")(query)

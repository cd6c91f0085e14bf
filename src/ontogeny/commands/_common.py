"""Helpers shared by the CLI commands: a console, progress bars, error handling and tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from ontogeny.errors import OntogenyError

console = Console(stderr=True)


def progress() -> Progress:
    """A rich progress bar with counts and times, drawn on stderr."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show an OntogenyError as one red line and exit 2, instead of a traceback."""
    try:
        yield
    except OntogenyError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


def show_table(title: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Print a list of flat dicts as a rich table on stdout."""
    if not rows:
        return
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(str(col))
    for r in rows:
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()])
    Console().print(table)


def parse_csv_ints(text: str | None) -> list[int] | None:
    """'0,128,256' -> [0, 128, 256]; None or '' -> None."""
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def parse_csv(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [x.strip() for x in text.split(",") if x.strip()]

"""Helpers shared by the CLI commands: config models from TOML + `--set`, a console, progress bars,
error handling and tables."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from ontogeny.errors import ConfigError, OntogenyError

console = Console(stderr=True)
M = TypeVar("M")

SET_HELP = ("Override one field of the command's config model: KEY=VALUE, VALUE a TOML literal (8, 1e-3, "
            "'text', [1, 2], true; a bare word is a string), dotted KEY for nested fields (sgld.num_draws=50). "
            "Repeatable; applied after --config and the other options.")


def config_option(what: str = "the command's config model") -> Any:
    """A `--config FILE.toml` option (one per command: typer options must not be shared objects)."""
    return typer.Option(None, "--config", "-c", help=f"TOML file with fields of {what} (docs/study.md).")


def set_option() -> Any:
    """A repeatable `--set KEY=VALUE` option."""
    return typer.Option(None, "--set", help=SET_HELP)


def parse_value(text: str) -> Any:
    """A `--set` value: a TOML literal ('8' -> 8, '[1, 2]', 'true', "'a b'"); anything else is the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _put(data: dict, dotted: str, value: Any, origin: str) -> None:
    parts = dotted.split(".")
    node = data
    for i, p in enumerate(parts[:-1]):
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{origin}: {'.'.join(parts[:i + 1])} is a value, not a table: cannot set {dotted}")
        node = nxt
    node[parts[-1]] = value


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def build_config(model: type[M], config: Path | None = None, sets: Sequence[str] | None = None,
                 flags: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None,
                 origin: str = "config") -> M:
    """The command's config model from, in order: `base`, the TOML file, convenience flags, `--set`.

    Flags map a dotted field path to a value; None means "not given" (the model's default stands), so a
    flag never carries a second default. Unknown keys fail with their dotted name.
    """
    from ontogeny.config import read_toml, validate

    data = _merge(dict(base or {}), read_toml(config) if config is not None else {})
    for path, value in (flags or {}).items():
        if value is not None:
            _put(data, path, value, origin)
    for item in sets or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set sgld.num_draws=50")
        _put(data, key.strip(), parse_value(value.strip()), origin)
    where = f"{origin} ({config})" if config is not None else origin
    return validate(model, data, where)


def progress() -> Progress:
    """A rich progress bar with counts and times, drawn on stderr."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show an OntogenyError, or an OS error (permission, disk full) with its path, as one red line and
    exit 2, instead of a traceback."""
    try:
        yield
    except OntogenyError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    except OSError as e:
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
        console.print(f"[red]error:[/red] {e.strerror or e}{f': {where}' if where else ''}")
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

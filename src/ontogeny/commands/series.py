"""`ontogeny series train` and `ontogeny series info`: train the embedded checkpoint series, and show one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from ontogeny.errors import OntogenyError

console = Console()


def load_config(path: Path | None, tiny: bool, overrides: dict, sets: list[str] | None = None) -> "SeriesConfig":  # noqa: F821
    """The default (or tiny) SeriesConfig, updated from a TOML file, then options, then `--set`."""
    from ontogeny.commands._common import build_config
    from ontogeny.series.train import SeriesConfig

    base = SeriesConfig.tiny().model_dump(mode="json") if tiny else None
    return build_config(SeriesConfig, path, sets, overrides, base=base, origin="series config")


def _fmt(x: float) -> str:
    return "not measured" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def losses_table(rows: list[dict], title: str) -> Table:
    """A rich table of the per-checkpoint log (losses and induction scores)."""
    table = Table(title=title)
    cols = ["step", "train_loss", "eval_loss", "eval_synthetic", "copy_first", "copy_second", "induction",
            "induction_full"]
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(str(r["step"]), *(_fmt(r.get(c)) for c in cols[1:]))
    return table


def train(
    out: Annotated[Path, typer.Option(help="folder to write the series into (must not hold a finished one)")]
    = Path("runs/demo/series"),
    config: Annotated[Optional[Path], typer.Option(help="TOML file of SeriesConfig fields")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a SeriesConfig field: KEY=VALUE "
                                                      "(TOML literal; dotted KEY for nested). Repeatable.")] = None,
    tiny: Annotated[bool, typer.Option(help="start from the tiny test config (seconds to train)")] = False,
    steps: Annotated[Optional[int], typer.Option(help="training steps (overrides the config)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed for corpus split, init and data order")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice)")]
    = None,
) -> None:
    """Train the embedded series: corpus, BPE tokenizer, a small GPT-NeoX and its checkpoints."""
    import torch

    from ontogeny.series.train import train_series

    if threads:
        torch.set_num_threads(threads)
    try:
        cfg = load_config(config, tiny, {"n_steps": steps, "seed": seed}, set_)
        with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task("train", total=cfg.n_steps, info="building corpus and tokenizer")

            def progress(step: int, m: dict) -> None:
                if "loss" in m:
                    bar.update(task, completed=step + 1,
                               info=f"loss {m['loss']:.3f}  {m['tokens_per_s']:,.0f} tok/s")
                else:
                    bar.console.log(f"checkpoint {step}: eval {m['eval_loss']:.3f}  "
                                    f"induction {m['induction']:.3f} nats")

            path = train_series(cfg, out, progress)
    except OntogenyError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    _show(path)


def info(path: Annotated[Path, typer.Argument(help="a series folder written by `series train`")]) -> None:
    """Show a trained series: steps, corpus hash and the per-checkpoint loss and induction table."""
    try:
        _show(path)
    except OntogenyError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e


def _show(path: Path) -> None:
    from ontogeny.series.train import read_losses, read_record

    record = read_record(path)
    rows = read_losses(path)
    console.print(losses_table(rows, f"series {path}"))
    cfg = record["config"]
    console.print(f"{len(record['steps'])} checkpoints, {cfg['n_layers']} layers, d_model {cfg['d_model']}, "
                  f"vocab {cfg['vocab_size']}, corpus {record['corpus_hash'][:12]}, "
                  f"trained in {record['wall_s']:.0f} s")


def register(app: typer.Typer) -> None:
    """Add the `series` command group to the ontogeny CLI."""
    sub = typer.Typer(help="The embedded checkpoint series: train it, inspect it.", no_args_is_help=True)
    sub.command("train")(train)
    sub.command("info")(info)
    app.add_typer(sub, name="series")

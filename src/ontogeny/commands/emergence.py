"""`ontogeny emergence`: synthetic sparse-attention sweeps, their analysis, and capability curves."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ontogeny.commands._common import build_config, config_option, console, parse_csv, parse_csv_ints, progress, \
    set_option, show_table, user_errors

emergence_app = typer.Typer(
    help="Emergence lab (seed 004): sparse-attention tasks, seed sweeps, emergence "
    "detection, capability curves with change points.",
    no_args_is_help=True,
)


def _floats(text: str | None) -> list[float] | None:
    items = parse_csv(text)
    if items is None:
        return None
    try:
        return [float(x) for x in items]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _sweep_config(config: Path | None, sets: list[str] | None, steps: int | None, grid_kw: dict):
    """SweepConfig from the TOML file and --set; a CLI grid (any grid option given) replaces the grids."""
    from ontogeny.emergence.sweep import SweepConfig

    given = {k: v for k, v in grid_kw.items() if v is not None}
    cfg = build_config(SweepConfig, config, sets, {"grids": [{"name": "cli", **given}] if given else None},
                       origin="sweep config")
    if steps is not None:  # on the config's train settings, whatever their source
        cfg = SweepConfig.model_validate({**cfg.model_dump(), "train": {**cfg.train.model_dump(), "steps": steps}})
    return cfg


@emergence_app.command("sweep")
def sweep(
    out: Path = typer.Argument(
        ..., help="Sweep folder (runs/, tables/, figures/); an existing one is resumed."
    ),
    config: Path = config_option("SweepConfig (a study's [emergence.sweep])"),
    set_: list[str] = set_option(),
    task: str = typer.Option(
        None, help="Replace the default grids by one grid of this task: linear_map, ca, induction."
    ),
    seeds: str = typer.Option(None, help="Seeds of the CLI grid, e.g. 0,1,2."),
    S: str = typer.Option(None, "--S", help="State sizes (linear map, CA) or longest periods (induction)."),
    s: str = typer.Option(None, "--s", help="Ones per row of the linear map A."),
    heads: str = typer.Option(None, help="Numbers of attention heads."),
    d_head: str = typer.Option(None, help="Head dimensions."),
    arch: str = typer.Option(None, help="Architectures: transformer, mixer."),
    bias: str = typer.Option(None, help="Attention-bias strengths c (0 = none)."),
    steps: int = typer.Option(None, help="Training steps per run (alias of `train.steps`)."),
    backend: str = typer.Option("process", help="Where runs execute: process or ray."),
    address: str = typer.Option(None, help="Ray cluster address (default: a local instance)."),
    analyze_after: bool = typer.Option(
        True, "--analyze/--no-analyze", help="Analyse and draw figures at the end."
    ),
) -> None:
    """Train every run of the sweep grid (seeds x S x s x heads x head dim x arch x bias), logging loss and
    attention alignment; write tables/emergence_{runs,curves,rows}.parquet, then analyse."""
    from ontogeny.emergence.sweep import expand, run_sweep

    with user_errors():
        grid_kw = {
            "task": task,
            "seeds": parse_csv_ints(seeds),
            "S": parse_csv_ints(S),
            "s": parse_csv_ints(s),
            "n_heads": parse_csv_ints(heads),
            "d_head": parse_csv_ints(d_head),
            "arch": parse_csv(arch),
            "bias": _floats(bias),
        }
        cfg = _sweep_config(config, set_, steps, grid_kw)
        n = len(expand(cfg))
        with progress() as bar:
            t = bar.add_task(f"{n} runs", total=n)
            run_sweep(cfg, out, backend=backend, address=address, on_done=lambda i, r: bar.advance(t),
                      resume=True)
        console.print(f"wrote {out / 'tables'}")
        if analyze_after:
            _analyze(out, "t_50")


def _analyze(out: Path, col: str) -> None:
    from ontogeny.emergence.pipeline import analyze_sweep

    res = analyze_sweep(out, col)
    show_table(
        f"emergence by configuration ({col}; censored at the budget)",
        [
            {
                k: c[k]
                for k in (
                    "arch",
                    "S",
                    "s",
                    "n_heads",
                    "d_head",
                    "bias",
                    "n_seeds",
                    "solve_rate",
                    "t_median",
                    "t_min",
                    "t_max",
                    "spread",
                    "final_loss_out",
                )
            }
            for c in res["configs"]
        ],
    )
    show_table(
        "plateau ~ b S^a (median time, S with >= half of seeds solved)",
        [
            {"arch": f["arch"], "bias": f["bias"], "S": str(f["S"]), "a": f["a"], "r2": f["r2"]}
            for f in res["fits"]
        ],
    )
    show_table(
        "seed 004 claims at this scale",
        [{"claim": c["claim"], "holds": c["holds"], "evidence": c["evidence"]} for c in res["claims"]],
    )
    console.print(f"figures: {out / 'figures'}")


@emergence_app.command("analyze")
def analyze(
    out: Path = typer.Argument(..., help="A sweep folder written by `ontogeny emergence sweep`."),
    col: str = typer.Option(
        "t_50",
        help="Emergence threshold column: t_20, t_50 or t_90 (fraction of the way from plateau to floor).",
    ),
) -> None:
    """Emergence-time distributions, plateau vs S power law, heads vs head dim, transformer vs mixer, the
    bias intervention, and which of the paper's claims hold; tables and figures into the sweep folder."""
    with user_errors():
        _analyze(out, col)


@emergence_app.command("capabilities")
def capabilities(
    series_dir: Path = typer.Argument(..., help="Checkpoint series folder (step_*/ + tokenizer/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for tables/ and figures/."),
    steps: str = typer.Option(None, help="Comma-separated steps (default: every checkpoint)."),
    config: Path = config_option("CapabilityConfig (a study's [capabilities.config])"),
    set_: list[str] = set_option(),
    n_prompts: int = typer.Option(None, help="Random prompts per metric (alias of `n_prompts`)."),
    rep_len: int = typer.Option(None, help="Length L of the repeated random segment (alias of `rep_len`)."),
    vocab_limit: int = typer.Option(None, help="Draw random tokens from ids below this (alias of `vocab_limit`)."),
    pairs: Path = typer.Option(None, help="JSON list of {prompt, correct, incorrect} for logit differences "
                                          "(sets `pairs`)."),
    seed: int = typer.Option(None, help="Seed of the prompts, the same for every checkpoint (alias of `seed`)."),
    device: str = typer.Option("cpu", help="Torch device."),
) -> None:
    """Task metrics per checkpoint (induction, digit repetition, brackets, prompt pairs), per-head
    prefix matching, and each metric's change points (one jump and several) with an abruptness score."""
    from ontogeny.capabilities.config import CapabilityConfig, PromptPair
    from ontogeny.capabilities.pipeline import capabilities_run
    from ontogeny.errors import ConfigError
    from ontogeny.series.load import load_series

    with user_errors():
        pp = None
        if pairs is not None:
            try:
                pp = [PromptPair(**p).model_dump() for p in json.loads(pairs.read_text())]
            except (OSError, ValueError, TypeError) as e:
                raise ConfigError(f"cannot read prompt pairs {pairs}: {e}") from e
        flags = {"n_prompts": n_prompts, "rep_len": rep_len, "vocab_limit": vocab_limit, "pairs": pp, "seed": seed}
        cfg = build_config(CapabilityConfig, config, set_, flags, origin="capabilities")
        series = load_series(series_dir, steps=parse_csv_ints(steps), device=device)
        with progress() as bar:
            t = bar.add_task("checkpoints", total=len(series.steps))
            res = capabilities_run(series, out, cfg, on_step=lambda s: bar.advance(t))
        show_table(
            "capability events (biggest jump: Dynp; all jumps: Pelt)",
            [
                {
                    "metric": e["metric"],
                    "jump_step": e["jump_step"],
                    "delta": e["delta"],
                    "width_ratio": e["width_ratio"],
                    "abrupt": e["abrupt"],
                    "all_jumps": str(e["all_jumps"]),
                }
                for e in res["events"]
            ],
        )
        console.print(f"wrote {out / 'tables'} and {out / 'figures'}")


def register(app: typer.Typer) -> None:
    app.add_typer(emergence_app, name="emergence")

"""`ontogeny crosscode`: a crosscoder over K checkpoints, RelDec classes, IG indirect effects and RelIE."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ontogeny.commands._common import build_config, config_option, console, parse_csv, parse_csv_ints, progress, \
    set_option, show_table, user_errors
from ontogeny.store import layout


def crosscode(
    run_dir: Path = typer.Argument(..., help="Run directory: tables/ and figures/ are written here."),
    config: Optional[Path] = config_option("CrosscodeConfig"),
    set_: Optional[list[str]] = set_option(),
    steps: str = typer.Option(None, help="Comma-separated checkpoints to stack, in training order, 2 or more "
                                         "(alias of `steps`; required unless the config gives them)."),
    site: str = typer.Option(None, help="Hook site of the activations (alias of `site`)."),
    store: Optional[Path] = typer.Option(None, help="Activation store (default: RUN_DIR/activations)."),
    activations: Optional[Path] = typer.Option(None, help="Folder of activation files instead of a store: "
                                               "step_XXXXXX/<site>.safetensors or step_XXXXXX/activations.safetensors "
                                               "(tensor 'acts', tokens x d_in). RelDec only, unless --series is given."),
    series: Optional[Path] = typer.Option(None, help="Checkpoint series (default: RUN_DIR/series)."),
    d_sae: int = typer.Option(None, help="Number of shared latents (alias of `d_sae`)."),
    rule: str = typer.Option(None, help="relu (L1 weighted by summed decoder norms) or batchtopk (alias of `rule`)."),
    l1: float = typer.Option(None, help="relu: L1 coefficient lambda (alias of `l1_coefficient`)."),
    k: str = typer.Option(None, help="batchtopk: mean active latents per token, or 'auto' (a descending "
                                     "search from k_max during training) (alias of `k`)."),
    n_steps: int = typer.Option(None, help="Training steps (alias of `n_steps`)."),
    batch_size: int = typer.Option(None, help="Tokens per training batch (alias of `batch_size`)."),
    lr: float = typer.Option(None, help="Adam learning rate (alias of `lr`)."),
    tasks: str = typer.Option(None, help="Comma-separated built-in minimal-pair tasks, '' for none (alias of `tasks`)."),
    pairs: Optional[Path] = typer.Option(None, help="JSONL of your own minimal pairs (alias of `pairs_file`)."),
    n_pairs: int = typer.Option(None, help="Pairs generated per built-in task (alias of `n_pairs`)."),
    ig_steps: int = typer.Option(None, help="Integrated-gradient steps (alias of `ig.steps`)."),
    node_threshold: float = typer.Option(None, help="Per-token |IE| at or below this is zeroed "
                                                    "(alias of `ig.node_threshold`)."),
    low: float = typer.Option(None, help="Class cut: below is discontinued (alias of `low`)."),
    high: float = typer.Option(None, help="Class cut: above is emerging (alias of `high`)."),
    top_k: int = typer.Option(None, help="Top-|IE| latents per checkpoint kept (alias of `top_k`)."),
    ablate: bool = typer.Option(None, "--ablate/--no-ablate", help="Validate by zero-ablating the top latents "
                                                                  "(alias of `ablate`)."),
    seed: int = typer.Option(None, help="Seed of the crosscoder, batches and generated pairs (alias of `seed`)."),
    name: str = typer.Option(None, help="Suffix for this variant's files, e.g. 'batchtopk' (alias of `name`)."),
    device: str = typer.Option("cpu", help="Torch device for the models."),
) -> None:
    """Train a crosscoder over STEPS and write RelDec/RelIE tables (Parquet) and figures."""
    from ontogeny.crosscoding.config import CrosscodeConfig
    from ontogeny.crosscoding.pipeline import run_crosscode
    from ontogeny.series.load import load_series
    from ontogeny.store.activations import ActivationStore

    with user_errors():
        flags = {"steps": parse_csv_ints(steps), "site": site, "d_sae": d_sae, "rule": rule, "l1_coefficient": l1,
                 "k": None if k is None else (k if k == "auto" else _int_or_auto(k)), "n_steps": n_steps, "batch_size": batch_size, "lr": lr,
                 "tasks": None if tasks is None else (parse_csv(tasks) or []), "pairs_file": pairs,
                 "n_pairs": n_pairs, "ig.steps": ig_steps, "ig.node_threshold": node_threshold, "low": low,
                 "high": high, "top_k": top_k, "ablate": ablate, "seed": seed, "name": name}
        cfg = build_config(CrosscodeConfig, config, set_, flags, origin="crosscode")
        if activations is not None:
            from ontogeny.crosscoding.sources import from_files

            acts = from_files(activations, cfg.steps, cfg.site)
            ser = load_series(series, steps=cfg.steps, device=device) if series is not None else None
        else:
            acts = ActivationStore(store or layout.activations_dir(run_dir))
            ser = load_series(series or layout.series_dir(run_dir), steps=cfg.steps, device=device)
        with progress() as bar:
            ids: dict[str, int] = {}

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage not in ids:
                    ids[stage] = bar.add_task({"train": "training crosscoder", "tasks": "effects per task"}[stage],
                                              total=total)
                bar.update(ids[stage], completed=done)

            result = run_crosscode(run_dir, cfg, acts, ser, on_progress)
        s = result.summary
        show_table("crosscoder", [{"alive": s["alive"], "dead": s["dead"], "fvu": s["fvu"], "l0": s["l0"],
                                   **{kk: v for kk, v in s.items() if kk.startswith("fvu_")}}])
        show_table(f"presence classes of alive latents (tau {s['presence_tau']:g})",
                   [{"class": c, "latents": n} for c, n in s["reldec_classes"].items()])
        sens = s["presence_sensitivity"]
        show_table("presence classes against tau (alive latents)",
                   [{"class": c, **{f"tau {t}": sens[t].get(c, 0) for t in sens}}
                    for c in dict.fromkeys(c for row in sens.values() for c in row)])
        show_table("sparsity", [s["sparsity"]])
        show_table("latent scaling", [s["artefacts"]])
        show_table("tasks: accuracy per checkpoint, top-|IE| latents, no-effect latents, Spearman of ablation "
                   "vs RelDec/RelIE",
                   [{"task": t, **{kk: v for kk, v in row.items()
                                   if not kk.startswith(("metric_", "ie_err_", "relie_classes"))}}
                    for t, row in s["tasks"].items()])
        show_table("RelIE classes of alive latents per task",
                   [{"task": t, **row.get("relie_classes", {})} for t, row in s["tasks"].items()])
        for name, path in result.paths.items():
            console.print(f"wrote {path}")


def _int_or_auto(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        from ontogeny.errors import ConfigError

        raise ConfigError(f"--k must be a positive integer or 'auto', got {text!r}") from None


def register(app: typer.Typer) -> None:
    app.command("crosscode")(crosscode)

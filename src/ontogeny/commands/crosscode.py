"""`ontogeny crosscode`: a crosscoder over K checkpoints, RelDec classes, IG indirect effects and RelIE."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ontogeny.commands._common import console, parse_csv, parse_csv_ints, progress, show_table, user_errors


def crosscode(
    run_dir: Path = typer.Argument(..., help="Run directory: tables/ and figures/ are written here."),
    steps: str = typer.Option(..., help="Comma-separated checkpoints to stack, in training order (2 or more)."),
    site: str = typer.Option("blocks.1.hook_resid_pre", help="Hook site of the activations."),
    store: Optional[Path] = typer.Option(None, help="Activation store (default: RUN_DIR/activations)."),
    series: Optional[Path] = typer.Option(None, help="Checkpoint series (default: RUN_DIR/series)."),
    d_sae: int = typer.Option(512, help="Number of shared latents."),
    rule: str = typer.Option("relu", help="relu (L1 weighted by summed decoder norms) or batchtopk."),
    l1: float = typer.Option(2.0, help="relu: L1 coefficient lambda (warmed up over the first 5% of steps)."),
    k: int = typer.Option(32, help="batchtopk: mean active latents per token."),
    n_steps: int = typer.Option(2000, help="Training steps."),
    batch_size: int = typer.Option(1024, help="Tokens per training batch."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    tasks: str = typer.Option("brackets,quotes,agreement,copy", help="Built-in minimal-pair tasks ('' for none)."),
    pairs: Optional[Path] = typer.Option(None, help="JSONL of your own minimal pairs (good/bad or prefix/correct/wrong)."),
    n_pairs: int = typer.Option(64, help="Pairs generated per built-in task."),
    ig_steps: int = typer.Option(10, help="Integrated-gradient steps."),
    node_threshold: float = typer.Option(0.1, help="Per-token |IE| at or below this is zeroed."),
    low: float = typer.Option(0.3, help="Class cut: below is discontinued (earlier-specific)."),
    high: float = typer.Option(0.7, help="Class cut: above is emerging (later-specific)."),
    top_k: int = typer.Option(10, help="Top-|IE| latents per checkpoint kept for ablation and figures."),
    ablate: bool = typer.Option(True, help="Validate by zero-ablating the top latents (Spearman vs RelDec/RelIE)."),
    seed: int = typer.Option(0, help="Seed of the crosscoder, batches and generated pairs."),
    name: str = typer.Option("", help="Suffix for this variant's files (e.g. 'batchtopk'), so it does not "
                                      "replace another study over the same steps."),
    device: str = typer.Option("cpu", help="Torch device for the models."),
) -> None:
    """Train a crosscoder over STEPS and write RelDec/RelIE tables (Parquet) and figures (HTML + PNG)."""
    from ontogeny.causal.attribution import IGConfig
    from ontogeny.crosscoding.config import CrosscodeConfig
    from ontogeny.crosscoding.pipeline import run_crosscode
    from ontogeny.series.load import load_series
    from ontogeny.store.activations import ActivationStore

    with user_errors():
        step_list = parse_csv_ints(steps) or []
        cfg = _config(CrosscodeConfig, IGConfig, steps=step_list, site=site, d_sae=d_sae, rule=rule, l1_coefficient=l1,
                      k=k, n_steps=n_steps, batch_size=batch_size, lr=lr, tasks=parse_csv(tasks) or [],
                      pairs_file=pairs, n_pairs=n_pairs, ig={"steps": ig_steps, "node_threshold": node_threshold},
                      low=low, high=high, top_k=top_k, ablate=ablate, seed=seed, name=name)
        acts = ActivationStore(store or run_dir / "activations")
        ser = load_series(series or run_dir / "series", steps=step_list, device=device)
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
        show_table("RelDec classes (alive latents)", [{"class": c, "latents": n}
                                                      for c, n in sorted(s["reldec_classes"].items())])
        show_table("latent scaling", [s["artefacts"]])
        show_table("tasks: accuracy per checkpoint, top-|IE| latents, Spearman of ablation vs RelDec/RelIE",
                   [{"task": t, **{kk: v for kk, v in row.items() if not kk.startswith(("metric_", "ie_err_"))}}
                    for t, row in s["tasks"].items()])
        for name, path in result.paths.items():
            console.print(f"wrote {path}")


def _config(cls, ig_cls, **kw):
    from pydantic import ValidationError

    from ontogeny.errors import ConfigError

    try:
        kw["ig"] = ig_cls(**kw["ig"])
        return cls(**kw)
    except ValidationError as e:
        raise ConfigError(f"invalid crosscode option: {e}") from None


def register(app: typer.Typer) -> None:
    app.command("crosscode")(crosscode)

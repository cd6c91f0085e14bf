"""`ontogeny cache`: activations of chosen sites × checkpoints on the shared token set."""

from __future__ import annotations

from pathlib import Path

import typer

from ontogeny.commands._common import build_config, config_option, console, parse_csv, parse_csv_ints, progress, \
    set_option, show_table, user_errors


def cache(
    series_dir: Path = typer.Argument(..., help="Checkpoint series folder (step_*/ + tokenizer/) or one model."),
    out: Path = typer.Option(..., "--out", "-o", help="Activation store folder to create or extend."),
    config: Path = config_option("CaptureConfig (a study's [activations])"),
    set_: list[str] = set_option(),
    sites: str = typer.Option(None, help="Comma-separated sites (alias of `sites`)."),
    steps: str = typer.Option(None, help="Comma-separated steps (default: every checkpoint)."),
    n_seqs: int = typer.Option(None, help="Sequences of the shared token set (alias of `n_seqs`)."),
    ctx: int = typer.Option(None, help="Tokens per sequence (alias of `ctx`)."),
    batch_size: int = typer.Option(None, help="Sequences per forward pass (alias of `batch_size`)."),
    dtype: str = typer.Option(None, help="Storage dtype: float32, float16 or bfloat16 (alias of `dtype`)."),
    seed: int = typer.Option(None, help="Seed for choosing the sequences (alias of `seed`)."),
    device: str = typer.Option("cpu", help="Torch device for the forward passes."),
) -> None:
    """Capture activations at SITES for each checkpoint on the shared token set (the study's, for equal settings)."""
    from ontogeny.series.capture import CaptureConfig, cache_activations, check_sites, series_corpus, \
        shared_token_ids
    from ontogeny.series.load import load_series

    with user_errors():
        cfg = build_config(CaptureConfig, config, set_, {"sites": parse_csv(sites), "n_seqs": n_seqs, "ctx": ctx,
                                                         "batch_size": batch_size, "dtype": dtype, "seed": seed},
                           origin="cache")
        series = load_series(series_dir, steps=parse_csv_ints(steps), device=device)
        check_sites(cfg.sites, series.n_layers)  # fail before the corpus is built
        token_ids = shared_token_ids(series.tokenizer, series_corpus(series_dir), cfg)
        with progress() as bar:
            task = bar.add_task("capturing", total=len(series.steps))
            store = cache_activations(series, token_ids, cfg.sites, out, batch_size=cfg.batch_size, dtype=cfg.dtype,
                                      config=cfg.model_dump(mode="json"), on_step=lambda s: bar.advance(task))
        show_table("activation store", [{"step": s, "sites": len(store.sites), "rows": store.token_ids.numel(),
                                         "d": store.width(store.sites[0])} for s in store.steps])
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("cache")(cache)

"""`ontogeny cache`: activations of chosen sites × checkpoints on the same token ids."""

from __future__ import annotations

from pathlib import Path

import typer

from ontogeny.commands._common import console, parse_csv, parse_csv_ints, progress, show_table, user_errors


def cache(
    series_dir: Path = typer.Argument(..., help="Checkpoint series folder (step_*/ + tokenizer/) or one model."),
    out: Path = typer.Option(..., "--out", "-o", help="Activation store folder to create or extend."),
    sites: str = typer.Option("blocks.0.hook_resid_post,blocks.1.hook_resid_post", help="Comma-separated sites."),
    steps: str = typer.Option(None, help="Comma-separated steps (default: every checkpoint)."),
    n_seqs: int = typer.Option(256, help="Number of token sequences (the shared token set)."),
    ctx: int = typer.Option(64, help="Tokens per sequence."),
    batch_size: int = typer.Option(32, help="Sequences per forward pass."),
    dtype: str = typer.Option("float32", help="Storage dtype: float32, float16 or bfloat16."),
    seed: int = typer.Option(0, help="Seed for choosing the sequences."),
    device: str = typer.Option("cpu", help="Torch device for the forward passes."),
) -> None:
    """Capture activations at SITES for each checkpoint on one fixed set of held-out token ids."""
    from ontogeny.series.load import load_series
    from ontogeny.series.sites import parse_site
    from ontogeny.store.activations import cache_activations
    from ontogeny.store.tokens import eval_token_ids

    with user_errors():
        series = load_series(series_dir, steps=parse_csv_ints(steps), device=device)
        site_list = parse_csv(sites) or []
        for s in site_list:  # fail before the corpus is built
            parse_site(s, series.n_layers)
        token_ids = eval_token_ids(series.tokenizer, n_seqs, ctx, seed)
        with progress() as bar:
            task = bar.add_task("capturing", total=len(series.steps))
            store = cache_activations(series, token_ids, site_list, out, batch_size=batch_size, dtype=dtype,
                                      config={"n_seqs": n_seqs, "ctx": ctx, "seed": seed, "sites": site_list},
                                      on_step=lambda s: bar.advance(task))
        show_table("activation store", [{"step": s, "sites": len(store.sites), "rows": store.token_ids.numel(),
                                         "d": store.width(store.sites[0])} for s in store.steps])
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("cache")(cache)

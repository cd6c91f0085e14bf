"""`ontogeny llc` and `ontogeny susceptibility`: singular learning theory over a checkpoint series."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from ontogeny.commands._common import console, parse_csv, parse_csv_ints, progress, show_table, user_errors

_SGLD_HELP = "SGLD: step size ε, nβ, localisation γ (Baker et al. 2025 use 1e-3, 30, 300)."


def _corpus(size: str, seed: int):
    from ontogeny.errors import ConfigError
    from ontogeny.series.corpus import CorpusConfig, build_corpus

    if size not in ("default", "tiny"):
        raise ConfigError(f"--corpus-size must be 'default' or 'tiny', got {size!r}")
    return build_corpus(seed=seed, config=CorpusConfig.tiny() if size == "tiny" else None)


def llc(
    series_dir: Path = typer.Argument(..., help="Checkpoint series folder (step_*/ + tokenizer/) or one model."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: writes tables/llc.parquet, figures/llc_curve.*"),
    steps: str = typer.Option(None, help="Comma-separated steps (default: every checkpoint)."),
    components: str = typer.Option("full", help="Comma-separated restrictions: full, l<L>h<H>, l<L>attn, l<L>, "
                                                "or 'heads' for every head."),
    lr: float = typer.Option(1e-3, help=_SGLD_HELP),
    n_beta: float = typer.Option(30.0, help="Inverse temperature nβ."),
    gamma: float = typer.Option(300.0, help="Localisation γ."),
    chains: int = typer.Option(4, help="SGLD chains (vmapped)."),
    draws: int = typer.Option(100, help="Draws per chain."),
    burnin: int = typer.Option(0, help="Burn-in steps per chain."),
    batch_size: int = typer.Option(16, help="Sequences per SGLD minibatch."),
    n_seqs: int = typer.Option(256, help="Sequences in the sampling pool (corpus eval split, all kinds)."),
    ctx: int = typer.Option(64, help="Tokens per sequence."),
    seed: int = typer.Option(0, help="Seed of SGLD noise and minibatch order."),
    corpus_size: str = typer.Option("default", help="Corpus to draw tokens from: default or tiny."),
) -> None:
    """Estimate the local learning coefficient λ̂ = nβ(E[L] − L(w*)) at each checkpoint (the LLC curve)."""
    from ontogeny.series.load import load_series
    from ontogeny.slt.figures import llc_curve
    from ontogeny.slt.heads import head_names
    from ontogeny.slt.pipeline import llc_rows
    from ontogeny.slt.sgld import SGLDConfig
    from ontogeny.slt.tables import write_table
    from ontogeny.store.activations import pack_tokens
    from ontogeny.store.run import tensor_hash

    with user_errors():
        series = load_series(series_dir, steps=parse_csv_ints(steps))
        corpus = _corpus(corpus_size, 0)
        ids = pack_tokens(series.tokenizer, [d.text for d in corpus.eval], n_seqs, ctx, seed)
        cfg = SGLDConfig(lr=lr, n_beta=n_beta, gamma=gamma, num_chains=chains, num_draws=draws,
                         num_burnin_steps=burnin, batch_size=batch_size, seed=seed)
        comp_list = parse_csv(components) or ["full"]
        rows = []
        with progress() as bar:
            task = bar.add_task("SGLD", total=None)
            for step in series.steps:
                model = series.model(step)
                n_comps = sum(len(head_names(model)) if x == "heads" else 1 for x in comp_list)
                bar.update(task, total=len(series.steps) * n_comps * cfg.num_steps, description=f"step {step}")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # counted in n_warnings instead
                    rows += llc_rows(model, ids, cfg, comp_list, step, on_step=lambda _: bar.advance(task))
        inputs = {"series": str(series_dir), "token_ids": tensor_hash(ids), "corpus": corpus.hash}
        write_table(rows, out / "tables" / "llc.parquet", cfg, inputs)
        llc_curve(rows, out / "figures")
        show_table("LLC", [{k: r[k] for k in ("step", "component", "n_params", "llc_mean", "llc_std", "init_loss",
                                              "n_warnings")} for r in rows])
        console.print(f"wrote {out / 'tables' / 'llc.parquet'} and {out / 'figures' / 'llc_curve.html'}")


def susceptibility(
    series_dir: Path = typer.Argument(..., help="Checkpoint series folder (step_*/ + tokenizer/) or one model."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: writes tables/susceptibility_*.parquet, figures/."),
    step: int = typer.Option(None, help="Checkpoint step (default: the last)."),
    components: str = typer.Option(None, help="Comma-separated restrictions (default: every head)."),
    base: str = typer.Option("code", help="Corpus kind of the base distribution q."),
    probes: str = typer.Option("prose,tests,docstrings,synthetic", help="Comma-separated probe kinds q'."),
    centring: str = typer.Option("devinterp", help="'devinterp' (full-run centring) or 'covariance'."),
    lr: float = typer.Option(1e-3, help=_SGLD_HELP),
    n_beta: float = typer.Option(30.0, help="Inverse temperature nβ."),
    gamma: float = typer.Option(300.0, help="Localisation γ."),
    chains: int = typer.Option(4, help="SGLD chains (vmapped)."),
    draws: int = typer.Option(100, help="Draws per chain."),
    burnin: int = typer.Option(0, help="Burn-in steps per chain."),
    batch_size: int = typer.Option(16, help="Sequences per SGLD minibatch."),
    ctx: int = typer.Option(64, help="Tokens per sequence."),
    n_probe_seqs: int = typer.Option(8, help="Fixed sequences per probe (and for the base set)."),
    induction_threshold: float = typer.Option(0.3, help="PROPOSAL: heads with induction score ≥ this count as "
                                                        "induction heads in the separation summary."),
    seed: int = typer.Option(0, help="Seed of SGLD and of the token sets."),
    corpus_size: str = typer.Option("default", help="Corpus to draw tokens from: default or tiny."),
) -> None:
    """Per-head susceptibilities χ for corpus-kind probes, the response matrix, its PCA, and induction scores."""
    from ontogeny.series.load import load_series
    from ontogeny.slt.heads import head_names
    from ontogeny.slt.pipeline import susceptibility_run
    from ontogeny.slt.sgld import SGLDConfig
    from ontogeny.slt.susceptibility import SusceptibilityConfig

    with user_errors():
        series = load_series(series_dir)
        step = series.steps[-1] if step is None else step
        model = series.model(step)
        sgld = SGLDConfig(lr=lr, n_beta=n_beta, gamma=gamma, num_chains=chains, num_draws=draws,
                          num_burnin_steps=burnin, batch_size=batch_size, seed=seed)
        cfg = SusceptibilityConfig(sgld=sgld, centring=centring, components=parse_csv(components), ctx=ctx,
                                   n_base_seqs=n_probe_seqs, n_probe_seqs=n_probe_seqs, base_kind=base,
                                   probe_kinds=parse_csv(probes) or [], seed=seed)
        comps = cfg.components or head_names(model)
        with progress() as bar, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # shown below from the result's warnings
            task = bar.add_task("SGLD full", total=(len(comps) + 1) * sgld.num_steps)
            res = susceptibility_run(model, series.tokenizer, cfg, out, step, induction_threshold,
                                     corpus=_corpus(corpus_size, 0),
                                     on_component=lambda c: bar.update(task, description=f"SGLD after {c}"),
                                     on_step=lambda _: bar.advance(task))
        r = res["response"]
        show_table(f"response matrix χ at step {step} (probe × head, centring={centring})",
                   [{"probe": p, **{c: float(r["matrix"][i][j]) for j, c in enumerate(r["components"])}}
                    for i, p in enumerate(r["probes"])])
        show_table("heads", [{k: h[k] for k in ("component", "induction_score", "llc_mean", "pc1", "pc2")
                              if k in h} for h in res["heads"]])
        show_table("PCA of the token-level response matrix", res["pcs"])
        show_table("induction-head separation (PROPOSAL)", res["separation"])
        for w in res["warnings"][:5]:
            console.print(f"[yellow]warning:[/yellow] {w}")
        if len(res["warnings"]) > 5:
            console.print(f"[yellow]… {len(res['warnings']) - 5} more SGLD warnings[/yellow]")
        console.print(f"wrote {out / 'tables'} and {out / 'figures'}")


def register(app: typer.Typer) -> None:
    app.command("llc")(llc)
    app.command("susceptibility")(susceptibility)

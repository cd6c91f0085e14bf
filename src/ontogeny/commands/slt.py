"""`ontogeny llc` and `ontogeny susceptibility`: singular learning theory over a checkpoint series."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from ontogeny.commands._common import build_config, config_option, console, parse_csv, parse_csv_ints, progress, \
    set_option, show_table, user_errors
from ontogeny.store import layout

_SGLD = "SGLD (Baker et al. 2025 use ε 1e-3, nβ 30, γ 300)"

# The SGLD alias options, defined once and shared by `llc` and `susceptibility` (typer copies an
# Annotated option per command). Each is an alias of an SGLDConfig field; None: the config's value.
Lr = Annotated[float | None, typer.Option(help=f"{_SGLD}: step size ε (alias of `sgld.lr`).")]
NBeta = Annotated[float | None, typer.Option(help="Inverse temperature nβ (alias of `sgld.n_beta`; "
                                                   "default n/ln n).")]
Gamma = Annotated[float | None, typer.Option(help="Localisation γ (alias of `sgld.gamma`).")]
Chains = Annotated[int | None, typer.Option(help="SGLD chains, vmapped (alias of `sgld.num_chains`).")]
Draws = Annotated[int | None, typer.Option(help="Draws per chain (alias of `sgld.num_draws`).")]
Burnin = Annotated[int | None, typer.Option(help="Burn-in steps per chain on top of the detected burn-in "
                                                 "(alias of `sgld.num_burnin_steps`).")]
BatchSize = Annotated[int | None, typer.Option(help="Sequences per SGLD minibatch (alias of `sgld.batch_size`).")]
Seed = Annotated[int | None, typer.Option(help="Seed of SGLD and of the token sets (alias of `sgld.seed` and "
                                               "`seed`).")]


def _corpus(size: str | None, series_dir: Path):
    """The corpus of the token sets: the series' own (default), or the embedded default / tiny one."""
    from ontogeny.errors import ConfigError
    from ontogeny.series.capture import series_corpus
    from ontogeny.series.corpus import CorpusConfig, build_corpus

    if size is None:
        return series_corpus(series_dir)
    if size not in ("default", "tiny"):
        raise ConfigError(f"--corpus-size must be 'default' or 'tiny', got {size!r}")
    return build_corpus(seed=0, config=CorpusConfig.tiny() if size == "tiny" else None)


def _in_words(rows: list[dict]) -> list[dict]:
    """Table rows for a person: a figure that was not measured (None) is said in words."""
    return [{k: "not measured" if v is None else v for k, v in r.items()} for r in rows]


def _sgld_flags(lr, n_beta, gamma, chains, draws, burnin, batch_size, seed) -> dict:
    return {"sgld.lr": lr, "sgld.n_beta": n_beta, "sgld.gamma": gamma, "sgld.num_chains": chains,
            "sgld.num_draws": draws, "sgld.num_burnin_steps": burnin, "sgld.batch_size": batch_size,
            "sgld.seed": seed, "seed": seed}


def llc(
    series_dir: Path = typer.Argument(..., help="Checkpoint series folder (step_*/ + tokenizer/) or one model."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: writes tables/llc.parquet, figures/llc_curve.*"),
    config: Path = config_option("a study's [llc] section (token set, components, sgld)"),
    set_: list[str] = set_option(),
    steps: str = typer.Option(None, help="Comma-separated steps (alias of `steps`; default: every checkpoint)."),
    components: str = typer.Option(None, help="Comma-separated restrictions: full, l<L>h<H>, l<L>attn, l<L>, "
                                              "or 'heads' for every head (alias of `components`)."),
    lr: Lr = None,
    n_beta: NBeta = None,
    gamma: Gamma = None,
    chains: Chains = None,
    draws: Draws = None,
    burnin: Burnin = None,
    batch_size: BatchSize = None,
    n_seqs: int = typer.Option(None, help="Sequences in the sampling pool (alias of `n_seqs`)."),
    ctx: int = typer.Option(None, help="Tokens per sequence (alias of `ctx`)."),
    seed: Seed = None,
    corpus_size: str = typer.Option(None, help="Corpus of the token set: default or tiny (default: the corpus "
                                               "the series was trained on)."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Choose ε and γ first at the last checkpoint "
                                   "(sets `calibration = {}`; tables/llc_calibration.parquet, figures/)."),
) -> None:
    """Estimate the local learning coefficient λ̂ = nβ(E[L] − L(w*)) at each checkpoint (the LLC curve)."""
    from ontogeny.config import LLCSection
    from ontogeny.series.capture import shared_token_ids
    from ontogeny.series.load import load_series
    from ontogeny.slt.figures import llc_curve, trace_plot
    from ontogeny.slt.heads import head_names
    from ontogeny.slt.pipeline import llc_rows
    from ontogeny.slt.tables import write_table
    from ontogeny.store.run import tensor_hash

    with user_errors():
        flags = {"steps": parse_csv_ints(steps), "components": parse_csv(components), "n_seqs": n_seqs, "ctx": ctx,
                 "calibration": {} if calibrate else None,
                 **_sgld_flags(lr, n_beta, gamma, chains, draws, burnin, batch_size, seed)}
        cfg = build_config(LLCSection, config, set_, flags, origin="llc")
        series = load_series(series_dir)
        series = series.subset(cfg.pick_steps(series.steps))
        corpus = _corpus(corpus_size, series_dir)
        ids = shared_token_ids(series.tokenizer, corpus, cfg)
        sgld, extra, traces = cfg.sgld, {}, {}
        if cfg.calibration is not None:
            from ontogeny.slt.pipeline import calibrate_and_record

            sgld, extra, cal = calibrate_and_record(series.model(series.steps[-1]), ids, sgld, out,
                                                    {"token_ids": tensor_hash(ids), "step": str(series.steps[-1])},
                                                    cal=cfg.calibration)
            show_table("SGLD calibration", [{k: r[k] for k in ("gamma", "lr", "llc_mean", "mala_acceptance", "passed",
                                                               "reason")} for r in cal.rows])
        rows = []
        with progress() as bar:
            task = bar.add_task("SGLD", total=None)
            for step in series.steps:
                model = series.model(step)
                n_comps = sum(len(head_names(model)) if x == "heads" else 1 for x in cfg.components)
                bar.update(task, total=len(series.steps) * n_comps * sgld.num_steps, description=f"step {step}")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # counted in n_warnings instead
                    rows += llc_rows(model, ids, sgld, cfg.components, step, on_step=lambda _: bar.advance(task),
                                     traces=traces, extra=extra)
        inputs = {"series": str(series_dir), "token_ids": tensor_hash(ids), "corpus": corpus.hash}
        write_table(rows, layout.table_path(out, "llc"), sgld, inputs)
        llc_curve(rows, layout.figures_dir(out))
        if traces:
            trace_plot(traces, layout.figures_dir(out))
        show_table("LLC", [{k: r.get(k) for k in ("step", "component", "n_params", "llc_mean", "llc_std", "llc_half_diff",
                                                  "n_beta", "burnin_draws", "converged", "n_warnings")} for r in rows])
        console.print(f"wrote {layout.table_path(out, 'llc')} and {layout.figures_dir(out)}")


def susceptibility(
    series_dir: Path = typer.Argument(..., help="Checkpoint series folder (step_*/ + tokenizer/) or one model."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: writes tables/susceptibility_*.parquet, figures/."),
    config: Path = config_option("a study's [susceptibility] section (SusceptibilityConfig fields, step)"),
    set_: list[str] = set_option(),
    step: int = typer.Option(None, help="Checkpoint step (alias of `step`; default: the last)."),
    components: str = typer.Option(None, help="Comma-separated restrictions (alias of `components`; "
                                              "default: every head)."),
    base: str = typer.Option(None, help="Corpus kind of the base distribution q (alias of `base_kind`)."),
    probes: str = typer.Option(None, help="Comma-separated probe kinds q' (alias of `probe_kinds`)."),
    centring: str = typer.Option(None, help="'devinterp' or 'covariance' (alias of `centring`)."),
    lr: Lr = None,
    n_beta: NBeta = None,
    gamma: Gamma = None,
    chains: Chains = None,
    draws: Draws = None,
    burnin: Burnin = None,
    batch_size: BatchSize = None,
    ctx: int = typer.Option(None, help="Tokens per sequence (alias of `ctx`)."),
    n_probe_seqs: int = typer.Option(None, help="Fixed sequences per probe and for the base set "
                                                "(alias of `n_probe_seqs` and `n_base_seqs`)."),
    seed: Seed = None,
    corpus_size: str = typer.Option(None, help="Corpus of the token sets: default or tiny (default: the corpus "
                                               "the series was trained on)."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Choose ε and γ first on the full model (sets "
                                   "`calibration = {}`; tables/susceptibility_calibration.parquet, figures/); "
                                   "every head is then sampled at the chosen settings."),
) -> None:
    """Per-head susceptibilities χ for corpus-kind probes, the response matrix, its PCA, and how its PCs
    separate the induction heads the head census names (CensusConfig's default thresholds here; a study
    uses its [census] section)."""
    from ontogeny.config import SusceptibilitySection
    from ontogeny.series.load import load_series
    from ontogeny.slt.heads import head_names
    from ontogeny.slt.pipeline import susceptibility_run

    with user_errors():
        flags = {"step": step, "components": parse_csv(components), "base_kind": base, "probe_kinds": parse_csv(probes),
                 "centring": centring, "ctx": ctx, "n_probe_seqs": n_probe_seqs, "n_base_seqs": n_probe_seqs,
                 "calibration": {} if calibrate else None,
                 **_sgld_flags(lr, n_beta, gamma, chains, draws, burnin, batch_size, seed)}
        section = build_config(SusceptibilitySection, config, set_, flags, origin="susceptibility")
        cfg = section.susceptibility_config()
        series = load_series(series_dir)
        step = series.steps[-1] if section.step is None else section.step
        model = series.model(step)
        comps = cfg.components or head_names(model)
        with progress() as bar, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # shown below from the result's warnings
            task = bar.add_task("SGLD full", total=(len(comps) + 1) * cfg.sgld.num_steps)
            res = susceptibility_run(model, series.tokenizer, cfg, out, step, corpus=_corpus(corpus_size, series_dir),
                                     on_component=lambda c: bar.update(task, description=f"SGLD after {c}"),
                                     on_step=lambda _: bar.advance(task))
        if res["sgld"].get("calibrated"):
            sg = res["sgld"]
            console.print(f"calibrated on the full model: ε {sg['lr']:g}, γ {sg['gamma']:g}, nβ {sg['n_beta']:.4g} "
                          f"({sg['calibration_points_passed']} of {sg['calibration_points']} grid points passed"
                          f"{'' if sg['calibration_plateau'] else '; no plateau in ε'}); every head sampled there")
        r = res["response"]
        show_table(f"response matrix χ at step {step} (probe × head, centring={cfg.centring})",
                   [{"probe": p, **{c: float(r["matrix"][i][j]) for j, c in enumerate(r["components"])}}
                    for i, p in enumerate(r["probes"])])
        show_table("heads", _in_words([{k: h[k] for k in ("component", "induction_score", "induction_head", "llc_mean",
                                                          "pc1", "pc2") if k in h} for h in res["heads"]]))
        show_table("PCA of the token-level response matrix", res["pcs"])
        named = res["induction_heads"]
        console.print(f"induction heads (head census, induction score ≥ {res['induction_threshold']:g}): "
                      + (", ".join(named) if named else "none passed; the separation gap is not measured"))
        show_table("induction-head separation (PROPOSAL)", _in_words(res["separation"]))
        for w in res["warnings"][:5]:
            console.print(f"[yellow]warning:[/yellow] {w}")
        if len(res["warnings"]) > 5:
            console.print(f"[yellow]… {len(res['warnings']) - 5} more SGLD warnings[/yellow]")
        console.print(f"wrote {layout.tables_dir(out)} and {layout.figures_dir(out)}")


def register(app: typer.Typer) -> None:
    app.command("llc")(llc)
    app.command("susceptibility")(susceptibility)

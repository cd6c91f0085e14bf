"""`ontogeny dict train` and `ontogeny dict eval`: sparse dictionaries per (checkpoint, site)."""

from __future__ import annotations

from pathlib import Path

import typer

from ontogeny.commands._common import console, parse_csv, parse_csv_ints, progress, show_table, user_errors

dict_app = typer.Typer(help="Sparse dictionaries (SAEs) per checkpoint and site.", no_args_is_help=True)


@dict_app.command("train")
def train_cmd(
    store_dir: Path = typer.Argument(..., help="Activation store folder (from `ontogeny cache`)."),
    run: Path = typer.Option(None, "--run", help="Run directory; dictionaries go to RUN/dictionaries/ "
                                                 "(default: the store's parent folder)."),
    rule: str = typer.Option("topk", help="Activation rule: relu, topk, batchtopk or jumprelu."),
    d_sae: int = typer.Option(None, help="Number of latents (default: 8 x the site width)."),
    k: int = typer.Option(32, help="topk/batchtopk: active latents per token."),
    l1: float = typer.Option(5.0, help="relu: L1 coefficient (decoder-norm weighted)."),
    l0: float = typer.Option(1.0, help="jumprelu: L0 coefficient."),
    atm: bool = typer.Option(False, help="Train with adaptive temporal masking (a PROPOSAL; see docs)."),
    steps: str = typer.Option(None, help="Comma-separated checkpoint steps (default: all in the store)."),
    sites: str = typer.Option(None, help="Comma-separated sites (default: all in the store)."),
    batch_size: int = typer.Option(1024, help="Tokens per optimisation step."),
    epochs: int = typer.Option(1, help="Passes over each unit's tokens."),
    lr: float = typer.Option(None, help="Adam learning rate (default 2e-4 / sqrt(d_sae / 2^14))."),
    dead_tokens: int = typer.Option(100_000, help="Tokens without firing after which a latent is dead."),
    normalize: bool = typer.Option(True, help="Scale inputs to E||x||^2 = d_in while training (folded after)."),
    plain: bool = typer.Option(False, help="Use the plain dense reference instead of the sparse fast path."),
    seed: int = typer.Option(0, help="Seed of the initialisation and the data order."),
    force: bool = typer.Option(False, help="Retrain units that are already on disk."),
    units_per_pass: int = typer.Option(8, help="Units trained together in one pass (bounds memory)."),
) -> None:
    """Train one dictionary per (checkpoint, site) of an activation store, all in one pass over the data."""
    from ontogeny.dictionaries.atm import ATMConfig
    from ontogeny.dictionaries.store_train import train_store_dictionaries
    from ontogeny.dictionaries.train import TrainConfig
    from ontogeny.store.activations import ActivationStore

    with user_errors():
        store = ActivationStore(store_dir)
        site_list = parse_csv(sites) or store.sites
        width = store.width(site_list[0])
        n_rows = store.token_ids.numel()
        dict_cfg = {"rule": rule, "d_sae": d_sae or 8 * width, "k": k, "l1_coefficient": l1, "l0_coefficient": l0,
                    "fast": not plain, "threshold_start_step": max(1, (n_rows // batch_size) * epochs // 4)}
        tcfg = TrainConfig(lr=lr, dead_tokens=dead_tokens, atm=ATMConfig() if atm else None,
                           normalize="expected_average_only_in" if normalize else "none", seed=seed)
        with progress() as bar:
            task = bar.add_task(f"training {rule}", total=None)

            def tick(i: int, total: int) -> None:
                bar.update(task, completed=i, total=total)

            rows = train_store_dictionaries(store, run or Path(store_dir).resolve().parent, dict_cfg, tcfg,
                                            steps=parse_csv_ints(steps), sites=site_list, batch_size=batch_size,
                                            n_epochs=epochs, seed=seed, force=force,
                                            units_per_pass=units_per_pass, on_step=tick)
        if not rows:
            console.print("every dictionary is already on disk (use --force to retrain)")
            return
        show_table(f"dictionaries ({rule})", [{k_: v for k_, v in r.items() if k_ != "path"} for r in rows])
        console.print(f"wrote {len(rows)} dictionaries under {Path(rows[0]['path']).parents[1]}")


@dict_app.command("eval")
def eval_cmd(
    store_dir: Path = typer.Argument(..., help="Activation store folder the dictionaries were trained on."),
    run: Path = typer.Option(None, "--run", help="Run directory holding dictionaries/ (default: store's parent)."),
    series: Path = typer.Option(None, help="Checkpoint series folder: adds CE/KL recovered and absorption."),
    steps: str = typer.Option(None, help="Comma-separated steps (default: all with dictionaries)."),
    sites: str = typer.Option(None, help="Comma-separated sites (default: all in the store)."),
    n_seqs: int = typer.Option(16, help="Sequences of the store's token ids used for CE/KL recovered."),
    absorption: bool = typer.Option(False, help="Also compute the first-letter absorption score (slow)."),
    min_probe_f1: float = typer.Option(0.6, help="Absorption: letters whose ground-truth probe F1 is lower "
                                                 "are skipped (SAEBench: 0.6)."),
) -> None:
    """Reconstruction, sparsity and latent-health metrics of saved dictionaries (and CE/KL recovered)."""
    from ontogeny.dictionaries.metrics import reconstruction_metrics, splice_metrics
    from ontogeny.dictionaries.saelens_io import load_dictionary
    from ontogeny.dictionaries.store_train import dictionary_dir
    from ontogeny.store.activations import ActivationStore

    with user_errors():
        store = ActivationStore(store_dir)
        run = run or Path(store_dir).resolve().parent
        site_list = parse_csv(sites) or store.sites
        step_list = parse_csv_ints(steps) or store.steps
        units = [(s, si) for s in step_list for si in site_list if (dictionary_dir(run, s, si) / "cfg.json").exists()]
        ser = None
        if series is not None:
            from ontogeny.series.load import load_series
            ser = load_series(series, steps=sorted({s for s, _ in units}))
        rows = []
        with progress() as bar:
            task = bar.add_task("evaluating", total=len(units))
            for step, site in units:
                d = load_dictionary(dictionary_dir(run, step, site))
                row = {"step": step, "site": site, **reconstruction_metrics(d, store.load(step, site))}
                if ser is not None:
                    sp = splice_metrics(ser.model(step), store.token_ids[:n_seqs], site, d)
                    row.update(ce_recovered=sp["ce_recovered"], kl_recovered=sp["kl_recovered"])
                    if absorption:
                        from ontogeny.dictionaries.absorption import AbsorptionConfig, absorption_score
                        from ontogeny.errors import ConfigError
                        try:
                            ab = absorption_score(ser.model(step), ser.tokenizer, site, d,
                                                  AbsorptionConfig(min_letters=1, min_probe_f1=min_probe_f1))
                            row["absorption"], row["abs_letters"] = ab["mean_absorption_fraction"], ab["n_letters"]
                        except ConfigError:  # no letter is linearly readable at this site and step
                            row["absorption"], row["abs_letters"] = float("nan"), 0
                rows.append(row)
                bar.advance(task)
        show_table("dictionary metrics", rows)


def register(app: typer.Typer) -> None:
    app.add_typer(dict_app, name="dict")

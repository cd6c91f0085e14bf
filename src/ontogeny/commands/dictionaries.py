"""`ontogeny dict train` and `ontogeny dict eval`: sparse dictionaries per (checkpoint, site)."""

from __future__ import annotations

from pathlib import Path

import typer

from ontogeny.commands._common import build_config, config_option, console, parse_csv, parse_csv_ints, progress, \
    set_option, show_table, user_errors
from ontogeny.store import layout
from ontogeny.store.layout import CFG_FILE, dictionary_dir

dict_app = typer.Typer(help="Sparse dictionaries (SAEs) per checkpoint and site.", no_args_is_help=True)


@dict_app.command("train")
def train_cmd(
    store_dir: Path = typer.Argument(..., help="Activation store folder (from `ontogeny cache`)."),
    run: Path = typer.Option(None, "--run", help="Run directory; dictionaries go to RUN/dictionaries/ "
                                                 "(default: the store's parent folder)."),
    config: Path = config_option("a study's [dictionaries] section (DictionaryConfig fields, train, ...)"),
    set_: list[str] = set_option(),
    rule: str = typer.Option(None, help="Activation rule, e.g. relu, topk, batchtopk, jumprelu (alias of `rule`)."),
    d_sae: int = typer.Option(None, help="Number of latents (alias of `d_sae`; default: expansion x width)."),
    k: int = typer.Option(None, help="topk/batchtopk: active latents per token (alias of `k`)."),
    l1: float = typer.Option(None, help="relu: L1 coefficient (alias of `l1_coefficient`)."),
    l0: float = typer.Option(None, help="jumprelu: L0 coefficient (alias of `l0_coefficient`)."),
    atm: bool = typer.Option(None, "--atm", help="Train with adaptive temporal masking, a PROPOSAL "
                                                 "(alias of `train.atm = {}`)."),
    steps: str = typer.Option(None, help="Comma-separated checkpoint steps (default: all in the store)."),
    sites: str = typer.Option(None, help="Comma-separated sites (default: all in the store)."),
    batch_size: int = typer.Option(None, help="Tokens per optimisation step (alias of `batch_size`)."),
    epochs: int = typer.Option(None, help="Passes over each unit's tokens (alias of `epochs`)."),
    lr: float = typer.Option(None, help="Adam learning rate (alias of `train.lr`)."),
    dead_tokens: int = typer.Option(None, help="Tokens without firing after which a latent is dead "
                                               "(alias of `train.dead_tokens`)."),
    normalize: bool = typer.Option(None, "--normalize/--no-normalize",
                                   help="Scale inputs to E||x||^2 = d_in while training, folded after "
                                        "(alias of `train.normalize`)."),
    plain: bool = typer.Option(None, "--plain", help="Use the plain dense reference (alias of `fast = false`)."),
    seed: int = typer.Option(None, help="Seed of the initialisation and the data order (alias of `seed`)."),
    force: bool = typer.Option(False, help="Retrain units that are already on disk."),
    units_per_pass: int = typer.Option(8, help="Units trained together in one pass (bounds memory)."),
) -> None:
    """Train one dictionary per (checkpoint, site) of an activation store, all in one pass over the data."""
    from ontogeny.config import DictionariesSection
    from ontogeny.dictionaries.store_train import train_store_dictionaries
    from ontogeny.store.activations import ActivationStore

    with user_errors():
        flags = {"rule": rule, "d_sae": d_sae, "k": k, "l1_coefficient": l1, "l0_coefficient": l0,
                 "train.atm": {} if atm else None, "batch_size": batch_size, "epochs": epochs, "train.lr": lr,
                 "train.dead_tokens": dead_tokens, "fast": False if plain else None, "seed": seed,
                 "train.normalize": None if normalize is None else
                 ("expected_average_only_in" if normalize else "none")}
        cfg = build_config(DictionariesSection, config, set_, flags, origin="dict train")
        store = ActivationStore(store_dir)
        site_list = parse_csv(sites) or store.sites
        step_list = parse_csv_ints(steps) or store.steps
        run = run or Path(store_dir).resolve().parent
        missing = [(st, si) for st in step_list for si in site_list
                   if force or not (dictionary_dir(run, st, si) / CFG_FILE).exists()]
        if not missing:
            console.print("every dictionary is already on disk (use --force to retrain)")
            return
        with progress() as bar:
            task = bar.add_task(f"training {cfg.rule}", total=None)

            def tick(i: int, total: int) -> None:
                bar.update(task, completed=i, total=total)

            rows = train_store_dictionaries(store, run, cfg.dictionary_fields(store.width(site_list[0])), cfg.train,
                                            steps=sorted({st for st, _ in missing}),
                                            sites=[si for si in site_list if any(si == m[1] for m in missing)],
                                            batch_size=cfg.batch_size, n_epochs=cfg.epochs, seed=cfg.seed,
                                            force=force, units_per_pass=units_per_pass, on_step=tick)
        show_table(f"dictionaries ({cfg.rule})", [{k_: v for k_, v in r.items() if k_ != "path"} for r in rows])
        console.print(f"wrote {len(rows)} dictionaries under {layout.dictionaries_dir(run)}")


@dict_app.command("eval")
def eval_cmd(
    store_dir: Path = typer.Argument(..., help="Activation store folder the dictionaries were trained on."),
    run: Path = typer.Option(None, "--run", help="Run directory holding dictionaries/ (default: store's parent)."),
    series: Path = typer.Option(None, help="Checkpoint series folder: adds CE/KL recovered and absorption."),
    steps: str = typer.Option(None, help="Comma-separated steps (default: all with dictionaries)."),
    sites: str = typer.Option(None, help="Comma-separated sites (default: all in the store)."),
    n_seqs: int = typer.Option(16, help="Sequences of the store's token ids used for CE/KL recovered."),
    absorption: bool = typer.Option(False, help="Also compute the first-letter absorption score (slow)."),
    min_probe_f1: float = typer.Option(None, help="Absorption: letters whose ground-truth probe F1 is lower "
                                                  "are skipped (alias of AbsorptionConfig.min_probe_f1)."),
) -> None:
    """Reconstruction, sparsity and latent-health metrics of saved dictionaries (and CE/KL recovered)."""
    from ontogeny.dictionaries.metrics import reconstruction_metrics, splice_metrics
    from ontogeny.dictionaries.saelens_io import load_dictionary
    from ontogeny.store.activations import ActivationStore

    with user_errors():
        store = ActivationStore(store_dir)
        run = run or Path(store_dir).resolve().parent
        site_list = parse_csv(sites) or store.sites
        step_list = parse_csv_ints(steps) or store.steps
        units = [(s, si) for s in step_list for si in site_list if (dictionary_dir(run, s, si) / CFG_FILE).exists()]
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
                            acfg = AbsorptionConfig(min_letters=1, **({} if min_probe_f1 is None else
                                                                       {"min_probe_f1": min_probe_f1}))
                            ab = absorption_score(ser.model(step), ser.tokenizer, site, d, acfg)
                            row["absorption"], row["abs_letters"] = ab["mean_absorption_fraction"], ab["n_letters"]
                        except ConfigError:  # no letter is linearly readable at this site and step
                            row["absorption"], row["abs_letters"] = "not measured (no readable letter)", 0
                rows.append(row)
                bar.advance(task)
        show_table("dictionary metrics", rows)


def register(app: typer.Typer) -> None:
    app.add_typer(dict_app, name="dict")

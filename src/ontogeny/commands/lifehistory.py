"""`ontogeny lifehistory`: feature life histories of a run (matching, lineages, turnover, scaffold, ablation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ontogeny.commands._common import build_config, config_option, console, parse_csv, parse_csv_ints, progress, \
    set_option, show_table, user_errors


def lifehistory(
    run_dir: Annotated[Path, typer.Option(help="run directory with activations/, dictionaries/ and series/")]
    = Path("runs/demo"),
    sites: Annotated[str | None, typer.Option(help="comma-separated sites (default: every site in the store)")]
    = None,
    steps: Annotated[str | None, typer.Option(help="comma-separated steps (default: all with dictionaries)")]
    = None,
    config: Path = config_option("LifeHistoryConfig (tables match, phase, scaffold, ablation, predict)"),
    set_: list[str] = set_option(),
    n_carriers: Annotated[int | None, typer.Option(help="carriers kept across sites (alias of "
                                                        "scaffold.n_carriers)")] = None,
    early_frac: Annotated[float | None, typer.Option(help="early phase = first fraction of training (alias of "
                                                          "phase.early_frac)")] = None,
    n_null: Annotated[int | None, typer.Option(help="token permutations per transition for the null (alias of "
                                                    "match.n_null)")] = None,
    n_controls: Annotated[int | None, typer.Option(help="count-matched control populations (alias of "
                                                        "ablation.n_controls)")] = None,
    n_single: Annotated[int | None, typer.Option(help="non-carriers given single-feature ablation (alias of "
                                                      "ablation.n_single)")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="tokens of the shared set used for matching, 0 = all "
                                                        "(a study's lifehistory.max_tokens)")] = None,
    ablation_seqs: Annotated[int | None, typer.Option(help="sequences of the token set used for ablation "
                                                           "(a study's lifehistory.ablation_seqs)")] = None,
    ablate: Annotated[bool | None, typer.Option("--ablate/--no-ablate", help="run the joint cross-layer ablation "
                                                "on the final checkpoint (a study's lifehistory.ablate)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of nulls, controls and cross-validation (alias of "
                                                  "seed)")] = None,
    force: Annotated[bool, typer.Option(help="recompute even if the summary matches config and inputs")] = False,
) -> None:
    """Feature life histories: matching, lineages, turnover, carrier scaffold, joint ablation, prediction.

    Match dictionaries of adjacent checkpoints, chain lineages, measure turnover, find the carrier scaffold,
    ablate it jointly against count-matched controls and predict carriers from onset firing. Writes
    <run>/tables/*.parquet and <run>/figures/lifehistory*. Definitions marked PROPOSAL in
    docs/lifehistory.md reconstruct a paper whose full text is not public."""
    from ontogeny.config import LifeHistorySection
    from ontogeny.lifehistory.config import LifeHistoryConfig
    from ontogeny.lifehistory.study import run_lifehistory

    with user_errors():
        flags = {"scaffold.n_carriers": n_carriers, "phase.early_frac": early_frac, "match.n_null": n_null,
                 "ablation.n_controls": n_controls, "ablation.n_single": n_single, "seed": seed}
        cfg = build_config(LifeHistoryConfig, config, set_, flags, origin="lifehistory")
        run = LifeHistorySection.model_validate({k: v for k, v in {"max_tokens": max_tokens, "ablate": ablate,
                                                                   "ablation_seqs": ablation_seqs}.items()
                                                 if v is not None})
        with progress() as bar:
            tasks: dict[str, Any] = {}

            def tick(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            max_tokens = run.max_tokens or None
            old = None if force else _up_to_date(run_dir, cfg, parse_csv(sites), parse_csv_ints(steps), max_tokens,
                                                 run.ablate, run.ablation_seqs)
            out = old or run_lifehistory(run_dir, cfg, parse_csv(sites), parse_csv_ints(steps), max_tokens,
                                         run.ablate, run.ablation_seqs, progress=tick)
    show(out)


def _up_to_date(run_dir: Path, cfg, sites, steps, max_tokens, ablate, ablation_seqs) -> dict[str, Any] | None:
    """The summary on disk when it was made from this config and these inputs (the CLI's resume; the
    study's manifest decides for itself), else None."""
    import json

    from ontogeny.lifehistory.study import SUMMARY, available, input_hashes
    from ontogeny.store import layout

    path = layout.tables_dir(run_dir) / SUMMARY
    if not path.exists():
        return None
    sites, steps = available(Path(run_dir), sites, steps)
    want = {"config": cfg.model_dump(mode="json"), "sites": sites, "steps": steps, "max_tokens": max_tokens,
            "ablate": ablate, "ablation_seqs": ablation_seqs}
    old = json.loads(path.read_text())
    prov = old.get("provenance", {})
    if prov.get("config") != want or prov.get("inputs") != input_hashes(Path(run_dir), sites, steps):
        return None
    return {**old, "skipped": True}


def show(out: dict[str, Any]) -> None:
    """Print the headline numbers of a life-history summary (each beside its null) as rich tables."""
    from ontogeny.lifehistory.tables import summary_tables

    if out.get("skipped"):
        console.print("[yellow]up to date[/yellow]: summary matches the config and inputs (use --force to redo)")
    for title, rows in summary_tables(out):
        show_table(title, rows)
    for note in out.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
    abl = out.get("ablation") or {}
    if "single_per_firing_carrier_percentile_mean" in abl:
        console.print(f"single-feature per-firing ΔCE: carriers sit at percentile "
                      f"{abl['single_per_firing_carrier_percentile_mean']:.1f} of non-carriers")
    elif abl.get("error"):
        console.print(f"[yellow]ablation:[/yellow] {abl['error']}")


def register(app: typer.Typer) -> None:
    """Add `ontogeny lifehistory` to the app."""
    app.command("lifehistory")(lifehistory)

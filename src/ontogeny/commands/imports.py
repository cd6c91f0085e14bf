"""`ontogeny import`: a run directory from dictionaries trained elsewhere (SAELens or sparsify layout)."""

from __future__ import annotations

from pathlib import Path

import typer

from ontogeny.commands._common import (build_config, config_option, console, parse_csv, progress, set_option,
                                       show_table, user_errors)


def import_cmd(
    dictionaries: Path = typer.Argument(..., help="Folder of step_XXXXXX/<site>/ dictionaries (cfg.json + "
                                                  "sae_weights.safetensors, or sparsify's sae.safetensors)."),
    run_dir: Path = typer.Option(..., "--run-dir", help="Run directory to create (must not exist or be empty)."),
    series: str = typer.Option(None, help="Checkpoint series to capture the evaluation activations from: a "
                                          "local folder or a Hub repo id (with --revisions)."),
    revisions: str = typer.Option(None, help="Comma-separated Hub revisions of --series (step1000,...)."),
    activations: Path = typer.Option(None, help="Folder of step_XXXXXX/<site>.safetensors (key 'acts') or "
                                                "step_XXXXXX/activations.safetensors, when there is no model."),
    sites: str = typer.Option(None, help="Comma-separated sites to import (default: all found)."),
    device: str = typer.Option("cpu", help="Device of the forward passes when capturing from --series."),
    config: Path = config_option("ImportConfig (ontogeny.imports)"),
    sets: list[str] = set_option(),
) -> None:
    """Bring your own dictionaries: write a run directory that `ontogeny lifehistory` and the report read.

    Checks every input first (d_in against the activations, a dictionary at every step, equal token counts)
    and writes the run directory atomically: on an error nothing is written. Without a model, run
    `ontogeny lifehistory --run-dir RUN --no-ablate`."""
    from ontogeny.imports import ImportConfig, import_run

    with user_errors():
        cfg = build_config(ImportConfig, config, sets, {"sites": parse_csv(sites)}, origin="import")
        with progress() as bar:
            tasks: dict[str, int] = {}

            def tick(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            rec = import_run(dictionaries, run_dir, series=series, activations=activations, cfg=cfg,
                             revisions=parse_csv(revisions), device=device, progress=tick)
    show_table("imported", [{"steps": len(rec["steps"]), "first": rec["steps"][0], "last": rec["steps"][-1],
                             "sites": ", ".join(rec["sites"]), "tokens": rec["n_tokens"], "from": rec["mode"]}])
    hint = "" if rec["mode"] == "series" else " --no-ablate"
    console.print(f"wrote {run_dir}; next: ontogeny lifehistory --run-dir {run_dir}{hint}")


def register(app: typer.Typer) -> None:
    """Add `ontogeny import` to the app."""
    app.command("import")(import_cmd)

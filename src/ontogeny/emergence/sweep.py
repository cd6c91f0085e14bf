"""Seed sweeps: a union of grids over seeds x S x s x heads x head dim x architecture x bias, each run a
resumable unit of work (`runs/<run_id>.json`), summarised into Parquet tables under `tables/`.

Emergence time of a run = the first logged step where the output loss falls below
plateau - f (plateau - floor_out), for each f in `fractions` (several thresholds, so conclusions can be
checked against the choice). Runs that never cross are censored (null) and counted as unsolved.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ontogeny.compute import Backend, map_units
from ontogeny.capabilities.detect import abruptness, biggest_jump, first_crossing, thresholds_between
from ontogeny.emergence.models import ModelConfig
from ontogeny.store.tables import write_table
from ontogeny.emergence.tasks import CAConfig, InductionConfig, LinearMapConfig, make_task
from ontogeny.emergence.train import RunSpec, TrainConfig, train_run
from ontogeny.errors import ConfigError, StoreError
from ontogeny.store.run import file_hash, provenance, write_json


class Grid(BaseModel):
    """One product grid. S is the state size (linear map, CA) or the longest period (induction, whose
    context is 3S and shortest period S//2); s is used by the linear map only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "grid"
    task: Literal["linear_map", "ca", "induction"] = "linear_map"
    seeds: list[int] = [0, 1, 2]
    S: list[int] = [8]
    s: list[int] = [2]
    n_heads: list[int] = [4]
    d_head: list[int] = [8]
    arch: list[Literal["transformer", "mixer"]] = ["transformer"]
    bias: list[float] = [0.0]
    task_seed: list[int] = [0]


def default_grids() -> list[Grid]:
    """The default sweep (48 tiny runs): context length and sparsity for both architectures, heads vs
    head dim at two widths, and the attention-bias intervention."""
    return [
        Grid(name="context", S=[4, 6, 8, 10], s=[2], arch=["transformer", "mixer"]),
        Grid(name="sparsity", S=[8], s=[1, 3], arch=["transformer", "mixer"]),
        Grid(name="width", S=[8], s=[2], n_heads=[1, 4], d_head=[2, 8]),
        Grid(name="bias", S=[10], s=[2], bias=[3.0]),
    ]


class SweepConfig(BaseModel):
    """A whole sweep: the grids, the shared model and training settings, and the task bases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grids: list[Grid] = Field(default_factory=default_grids)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig(steps=1000, log_every=20)
    ca: CAConfig = CAConfig()
    induction: InductionConfig = InductionConfig()
    fractions: list[float] = Field([0.2, 0.5, 0.9], description="emergence thresholds, plateau->floor")


def _task(cfg: SweepConfig, g: Grid, S: int, s: int, task_seed: int):
    if g.task == "linear_map":
        return LinearMapConfig(S=S, s=s, task_seed=task_seed)
    if g.task == "ca":
        return cfg.ca.model_copy(update={"S": S, "task_seed": task_seed})
    return cfg.induction.model_copy(
        update={"p_max": S, "p_min": max(2, S // 2), "T": 3 * S, "task_seed": task_seed}
    )


def expand(cfg: SweepConfig) -> list[tuple[str, RunSpec]]:
    """All (grid name, run spec) pairs, deduplicated by run id (first grid wins); mixers ignore heads."""
    out: dict[str, tuple[str, RunSpec]] = {}
    for g in cfg.grids:
        for seed, S, s, H, dh, arch, c, ts in itertools.product(
            g.seeds, g.S, g.s, g.n_heads, g.d_head, g.arch, g.bias, g.task_seed
        ):
            if g.task == "linear_map" and s > S:
                raise ConfigError(f"grid {g.name!r}: s={s} > S={S}")
            if g.task != "linear_map":
                s = 0
            if arch == "mixer":
                H, dh, c = cfg.model.n_heads, cfg.model.d_head, 0.0
            model = cfg.model.model_copy(
                update={"arch": arch, "n_heads": H, "d_head": dh, "bias_strength": c}
            )
            spec = RunSpec(task=_task(cfg, g, S, max(s, 1), ts), model=model, train=cfg.train, seed=seed)
            out.setdefault(spec.run_id, (g.name, spec))
    return list(out.values())


def run_unit(item: tuple[dict[str, Any], str, bool]) -> dict[str, Any]:
    """Train one run and store it as `runs/<run_id>.json`; with `resume`, return the stored result of a run
    that is already there (the standalone sweep's resume; inside a study the manifest decides instead)."""
    spec_json, out_dir, resume = item
    spec = RunSpec.model_validate(spec_json)
    path = Path(out_dir) / "runs" / f"{spec.run_id}.json"
    if resume and path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass  # unreadable (should not happen with atomic writes): recompute
    result = train_run(spec)
    result["provenance"] = provenance(spec.model_dump(mode="json"), {})
    write_json(path, result)
    return result


def summarize(result: dict[str, Any], fractions: list[float], grid: str = "") -> dict[str, Any]:
    """One row of the runs table: configuration, emergence times at each threshold, final scores."""
    spec = result["spec"]
    task, model = spec["task"], spec["model"]
    c = result["curves"]
    steps = c["step"]
    row: dict[str, Any] = {
        "run_id": result["run_id"],
        "grid": grid,
        "task": task["kind"],
        "S": task.get("S", task.get("p_max")),
        "s": task.get("s", 0),
        "arch": model["arch"],
        "n_heads": model["n_heads"],
        "d_head": model["d_head"],
        "bias": model["bias_strength"],
        "seed": spec["seed"],
        "task_seed": task["task_seed"],
        "seq_len": result["seq_len"],
        "n_params": result["n_params"],
        "budget": spec["train"]["steps"],
        "stopped_at": steps[-1],
        "seconds": result["seconds"],
        "plateau": result["plateau"],
        "floor": result["floor"],
        "floor_out": result["floor_out"],
        "final_loss": c["loss"][-1],
        "final_loss_out": c["loss_out"][-1],
        "final_acc_out": c["acc_out"][-1],
        "final_parent_mass": c["parent_mass"][-1],
        "final_parent_mass_row": c["parent_mass_row"][-1],
        "final_iou": c["iou"][-1],
    }
    for f, thr in zip(fractions, thresholds_between(result["plateau"], result["floor_out"], fractions)):
        row[f"t_{round(100 * f):02d}"] = first_crossing(steps, c["loss_out"], thr)
    row["solved"] = row[f"t_{round(100 * max(fractions)):02d}"] is not None
    k = biggest_jump(c["loss_out"])
    if k is not None and 0 < k < len(steps):
        ab = abruptness(steps, c["loss_out"], k)
        row.update(jump_step=ab["step"], jump_delta=ab["delta"], jump_width_ratio=ab["width_ratio"])
    else:
        row.update(jump_step=None, jump_delta=None, jump_width_ratio=None)
    return row


def curve_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-format curve rows: one per (run, logged step)."""
    c = result["curves"]
    keys = ("loss", "loss_out", "acc_out", "parent_mass", "parent_mass_row", "iou", "entropy", "train_loss")
    return [
        {"run_id": result["run_id"], "step": st, **{k: c[k][i] for k in keys}}
        for i, st in enumerate(c["step"])
    ]


def row_emergence(result: dict[str, Any], level: float = 0.5) -> list[dict[str, Any]]:
    """Per-output-position emergence (seed 004 Fig. 3): first step with that position's loss below
    level * plateau, for the positions that are task outputs in every sequence (None: never)."""
    import torch

    c = result["curves"]
    task = make_task(RunSpec.model_validate(result["spec"]).task)
    always_out = task.sample(64, torch.Generator().manual_seed(0)).out_mask_BT1.all(0)
    out = []
    for p in always_out.nonzero().flatten().tolist():
        series = [pl[p] for pl in c["pos_loss"]]
        out.append(
            {
                "run_id": result["run_id"],
                "pos": p,
                "t_row": first_crossing(c["step"], series, level * result["plateau"]),
            }
        )
    return out


def run_sweep(
    cfg: SweepConfig,
    out_dir: str | Path,
    backend: Backend = "process",
    address: str | None = None,
    on_done: Callable[[int, dict[str, Any]], None] | None = None,
    resume: bool = False,
) -> dict[str, Path]:
    """Run every unit of the sweep and write the tables; returns {table name: path}. With `resume`, runs
    already stored under `runs/` are reused (what `ontogeny emergence sweep` does after an interruption)."""
    out_dir = Path(out_dir)
    units = expand(cfg)
    if not units:
        raise ConfigError("sweep: the grids expand to no runs")
    write_json(
        out_dir / "sweep.json",
        {
            "config": cfg,
            "run_ids": [s.run_id for _, s in units],
            "provenance": provenance(cfg.model_dump(mode="json"), {}),
        },
    )
    items = [(spec.model_dump(mode="json"), str(out_dir), resume) for _, spec in units]
    results = map_units(run_unit, items, backend=backend, address=address, on_done=on_done)
    return write_tables(cfg, out_dir, [(g, r) for (g, _), r in zip(units, results)])


def write_tables(
    cfg: SweepConfig, out_dir: Path, results: list[tuple[str, dict[str, Any]]]
) -> dict[str, Path]:
    """Summaries, curves and per-position emergence of all runs, as Parquet under `tables/`."""
    runs = out_dir / "runs"
    prov = provenance(
        cfg.model_dump(mode="json"),
        {
            f"runs/{r['run_id']}.json": file_hash(runs / f"{r['run_id']}.json")
            for _, r in results
            if (runs / f"{r['run_id']}.json").exists()
        },
    )
    tables = out_dir / "tables"
    return {
        "runs": write_table(
            tables / "emergence_runs.parquet", [summarize(r, cfg.fractions, g) for g, r in results], prov
        ),
        "curves": write_table(
            tables / "emergence_curves.parquet", [row for _, r in results for row in curve_rows(r)], prov
        ),
        "rows": write_table(
            tables / "emergence_rows.parquet", [row for _, r in results for row in row_emergence(r)], prov
        ),
    }


def load_sweep_config(out_dir: str | Path) -> SweepConfig:
    """The config a sweep folder was run with (from `sweep.json`)."""
    p = Path(out_dir) / "sweep.json"
    if not p.exists():
        raise StoreError(f"{p} does not exist: not a sweep folder")
    return SweepConfig.model_validate(json.loads(p.read_text())["config"])

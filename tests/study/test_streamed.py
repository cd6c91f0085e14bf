"""The study with streamed dictionary training (`[dictionaries.stream]`, warm start across checkpoints):
only the dictionaries and what reads them are recomputed, and their held-out quality table is written."""

from __future__ import annotations

import shutil
from pathlib import Path

from ontogeny.store.tables import read_table
from ontogeny.study.demo import tiny_config
from ontogeny.study.manifest import Manifest
from ontogeny.study.pipeline import run_study


def test_streamed_warm_dictionaries_in_the_study(tiny_study, tmp_path):
    run = Path(shutil.copytree(tiny_study[0], tmp_path / "run"))
    data = tiny_config().model_dump(mode="json")
    data["dictionaries"]["stream"] = {"training_tokens": 1024, "batch_size": 64, "buffer_tokens": 256,
                                      "forward_seqs": 4, "init": "warm"}
    cfg = type(tiny_config()).model_validate(data)
    out = run_study(cfg, run)
    steps = out["steps"]
    assert {f"dictionaries/step_{s:06d}" for s in steps} | {"dictionaries", "lifehistory", "report"} <= set(out["ran"])
    assert not any(n.startswith(("series", "activations", "llc", "susceptibility", "capabilities"))
                   for n in out["ran"])
    rows = read_table(run / "tables" / "dictionaries.parquet")
    assert [r["step"] for r in rows] == steps and all(r["training_tokens"] >= 1024 for r in rows)
    assert [r["init"] for r in rows] == ["shared"] + ["warm"] * (len(steps) - 1)  # chained from step 2 on
    assert all(r["eval_tokens"] == 16 * 32 and r["fvu"] >= 0 for r in rows)  # measured on the held-out store
    m = Manifest(run).entry(f"dictionaries/step_{steps[1]:06d}")
    assert m is not None and any(a.endswith("cfg.json") for a in m["artifacts"])


def test_census_unit_names_heads_per_checkpoint(tiny_study, tmp_path):
    """The optional `[census]` unit on the tiny series: a row per (checkpoint, head, probe), written as tables."""
    from ontogeny.study import stages

    run = Path(shutil.copytree(tiny_study[0], tmp_path / "run"))
    data = tiny_config().model_dump(mode="json")
    data["census"] = {"enabled": True, "n_seqs": 4, "periods": [5], "offsets": [0], "ablate": False}
    out = stages.census_unit(str(run), data, [0, 40])
    rows = read_table(run / "tables" / "heads.parquet")
    assert out["rows"] == len(rows) > 0 and {r["step"] for r in rows} == {0, 40}

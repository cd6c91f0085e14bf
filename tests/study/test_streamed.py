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


def test_pick_steps_on_a_geometric_series_takes_every_other_step():
    """On steps 2^i - 1 (evenly spaced in log(1 + step)), 11 of 21 log-spaced checkpoints are exactly the
    even i: the analytic answer; None keeps every step; n >= len keeps every step."""
    from ontogeny.config import DictionariesSection

    steps = [2 ** i - 1 for i in range(21)]
    assert DictionariesSection(checkpoints=11).pick_steps(steps) == steps[::2]
    assert DictionariesSection().pick_steps(steps) == steps
    assert DictionariesSection(checkpoints=40).pick_steps(steps) == steps
    demo_like = [0, 1, 2, 4, 8, 16, 32, 64, *range(100, 1700, 100)]
    picked = DictionariesSection(checkpoints=12).pick_steps(demo_like)
    assert len(picked) == 12 and picked[0] == 0 and picked[-1] == 1600 and set(picked) <= set(demo_like)


def test_streamed_dictionaries_at_a_log_spaced_subset(tiny_study, tmp_path):
    """`dictionaries.checkpoints`: dictionaries train at the subset only, and every stage that reads them
    (life history, feature pages, report) runs on that subset — not on the full run's older dictionaries
    still on disk at the other steps."""
    from ontogeny.config import DictionariesSection

    run = Path(shutil.copytree(tiny_study[0], tmp_path / "run"))
    data = tiny_config().model_dump(mode="json")
    data["dictionaries"]["stream"] = {"training_tokens": 1024, "batch_size": 64, "buffer_tokens": 256,
                                      "forward_seqs": 4}
    data["dictionaries"]["checkpoints"] = 3
    cfg = type(tiny_config()).model_validate(data)
    out = run_study(cfg, run)
    subset = DictionariesSection(checkpoints=3).pick_steps(out["steps"])
    assert len(subset) == 3 and len(out["steps"]) > 3
    ran = set(out["ran"])
    assert {n for n in ran if n.startswith("dictionaries/")} == {f"dictionaries/step_{s:06d}" for s in subset}
    assert {"dictionaries", "lifehistory", "features", "report"} <= ran
    rows = read_table(run / "tables" / "dictionaries.parquet")
    assert [r["step"] for r in rows] == subset
    assert all(r["training_tokens"] == 1024 and r["init"] == "shared" for r in rows)
    assert all(r[c] is not None for r in rows for c in ("fvu", "l0", "dead_frac", "ce_clean", "ce_zero"))
    # CE recovered is a number exactly where zero-ablating the site moves the loss by >= 0.05 nats
    assert all((r["ce_recovered"] is None) == (abs(r["ce_zero"] - r["ce_clean"]) < 0.05) for r in rows)
    feats = read_table(run / "tables" / "features.parquet")
    assert sorted({int(r["step"]) for r in feats}) == subset  # the life history saw the subset only
    page = (run / "report" / "index.html").read_text()
    assert "dictionaries_quality" in page
    summary = Manifest(run).entry("dictionaries")["result"]
    assert summary["dictionaries"] == 3 and summary["training_tokens_min"] == 1024

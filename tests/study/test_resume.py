"""Verified resume on the real tiny study: a finished unit whose files changed behind its back is noticed,
named and recomputed with its dependents only, and the recomputed outputs equal the original ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ontogeny.store.run import file_hash
from ontogeny.study.demo import tiny_config
from ontogeny.study.manifest import Manifest
from ontogeny.study.pipeline import run_study

SITE = "blocks.0.hook_resid_post"


def test_truncated_and_nan_shards_are_recomputed_with_their_dependents(tiny_study, tmp_path):
    ref = tiny_study[0]
    run = Path(shutil.copytree(ref, tmp_path / "run"))
    shard0 = run / "activations" / "step_000000" / SITE / "shard_0000.safetensors"
    shard0.write_bytes(shard0.read_bytes()[:100])  # truncated
    shard2 = run / "activations" / "step_000002" / SITE / "shard_0000.safetensors"
    acts = load_file(shard2)["acts"]
    acts[3, 1] = float("nan")  # same size, one value poisoned
    save_file({"acts": acts}, str(shard2), metadata={"step": "2", "site": SITE, "tokens_hash": _tokens_hash(ref)})
    out = run_study(tiny_config(), run)
    assert set(out["stale"]) == {"activations/step_000000", "activations/step_000002"}
    assert any("changed size" in p for p in out["stale"]["activations/step_000000"])
    ran = set(out["ran"])
    assert {"activations/step_000000", "activations/step_000002", "dictionaries/step_000000",
            "dictionaries/step_000002", "lifehistory", "report"} <= ran
    assert not any(n.startswith(("series", "llc", "susceptibility", "capabilities", "activations/step_000001",
                                 "dictionaries/step_000001")) for n in ran)
    for step in (0, 2):  # recomputed from the same inputs: the same values as before the damage
        rel = Path("activations") / f"step_{step:06d}" / SITE / "shard_0000.safetensors"
        # (not the same bytes: safetensors writes its metadata map in arbitrary order)
        assert torch.equal(load_file(run / rel)["acts"], load_file(ref / rel)["acts"])
        rel = Path("dictionaries") / f"step_{step:06d}" / SITE / "sae_weights.safetensors"
        assert file_hash(run / rel) == file_hash(ref / rel)
    again = run_study(tiny_config(), run)
    assert again["ran"] == [] and not again["stale"]


def test_a_deleted_checkpoint_folder_is_named(tiny_study, tmp_path):
    run = Path(shutil.copytree(tiny_study[0], tmp_path / "run"))
    shutil.rmtree(run / "series" / "step_000004")
    problems = Manifest(run).problems("series")
    assert problems and all(p.startswith("series/step_000004/") and p.endswith("is missing") for p in problems)
    assert Manifest(run).problems("activations/step_000004") == []


def _tokens_hash(run: Path) -> str:
    import json

    return json.loads((run / "activations" / "store.json").read_text())["tokens_hash"]


def test_manifest_records_each_units_files(tiny_study):
    m = Manifest(tiny_study[0])
    arts = m.entry("dictionaries/step_000040")["artifacts"]
    assert sorted(arts) == [f"dictionaries/step_000040/{SITE}/cfg.json",
                            f"dictionaries/step_000040/{SITE}/sae_weights.safetensors"]
    assert all(a["size"] > 0 and len(a["sha256"]) == 64 for a in arts.values())
    assert "activations/store.json" not in m.entry("activations/step_000000")["artifacts"]

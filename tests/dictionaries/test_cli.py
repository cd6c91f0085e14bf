"""`ontogeny dict train` / `dict eval` on a small activation store: layout, resumption, SAELens files."""

from __future__ import annotations

import json

import torch
import typer
from typer.testing import CliRunner

from ontogeny.commands import dictionaries
from ontogeny.dictionaries.saelens_io import load_dictionary
from ontogeny.dictionaries.synthetic import PlantedFeatures
from ontogeny.store.activations import ActivationStore, _write_unit, write_store_meta

torch.set_num_threads(1)


def _planted_store(root):
    """A store with two steps x one site whose activations are planted sparse features."""
    tokens = torch.arange(64 * 32).view(64, 32)
    site = "blocks.0.hook_resid_post"
    write_store_meta(root, tokens, [site], {site: 16}, [0, 8])
    store = ActivationStore(root)
    pf = PlantedFeatures(d=16, n_features=24, n_active=2, seed=4)
    for step in (0, 8):
        acts, _ = pf.sample(tokens.numel(), torch.Generator().manual_seed(step))
        _write_unit(store, step, site, acts, 1 << 20)
    return store, pf


def test_dict_train_writes_one_saelens_dictionary_per_unit_and_resumes(tmp_path):
    store, _ = _planted_store(tmp_path / "run" / "activations")
    app = typer.Typer()
    dictionaries.register(app)
    runner = CliRunner()
    args = ["dict", "train", str(store.root), "--rule", "topk", "--k", "2", "--d-sae", "48", "--batch-size", "128",
            "--epochs", "6", "--lr", "0.01"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for step in (0, 8):
        folder = tmp_path / "run" / "dictionaries" / f"step_{step:06d}" / "blocks.0.hook_resid_post"
        cfg = json.loads((folder / "cfg.json").read_text())
        assert cfg["architecture"] == "topk" and cfg["metadata"]["checkpoint_step"] == step
        d = load_dictionary(folder)
        x = store.load(step, "blocks.0.hook_resid_post")[:500]
        with torch.no_grad():
            fvu = float((x - d(x)).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        assert fvu < 0.3  # trained on raw-scale inputs after folding the normalisation
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already on disk" in again.output
    ev = runner.invoke(app, ["dict", "eval", str(store.root)])
    assert ev.exit_code == 0 and "dictionary metrics" in ev.output
    grouped = runner.invoke(app, [*args, "--force", "--units-per-pass", "1", "--run", str(tmp_path / "run2")])
    assert grouped.exit_code == 0, grouped.output
    for step in (0, 8):  # one unit per pass gives the same weights as both units in one pass
        a = load_dictionary(tmp_path / "run" / "dictionaries" / f"step_{step:06d}" / "blocks.0.hook_resid_post")
        b = load_dictionary(tmp_path / "run2" / "dictionaries" / f"step_{step:06d}" / "blocks.0.hook_resid_post")
        assert torch.equal(a.W_dec_FD, b.W_dec_FD) and torch.equal(a.b_enc_F, b.b_enc_F)
    bad = runner.invoke(app, ["dict", "train", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2

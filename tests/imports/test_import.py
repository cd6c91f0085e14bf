"""`ontogeny import`: laid-out folders of foreign dictionaries become a run the life history reads; bad
input is refused by name with nothing written; SAELens's own save function (peer venv) round-trips."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.saelens_io import load_dictionary, save_dictionary
from ontogeny.errors import ConfigError, StoreError
from ontogeny.imports import ImportConfig, import_run, scan_dictionaries
from ontogeny.store.activations import ActivationStore

SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
STEPS = [0, 1, 4]
PEER_PY = Path(__file__).resolve().parents[2] / ".venv-peers" / "bin" / "python"


def lay_out(root: Path, d_in: int = 32, n_tokens: int = 96, steps=STEPS, sites=SITES, combined: bool = False):
    """DICTS/step_XXXXXX/<site>/ (our SAELens writer) and ACTS/step_XXXXXX/<site>.safetensors."""
    gen = torch.Generator().manual_seed(0)
    for i, step in enumerate(steps):
        acts = {}
        for j, site in enumerate(sites):
            d = Dictionary(DictionaryConfig(rule="topk", d_in=d_in, d_sae=48, k=4), seed=10 * i + j)
            save_dictionary(d, root / "dicts" / f"step_{step:06d}" / site)
            acts[site] = torch.randn(n_tokens, d_in, generator=gen)
        folder = root / "acts" / f"step_{step:06d}"
        folder.mkdir(parents=True)
        if combined:
            save_file(acts, str(folder / "activations.safetensors"))
        else:
            for site, a in acts.items():
                save_file({"acts": a}, str(folder / f"{site}.safetensors"))
    return root / "dicts", root / "acts"


@pytest.mark.parametrize("combined", [False, True])
def test_import_from_activation_files_then_lifehistory(tmp_path, combined):
    from ontogeny.lifehistory.config import LifeHistoryConfig
    from ontogeny.lifehistory.study import run_lifehistory

    dicts, acts = lay_out(tmp_path, combined=combined)
    run = tmp_path / "run"
    rec = import_run(dicts, run, activations=acts)
    assert rec["steps"] == STEPS and rec["sites"] == SITES and rec["mode"] == "activations"
    store = ActivationStore(run / "activations")
    assert store.steps == STEPS and store.token_ids.numel() == 96
    from safetensors.torch import load_file
    src = load_file(str(acts / "step_000004" / ("activations.safetensors" if combined else f"{SITES[1]}.safetensors")))
    assert torch.equal(store.load(4, SITES[1]), src[SITES[1] if combined else "acts"])
    d_src = load_dictionary(dicts / "step_000001" / SITES[0])
    d_run = load_dictionary(run / "dictionaries" / "step_000001" / SITES[0])
    x = torch.randn(5, 32)
    assert torch.allclose(d_src(x), d_run(x))
    assert d_run.metadata["checkpoint_step"] == 1 and d_run.metadata["site"] == SITES[0]
    if not combined:  # the life history reads the imported run (once: it is the slow part)
        cfg = LifeHistoryConfig.model_validate({"match": {"n_null": 1}})
        out = run_lifehistory(run, cfg, ablate=False, max_tokens=None)
        assert (run / "tables" / "lifehistory_summary.json").exists() and out["n_lineages"] >= 0


def _refused(tmp_path, dicts, acts, match):
    run = tmp_path / "run"
    with pytest.raises(StoreError, match=match):
        import_run(dicts, run, activations=acts)
    assert not run.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]  # no temporaries left


def test_mismatched_d_in_refused(tmp_path):
    dicts, acts = lay_out(tmp_path)
    save_file({"acts": torch.randn(96, 16)}, str(acts / "step_000001" / f"{SITES[0]}.safetensors"))
    _refused(tmp_path, dicts, acts, "d_in=16 but the dictionary")


def test_step_without_dictionary_refused(tmp_path):
    dicts, acts = lay_out(tmp_path)
    (acts / "step_000009").mkdir()
    _refused(tmp_path, dicts, acts, r"step\(s\) \[9\] have activations .* but no dictionary")


def test_empty_step_folder_and_missing_site_refused(tmp_path):
    dicts, acts = lay_out(tmp_path)
    (dicts / "step_000009").mkdir()
    _refused(tmp_path, dicts, acts, "holds no dictionary")
    (dicts / "step_000009").rmdir()
    import shutil
    shutil.rmtree(dicts / "step_000004" / SITES[1])
    _refused(tmp_path, dicts, acts, r"step 4 has no dictionary for site")


def test_different_token_counts_refused(tmp_path):
    dicts, acts = lay_out(tmp_path)
    save_file({"acts": torch.randn(80, 32)}, str(acts / "step_000004" / f"{SITES[0]}.safetensors"))
    _refused(tmp_path, dicts, acts, "different token counts")


def test_needs_exactly_one_source_and_a_new_folder(tmp_path):
    dicts, acts = lay_out(tmp_path)
    with pytest.raises(ConfigError, match="exactly one"):
        import_run(dicts, tmp_path / "run")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(StoreError, match="not empty"):
        import_run(dicts, tmp_path / "full", activations=acts)
    assert (tmp_path / "full" / "x").read_text() == "keep"


def test_sparsify_folder_names_map_to_sites(tmp_path):
    root = tmp_path / "dicts"
    for step in (0, 4):
        (root / f"step_{step:06d}" / "layers.1").mkdir(parents=True)
        (root / f"step_{step:06d}" / "layers.1" / "cfg.json").write_text(json.dumps({"d_in": 8, "k": 2}))
    assert list(scan_dictionaries(root)[0]) == ["blocks.1.hook_resid_post"]


def test_import_from_series_captures_the_shared_token_set(tmp_path, tiny_series_dir):
    import shutil

    from ontogeny.series.corpus import CorpusConfig
    # a series that records its (tiny) corpus in series.json, so the shared token set is quick to build
    series = tmp_path / "series"
    shutil.copytree(tiny_series_dir, series)
    (series / "series.json").write_text(json.dumps({"config": {"seed": 0, "corpus": CorpusConfig.tiny().model_dump()}}))
    tiny_series_dir = series
    dicts, _ = lay_out(tmp_path, steps=[0, 4], sites=SITES[:1])
    run = tmp_path / "run"
    cfg = ImportConfig.model_validate({"tokens": {"n_seqs": 4, "ctx": 16}})
    rec = import_run(dicts, run, series=tiny_series_dir, cfg=cfg)
    assert rec["mode"] == "series" and rec["n_tokens"] == 64
    store = ActivationStore(run / "activations")
    from ontogeny.series.capture import capture_all
    from ontogeny.series.load import load_series
    ser = load_series(run / "series")  # the pointer resolves to the series, for the ablation
    assert {0, 4} <= set(ser.steps)
    ref = capture_all(ser.model(4), store.token_ids, SITES[:1])[SITES[0]]
    assert torch.allclose(store.load(4, SITES[0]), ref)
    # a series whose width differs from the dictionaries' d_in is refused
    dicts2, _ = lay_out(tmp_path / "b", d_in=16, steps=[0, 4], sites=SITES[:1])
    with pytest.raises(StoreError, match="width 32 but the dictionaries have d_in=16"):
        import_run(dicts2, tmp_path / "run2", series=tiny_series_dir, cfg=cfg)
    assert not (tmp_path / "run2").exists()


SAELENS_SCRIPT = r"""
import sys, torch
from pathlib import Path
from safetensors.torch import save_file
from sae_lens import TopKSAE, TopKSAEConfig
root = Path(sys.argv[1])
torch.manual_seed(0)
for i, step in enumerate((0, 8)):
    sae = TopKSAE(TopKSAEConfig(d_in=32, d_sae=48, k=4, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        if i == 1:  # decoder rows of unit norm: the rescale must be the identity
            sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))
    sae.save_model(root / "dicts" / f"step_{step:06d}" / "blocks.0.hook_resid_post")
    x = torch.randn(64, 32)
    (root / "acts" / f"step_{step:06d}").mkdir(parents=True)
    save_file({"acts": x}, str(root / "acts" / f"step_{step:06d}" / "blocks.0.hook_resid_post.safetensors"))
    with torch.no_grad():
        save_file({"recon": sae(x).contiguous(), "codes": sae.encode(x).contiguous()},
                  str(root / f"expected_{step}.safetensors"))
"""


@pytest.mark.slow
@pytest.mark.skipif(not PEER_PY.exists(), reason="no peer venv with sae-lens (.venv-peers; make bench-peers)")
def test_import_folders_written_by_saelens_itself(tmp_path, request):
    """Importing SAELens's own saved folders reproduces SAELens's own outputs. Importing sae-lens takes
    minutes on a loaded 2-core machine, so its folders are kept in pytest's cache (keyed by the script)."""
    import hashlib

    from safetensors.torch import load_file

    key = hashlib.sha256(SAELENS_SCRIPT.encode()).hexdigest()[:12]
    made = Path(request.config.cache.mkdir(f"saelens_import_{key}"))
    if not (made / "expected_8.safetensors").exists():
        for p in made.iterdir():
            __import__("shutil").rmtree(p) if p.is_dir() else p.unlink()
        probe = subprocess.run([str(PEER_PY), "-c", "import sae_lens"], capture_output=True, timeout=900)
        if probe.returncode != 0:
            pytest.skip("the peer venv has no sae-lens")
        subprocess.run([str(PEER_PY), "-c", SAELENS_SCRIPT, str(made)], check=True, timeout=900,
                       capture_output=True)
    __import__("shutil").copytree(made, tmp_path, dirs_exist_ok=True)
    run = tmp_path / "run"
    import_run(tmp_path / "dicts", run, activations=tmp_path / "acts")
    store = ActivationStore(run / "activations")
    for step in (0, 8):
        d = load_dictionary(run / "dictionaries" / f"step_{step:06d}" / "blocks.0.hook_resid_post")
        exp = load_file(str(tmp_path / f"expected_{step}.safetensors"))
        x = store.load(step, "blocks.0.hook_resid_post")
        assert torch.allclose(d(x), exp["recon"], atol=1e-4), step
        assert torch.equal(d.encode(x) != 0, exp["codes"] != 0), step


def test_cli_imports_and_refuses_bad_input_by_name(tmp_path):
    import typer
    from typer.testing import CliRunner

    from ontogeny.commands.imports import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer's sub-command layout
    dicts, acts = lay_out(tmp_path, steps=[0, 4], sites=SITES[:1])
    ok = CliRunner().invoke(app, ["import", str(dicts), "--run-dir", str(tmp_path / "run"), "--activations", str(acts)])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "run" / "import.json").exists()
    save_file({"acts": torch.randn(96, 8)}, str(acts / "step_000004" / f"{SITES[0]}.safetensors"))
    bad = CliRunner().invoke(app, ["import", str(dicts), "--run-dir", str(tmp_path / "run2"), "--activations",
                                   str(acts)])
    assert bad.exit_code == 2 and "d_in=8" in bad.output
    assert not (tmp_path / "run2").exists()

import shutil

import pytest
import torch

from ontogeny.testing import make_tiny_series
from ontogeny.errors import SeriesError
from ontogeny.series.load import load_series, parse_step, series_info


def test_local_series_lists_steps_and_loads_models(tiny_series_dir):
    s = load_series(tiny_series_dir)
    assert s.steps == [0, 1, 4]
    assert (s.n_layers, s.d_model, s.n_heads) == (2, 32, 4)
    m0, m4 = s.model(0), s.model(4)
    assert not torch.equal(m0.gpt_neox.embed_in.weight, m4.gpt_neox.embed_in.weight)
    assert series_info(s)["vocab_size"] == 300
    assert load_series(tiny_series_dir, steps=[1]).steps == [1]


def test_parse_step():
    assert parse_step("step_000128") == 128
    assert parse_step("step1000") == 1000
    with pytest.raises(SeriesError, match="main"):
        parse_step("main")


def test_missing_folder_and_missing_step(tmp_path, tiny_series_dir):
    with pytest.raises(SeriesError, match="does not exist"):
        load_series(tmp_path / "nope")
    with pytest.raises(SeriesError, match=r"\[7\]"):
        load_series(tiny_series_dir, steps=[0, 7])


def test_mismatched_architecture_is_named(tmp_path, tiny_series_dir):
    root = tmp_path / "s"
    shutil.copytree(tiny_series_dir, root)
    make_tiny_series(tmp_path / "other", steps=(9,), num_hidden_layers=3)
    shutil.copytree(tmp_path / "other" / "step_000009", root / "step_000009")
    with pytest.raises(SeriesError, match="step_000009.*num_hidden_layers"):
        load_series(root)


def test_corrupt_weights_are_named(tmp_path, tiny_series_dir):
    root = tmp_path / "s"
    shutil.copytree(tiny_series_dir, root)
    (root / "step_000001" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(SeriesError, match="step_000001/model.safetensors"):
        load_series(root)


def test_mismatched_tokenizer_is_named(tmp_path, tiny_series_dir):
    from ontogeny.testing import make_tokenizer

    root = tmp_path / "s"
    shutil.copytree(tiny_series_dir, root)
    tok = make_tokenizer(tmp_path / "tok2", vocab_size=280)
    tok.save_pretrained(str(root / "step_000004"))
    with pytest.raises(SeriesError, match="step_000004 has a different tokenizer"):
        load_series(root)


def test_hub_revisions_resolve_through_the_offline_cache(tmp_path, tiny_series_dir, monkeypatch):
    """The Hub path, exercised offline: a cache laid out as huggingface_hub writes it (refs -> snapshots)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hub" / "models--toy--tiny-neox"
    for i, (rev, step) in enumerate([("step1", 1), ("step4", 4)]):
        commit = f"{i:040d}"
        snap = repo / "snapshots" / commit
        shutil.copytree(tiny_series_dir / f"step_{step:06d}", snap)
        shutil.copytree(tiny_series_dir / "tokenizer", snap, dirs_exist_ok=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / rev).write_text(commit)
    s = load_series("toy/tiny-neox", revisions=["step4", "step1"], cache_dir=str(tmp_path / "hub"))
    assert s.steps == [1, 4]
    local = load_series(tiny_series_dir)
    torch.testing.assert_close(s.model(4).gpt_neox.embed_in.weight, local.model(4).gpt_neox.embed_in.weight)
    assert s.tokenizer.get_vocab() == local.tokenizer.get_vocab()

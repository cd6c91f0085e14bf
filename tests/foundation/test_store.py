import json

import pytest
import torch

from ontogeny.errors import SiteError, StoreError
from ontogeny.series.load import load_series
from ontogeny.series.sites import capture
from ontogeny.series.capture import cache_activations, pack_tokens
from ontogeny.store.activations import ActivationStore, shuffled_batches

SITES = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"]


@pytest.fixture(scope="module")
def series(tiny_series_dir):
    return load_series(tiny_series_dir)


@pytest.fixture(scope="module")
def token_ids(series):
    return torch.randint(0, 300, (6, 8), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def store(series, token_ids, tmp_path_factory):
    return cache_activations(series, token_ids, SITES, tmp_path_factory.mktemp("acts"), batch_size=4,
                             shard_rows=20)


def test_store_rows_match_a_direct_capture(series, token_ids, store):
    assert store.steps == [0, 1, 4] and store.sites == SITES
    for step in store.steps:
        direct = capture(series.model(step), token_ids, SITES)
        acts = store.load(step, "blocks.0.hook_resid_post")
        assert acts.shape == (48, 32)
        torch.testing.assert_close(acts, direct["blocks.0.hook_resid_post"].reshape(48, 32))
        torch.testing.assert_close(store.load(step, "blocks.1.attn.hook_z"),
                                   direct["blocks.1.attn.hook_z"].reshape(48, 32))
    assert torch.equal(store.token_ids, token_ids)
    assert store.load_stack([0, 4], SITES[0]).shape == (48, 2, 32)
    # shards: 48 rows at 20 per shard
    assert len(list((store.root / "step_000004" / SITES[0]).glob("shard_*.safetensors"))) == 3


def test_rerun_skips_complete_units(series, token_ids, store):
    f = store.root / "step_000001" / SITES[0] / "shard_0000.safetensors"
    before = f.stat().st_mtime_ns
    cache_activations(series, token_ids, SITES, store.root)
    assert f.stat().st_mtime_ns == before


def test_other_token_ids_are_refused(series, store):
    with pytest.raises(StoreError, match="other token ids"):
        cache_activations(series, torch.zeros(6, 8, dtype=torch.long), SITES, store.root)


def test_unknown_site_and_pattern_site(series, token_ids, store, tmp_path):
    with pytest.raises(SiteError, match="hook_bogus"):
        cache_activations(series, token_ids, ["blocks.0.hook_bogus"], tmp_path / "x")
    with pytest.raises(SiteError, match="pattern"):
        cache_activations(series, token_ids, ["blocks.0.attn.hook_pattern"], tmp_path / "y")
    with pytest.raises(SiteError, match="blocks.1.hook_mlp_out"):
        store.load(0, "blocks.1.hook_mlp_out")


def test_corrupt_and_foreign_shards_are_named(series, token_ids, tmp_path):
    st = cache_activations(series.subset([0]), token_ids, SITES[:1], tmp_path / "a")
    shard = tmp_path / "a" / "step_000000" / SITES[0] / "shard_0000.safetensors"
    good = shard.read_bytes()
    shard.write_bytes(b"not a safetensors file")
    with pytest.raises(StoreError, match="shard_0000.safetensors"):
        st.load(0, SITES[0])
    shard.write_bytes(good)
    meta = json.loads((tmp_path / "a" / "store.json").read_text())
    meta["tokens_hash"] = "0" * 64
    (tmp_path / "a" / "store.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="tokens.safetensors"):
        ActivationStore(tmp_path / "a").token_ids


def test_failed_capture_leaves_no_partial_unit(series, token_ids, tmp_path, monkeypatch):
    import ontogeny.store.activations as acts_mod

    def boom(*a, **k):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(acts_mod, "save_file", boom)
    with pytest.raises(RuntimeError):
        cache_activations(series.subset([0]), token_ids, SITES[:1], tmp_path / "b")
    left = [p for p in (tmp_path / "b").rglob("*") if p.is_file()]
    assert sorted(p.name for p in left) == ["store.json", "tokens.safetensors"] or not left


def test_nan_activations_are_refused(series, token_ids, tmp_path):
    sub = series.subset([0])
    model = sub.model(0)
    with torch.no_grad():
        model.gpt_neox.embed_in.weight[5] = float("nan")
    ids = token_ids.clone()
    ids[0, 0] = 5
    with pytest.raises(StoreError, match="NaN"):
        cache_activations(sub, ids, SITES[:1], tmp_path / "c")
    assert not list((tmp_path / "c").glob("step_*/*/done.json"))


def test_shuffled_batches_cover_each_row_once_per_epoch():
    x = torch.arange(20).float()[:, None]
    rows = torch.cat(list(shuffled_batches(x, 5, seed=1, n_epochs=2)))
    assert sorted(rows[:20, 0].tolist()) == list(range(20)) and sorted(rows[20:, 0].tolist()) == list(range(20))
    again = torch.cat(list(shuffled_batches(x, 5, seed=1, n_epochs=2)))
    assert torch.equal(rows, again)


def test_pack_tokens_is_deterministic(series):
    texts = ["def f(x):\n    return x * 2\n"] * 40
    a = pack_tokens(series.tokenizer, texts, 4, 8, seed=3)
    assert a.shape == (4, 8) and torch.equal(a, pack_tokens(series.tokenizer, texts, 4, 8, seed=3))
    with pytest.raises(StoreError, match="windows"):
        pack_tokens(series.tokenizer, texts[:1], 4, 8)

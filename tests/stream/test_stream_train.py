"""Streamed training: equals the cached path fed the same rows in the same order; shared and warm init;
the unit's cfg.json records its token budget; held-out evaluation table."""

from __future__ import annotations

import json

import pytest
import torch

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.saelens_io import load_dictionary
from ontogeny.dictionaries.store_train import (dictionary_dir, evaluate_dictionaries, stream_checkpoint_dictionaries,
                                               stream_train, write_dictionaries_table)
from ontogeny.dictionaries.stream import (StreamConfig, TrainingWindows, activation_chunks, input_scale,
                                          mixing_batches_reference)
from ontogeny.dictionaries.train import TrainConfig, train_many
from ontogeny.errors import StoreError
from ontogeny.series.load import load_series
from ontogeny.series.capture import capture_all

SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]
DICT = {"rule": "topk", "d_sae": 64, "k": 4}


@pytest.fixture(scope="module")
def series(tiny_series_dir):
    return load_series(tiny_series_dir)


def windows(vocab: int, seed: int = 0) -> TrainingWindows:
    stream = torch.randint(0, vocab, (4000,), generator=torch.Generator().manual_seed(11))
    return TrainingWindows(stream, ctx=16, seed=seed)


def test_windows_cover_the_stream_before_repeating():
    w = windows(100)
    it = w.batches(10)
    got = torch.cat([next(it) for _ in range(w.windows_per_epoch // 10)])
    starts = [(w.stream_N.unfold(0, 16, 1) == row).all(1).nonzero()[0, 0].item() for row in got[:50]]
    assert len(set(s % 16 for s in starts)) == 1  # one epoch = one offset, non-overlapping windows
    assert len(set(starts)) == len(starts)


def test_streamed_equals_cached_on_the_same_rows(series):
    """Brute-force reference: capture every window batch with the store's capture_all, replay the buffer
    rule on the cached rows (plain reference), scale from the same first fill, train with train_many."""
    model = series.model(4)
    stream = StreamConfig(training_tokens=64 * 30, batch_size=64, buffer_tokens=256, forward_seqs=4, seed=2)
    tcfg = TrainConfig(lr=1e-3, seed=0)
    w = windows(int(model.config.vocab_size))
    streamed = {s: Dictionary(DictionaryConfig(d_in=32, **DICT), seed=7) for s in SITES}
    stream_train(model, w, streamed, tcfg, stream)

    it = w.batches(stream.forward_seqs)
    cached = []
    for _ in range(40):  # more windows than the stream consumed
        ids = next(it)
        acts = capture_all(model, ids, SITES, batch_size=4)
        cached.append(acts)
        # the streamed capture (body only, stops early) gives the store's activations
    first = next(activation_chunks(model, [cached_ids(w, stream)], SITES))
    assert all(torch.allclose(first[s], cached[0][s], atol=1e-6) for s in SITES)
    scales = {s: input_scale(torch.cat([c[s] for c in cached[:256 // 64]])) for s in SITES}
    # the stream reads exactly its budget (30 batches of 64 rows = the first 30 chunks of 64 rows)
    ref_batches = mixing_batches_reference(cached[:30], 256, 64, seed=2)
    assert len(ref_batches) == 30
    ref = [Dictionary(DictionaryConfig(d_in=32, **DICT), seed=7) for _ in SITES]
    train_many(ref, [[b[s] * scales[s] for s in SITES] for b in ref_batches], tcfg, total_steps=30)
    for m, s in zip(ref, SITES, strict=True):
        m.fold_input_scale(scales[s])
        for name in ("W_enc_DF", "W_dec_FD", "b_enc_F", "b_dec_D"):
            assert torch.allclose(getattr(m, name), getattr(streamed[s], name), atol=1e-5), (s, name)
    # and training moved the weights (the comparison is not between two untouched inits)
    init = Dictionary(DictionaryConfig(d_in=32, **DICT), seed=7)
    assert (init.W_dec_FD - streamed[SITES[0]].W_dec_FD).abs().max() > 1e-2


def cached_ids(w: TrainingWindows, stream: StreamConfig) -> torch.Tensor:
    return next(w.batches(stream.forward_seqs))


def test_unit_records_budget_and_inits(series, tmp_path):
    stream = StreamConfig(training_tokens=64 * 12, batch_size=64, buffer_tokens=256, forward_seqs=4)
    tcfg = TrainConfig(lr=1e-3)
    w = windows(int(series.config.vocab_size))
    src = {"corpus": "random test stream"}
    rows = stream_checkpoint_dictionaries(tmp_path, series.model(0), 0, SITES, DICT, tcfg, stream, w, source=src)
    assert [r["training_tokens"] for r in rows] == [768, 768]
    cfg = json.loads((dictionary_dir(tmp_path, 0, SITES[0]) / "cfg.json").read_text())
    assert cfg["metadata"]["training_tokens"] == 768 and cfg["metadata"]["init"] == "shared"
    assert cfg["metadata"]["checkpoint_step"] == 0
    # resumable: nothing left to do
    assert stream_checkpoint_dictionaries(tmp_path, series.model(0), 0, SITES, DICT, tcfg, stream, w) == []

    # warm start with a very strong pull stays at the previous dictionary (same model, same scale)
    warm = stream.model_copy(update={"init": "warm", "l2_pull": 1e4})
    stream_checkpoint_dictionaries(tmp_path / "w", series.model(0), 0, SITES[:1], DICT, tcfg, stream, w)
    stream_checkpoint_dictionaries(tmp_path / "w", series.model(0), 1, SITES[:1], DICT, tcfg, warm, w,
                                   previous_step=0)
    prev = load_dictionary(dictionary_dir(tmp_path / "w", 0, SITES[0]))
    pulled = load_dictionary(dictionary_dir(tmp_path / "w", 1, SITES[0]))
    assert (prev.W_dec_FD - pulled.W_dec_FD).abs().max() < 2e-3
    meta = json.loads((dictionary_dir(tmp_path / "w", 1, SITES[0]) / "cfg.json").read_text())["metadata"]
    assert meta["init"] == "warm" and meta["init_from"]["step"] == 0
    # without the pull the warm start moves
    free = stream.model_copy(update={"init": "warm", "l2_pull": 0.0})
    stream_checkpoint_dictionaries(tmp_path / "w", series.model(0), 2, SITES[:1], DICT, tcfg, free, w,
                                   previous_step=0)
    moved = load_dictionary(dictionary_dir(tmp_path / "w", 2, SITES[0]))
    assert (prev.W_dec_FD - moved.W_dec_FD).abs().max() > 10 * (prev.W_dec_FD - pulled.W_dec_FD).abs().max()
    with pytest.raises(StoreError, match="previous step 7"):
        stream_checkpoint_dictionaries(tmp_path / "w", series.model(0), 9, SITES[:1], DICT, tcfg, warm, w,
                                       previous_step=7)


def test_evaluation_table(series, tmp_path):
    from ontogeny.series.capture import cache_activations
    from ontogeny.store.activations import ActivationStore
    from ontogeny.store.tables import read_table

    ids = torch.randint(0, int(series.config.vocab_size), (8, 16), generator=torch.Generator().manual_seed(3))
    store = cache_activations(series.subset([1]), ids, SITES, tmp_path / "activations")
    stream = StreamConfig(training_tokens=64 * 10, batch_size=64, buffer_tokens=256, forward_seqs=4)
    w = windows(int(series.config.vocab_size))
    stream_checkpoint_dictionaries(tmp_path, series.model(1), 1, SITES, DICT, TrainConfig(lr=1e-3), stream, w)
    rows = evaluate_dictionaries(tmp_path, series.model(1), ActivationStore(tmp_path / "activations"), 1, SITES,
                                 splice_seqs=2)
    write_dictionaries_table(tmp_path, rows)
    got = read_table(tmp_path / "tables" / "dictionaries.parquet")
    assert [r["site"] for r in got] == sorted(SITES)
    for r in got:
        assert r["training_tokens"] == 640 and r["eval_tokens"] == store.token_ids.numel()
        assert 0 <= r["fvu"] < 2 and r["l0"] <= 4 and r["ce_clean"] is not None

"""The mixing buffer: agrees with its plain reference, is bounded, mixes as the half-refill rule predicts,
and is deterministic given its seed."""

from __future__ import annotations

import pytest
import torch

from ontogeny.dictionaries.stream import MixingBuffer, mixing_batches_reference
from ontogeny.errors import ConfigError


def labelled_chunks(sizes, d=3):
    """Chunks whose site 'a' rows carry their global row index (col 0) and chunk index (col 1)."""
    out, start = [], 0
    for c, n in enumerate(sizes):
        idx = torch.arange(start, start + n, dtype=torch.float32)
        a = torch.stack([idx, torch.full((n,), float(c)), torch.randn(n)], 1)[:, :d]
        out.append({"a": a, "b": -a})
        start += n
    return out


def test_matches_plain_reference_and_keeps_sites_aligned():
    chunks = labelled_chunks([17, 40, 5, 33, 64, 8, 21, 50])
    fast = list(MixingBuffer(64, 8, seed=3).batches(chunks))
    ref = mixing_batches_reference(chunks, 64, 8, seed=3)
    assert len(fast) == len(ref)
    for f, r in zip(fast, ref, strict=True):
        assert torch.equal(f["a"], r["a"]) and torch.equal(f["b"], r["b"])
        assert torch.equal(f["b"], -f["a"])  # row i of every site is the same token
    ids = torch.cat([b["a"][:, 0] for b in fast])
    assert ids.unique().numel() == ids.numel()  # no row emitted twice
    assert ids.numel() == (238 // 8) * 8  # every full batch of the 238 rows comes out


def test_bounded_whatever_the_stream_length():
    buf = MixingBuffer(128, 16, seed=0)
    n = sum(1 for _ in buf.batches(labelled_chunks([48] * 200)))
    assert n == 48 * 200 // 16
    assert buf.max_held <= 128 + 48
    assert all(t.shape[0] == 128 for t in buf.store.values())


def test_half_refill_mixing_statistics():
    """Steady state: the buffer holds C/2 kept rows + C/2 new rows and emits C/2 uniformly from them, so a
    row leaves in the refill it arrived with probability 1/2, and within one emitted half the emission
    order is uncorrelated with arrival order."""
    C, B, chunk = 512, 16, 64
    chunks = labelled_chunks([chunk] * 400)
    batches = list(MixingBuffer(C, B, seed=1).batches(chunks))
    ids = torch.cat([b["a"][:, 0] for b in batches]).long()
    half = C // 2
    # emission e (of C/2 rows) follows a fill that brought rows [C + (e-1) C/2, C + e C/2) (e >= 1)
    fresh = []
    for e in range(1, ids.numel() // half - 1):
        out = ids[e * half:(e + 1) * half]
        lo, hi = C + (e - 1) * half, C + e * half
        fresh.append(((out >= lo) & (out < hi)).float().mean())
        order = torch.arange(half, dtype=torch.float32)
        corr = torch.corrcoef(torch.stack([order, out.float()]))[0, 1]
        assert abs(float(corr)) < 0.25
    share = float(torch.stack(fresh).mean())
    assert abs(share - 0.5) < 0.02, share
    # first emission: a uniform draw over the 8 chunks that filled the buffer
    first = torch.cat([b["a"][:, 1] for b in batches[:half // B]]).long()
    counts = torch.bincount(first, minlength=8).float()
    expected = half / 8
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 24.3  # chi-square, 7 dof, p = 0.001


def test_deterministic_by_seed():
    chunks = labelled_chunks([30] * 20)
    a = [b["a"] for b in MixingBuffer(96, 8, seed=5).batches(chunks)]
    b = [b["a"] for b in MixingBuffer(96, 8, seed=5).batches(chunks)]
    c = [b["a"] for b in MixingBuffer(96, 8, seed=6).batches(chunks)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_bad_input_named():
    with pytest.raises(ConfigError, match="at least 2 batches"):
        MixingBuffer(10, 8)
    with pytest.raises(ConfigError, match="different row counts"):
        list(MixingBuffer(32, 4).batches([{"a": torch.zeros(5, 2), "b": torch.zeros(6, 2)}]))

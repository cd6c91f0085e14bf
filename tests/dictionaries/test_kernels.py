"""The compiled selection kernels (`dictionaries/kernels.py`) against brute-force torch references, and
training with them against training without them."""

from __future__ import annotations

import pytest
import torch

from ontogeny.dictionaries import kernels

pytestmark = pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ties_first_topk(pre_BF: torch.Tensor, k: int) -> torch.Tensor:
    """Brute force: each row's k largest, among equal values the earliest columns; flat, sorted."""
    B, F = pre_BF.shape
    order = torch.sort(-pre_BF, dim=1, stable=True).indices[:, :k]
    return (order.sort(1).values + torch.arange(B)[:, None] * F).reshape(-1)


@pytest.mark.parametrize(("B", "F", "k"), [(64, 40, 4), (33, 1024, 32), (8, 4096, 32), (20, 37, 5),
                                           (5, 64, 64), (7, 300, 1), (3, 257, 130)])
def test_topk_rows_is_the_exact_top_k_with_earliest_ties(B, F, k):
    """Random rows with a per-column offset (like trained biases), and integer rows full of ties."""
    pre = torch.randn(B, F, generator=_gen(B)) + torch.randn(F, generator=_gen(F))
    assert torch.equal(kernels.topk_rows(pre, k), _ties_first_topk(pre, k))
    ties = torch.randint(0, 4, (B, F), generator=_gen(1)).float()
    assert torch.equal(kernels.topk_rows(ties, k), _ties_first_topk(ties, k))


def test_topk_rows_takes_float64_views_and_any_thread_count():
    pre = torch.randn(512, 96, generator=_gen(0), dtype=torch.float64).t()  # [96, 512], not contiguous
    expect = _ties_first_topk(pre, 9)
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            assert torch.equal(kernels.topk_rows(pre, 9), expect)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="k=0"):
        kernels.topk_rows(pre, 0)


@pytest.mark.parametrize("per_column", [False, True])
def test_flat_above_equals_nonzero(per_column):
    pre = torch.randint(-3, 4, (70, 130), generator=_gen(2)).float()  # many entries equal a threshold
    thr = torch.randint(-1, 2, (130,), generator=_gen(3)).float() if per_column else 0.0
    assert torch.equal(kernels.flat_above(pre, thr), torch.nonzero((pre > thr).reshape(-1))[:, 0])
    assert kernels.flat_above(pre, 10.0).numel() == 0


@pytest.mark.parametrize("margin", [1.5, 0.01])
def test_batch_topk_flat_is_exact_with_ties_and_fallback(margin):
    """margin 0.01: too few entries pass the sampled threshold, so every entry becomes a candidate."""
    pre = torch.randn(300, 200, generator=_gen(4))
    for n in (1, 300 * 8, 60_000):
        expect = torch.sort(-pre.reshape(-1), stable=True).indices[:n].sort().values
        assert torch.equal(kernels.batch_topk_flat(pre, n, margin=margin), expect)
    ties = torch.randint(0, 5, (64, 50), generator=_gen(5)).float()
    expect = torch.sort(-ties.reshape(-1), stable=True).indices[:640].sort().values
    assert torch.equal(kernels.batch_topk_flat(ties, 640, margin=margin), expect)


def test_available_only_for_cpu_float_and_not_when_disabled(monkeypatch):
    x = torch.zeros(2, 3)
    assert kernels.available(x, x.double()) is False  # mixed dtypes
    assert kernels.available(x.half()) is False
    assert kernels.available(x) is True
    monkeypatch.setenv(kernels.ENV_DISABLE, "1")
    assert kernels.available(x) is False


@pytest.mark.parametrize("rule", ["topk", "batchtopk", "relu", "jumprelu"])
def test_training_with_and_without_kernels_agrees(rule, monkeypatch):
    """Planted superposition through the real encoder path (shared firing support, noise): 30 steps
    with the compiled selection and 30 with torch's operators give the same losses (to rounding: the
    entries' order within a row may differ, so sums round differently)."""
    from ontogeny.dictionaries import Dictionary, DictionaryConfig, TrainConfig, Trainer

    g = _gen(6)
    dirs_FD = torch.nn.functional.normalize(torch.randn(96, 16, generator=g), dim=1)
    support = torch.rand(2048, 96, generator=g) < 0.06
    support[:, 1] |= support[:, 0]  # feature 1 fires whenever feature 0 does
    x_ND = (support * torch.rand(2048, 96, generator=g)) @ dirs_FD + 0.02 * torch.randn(2048, 16, generator=g)
    extra = {"relu": {"l1_coefficient": 0.3}, "jumprelu": {"jumprelu_init_threshold": 0.3,
                                                          "jumprelu_bandwidth": 0.1}}.get(rule, {})
    losses = {}
    for mode in ("kernels", "torch"):
        if mode == "torch":
            monkeypatch.setenv(kernels.ENV_DISABLE, "1")
        cfg = DictionaryConfig(rule=rule, d_in=16, d_sae=64, k=4, sparse_below=1.0, **extra)
        trainer = Trainer(Dictionary(cfg, seed=1), TrainConfig(lr=3e-3, log_every=1), total_steps=30)
        for s in range(30):
            trainer.step(x_ND[s * 64:(s + 1) * 64])
        losses[mode] = torch.tensor([row["loss"] for row in trainer.result.history])
    assert losses["kernels"][-1] < 0.8 * losses["kernels"][0]  # it trains
    assert torch.allclose(losses["kernels"], losses["torch"], rtol=1e-3, atol=1e-5)

"""Each rule against its definition, and every fast (sparse) path against the plain dense reference."""

from __future__ import annotations

import math

import pytest
import torch

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.rules import RULES
from ontogeny.dictionaries.state import TrainState

torch.set_num_threads(1)


def test_every_rule_has_test_parameters(rule_params):
    """A rule added to the registry is tested like the others only once it has its parameters."""
    assert set(RULES) == set(rule_params)


def _pair(rule: str, small: dict):
    cfg = dict(rule=rule, d_in=12, d_sae=40, **small)
    fast = Dictionary(DictionaryConfig(fast=True, sparse_below=1.0, **cfg), seed=3)  # always sparse
    plain = Dictionary(DictionaryConfig(fast=False, **cfg), seed=3)
    with torch.no_grad():
        for m in (fast, plain):
            m.b_enc_F.copy_(torch.linspace(-0.3, 0.3, 40))
            m.b_dec_D.copy_(torch.linspace(-0.1, 0.2, 12))
    return fast, plain


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("with_dead", [False, True])
def test_fast_path_matches_plain_reference(rule, with_dead, rule_params):
    """Same loss, metrics and gradients from the sparse fused path and the dense reference."""
    fast, plain = _pair(rule, rule_params[rule]["small"])
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(0))
    dead = torch.zeros(40, dtype=torch.bool)
    if with_dead:
        dead[::3] = True
    outs = []
    for m in (fast, plain):
        m.train()
        out = m.training_loss(x, TrainState(dead_F=dead))
        out.loss.backward()
        outs.append(out)
    assert torch.allclose(outs[0].loss, outs[1].loss, rtol=1e-5, atol=1e-6)
    for key in outs[1].metrics:
        assert torch.allclose(outs[0].metrics[key], outs[1].metrics[key], rtol=1e-4, atol=1e-6), key
    assert torch.equal(outs[0].fired_F, outs[1].fired_F)
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None or p.grad.abs().max() == 0, name
            continue
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), name
    if with_dead and RULES[rule].uses_aux_k:
        assert "aux" in outs[0].metrics and outs[0].metrics["aux"] > 0


@pytest.mark.parametrize("rule", sorted(r for r in RULES if RULES[r].density_dependent))
def test_fast_dense_regime_matches_plain_reference(rule, rule_params):
    """The fast trainer's dense regime (`dense_codes_and_penalty`: relu's one-reduction penalty, jumprelu's
    fused codes + L0) gives the reference's loss and gradients, threshold gradient included."""
    fast, plain = _pair(rule, rule_params[rule]["small"])
    fast.cfg = fast.cfg.model_copy(update={"sparse_below": 0.0})  # always dense
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(0))
    outs = []
    for m in (fast, plain):
        m.train()
        out = m.training_loss(x, TrainState())
        out.loss.backward()
        outs.append(out)
    assert torch.allclose(outs[0].loss, outs[1].loss, rtol=1e-5, atol=1e-6)
    assert torch.allclose(outs[0].metrics["penalty"], outs[1].metrics["penalty"], rtol=1e-5)
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        assert q.grad is not None and q.grad.abs().max() > 0, name  # every parameter is exercised
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(("B", "F", "k"), [(64, 40, 4), (33, 1024, 32), (8, 4096, 32), (20, 37, 5), (5, 64, 64)])
def test_row_topk_indices_equals_a_full_top_k(B, F, k, compiled, monkeypatch):
    """The grouped two-stage top-k (torch operators; `compiled`: kernels.topk_rows) returns each row's k
    largest entries (the full top-k's values exactly; the same indices when there are no ties), rows
    ascending; F = 37 (prime) uses the plain top-k."""
    from ontogeny.dictionaries import kernels
    from ontogeny.dictionaries.sparse import row_topk_indices, row_topk_reference, topk_groups
    if compiled and kernels.numba is None:
        pytest.skip("numba is not installed")
    if not compiled:
        monkeypatch.setenv(kernels.ENV_DISABLE, "1")
    pre = torch.randn(B, F, generator=torch.Generator().manual_seed(B))
    got, ref = row_topk_indices(pre, k), row_topk_reference(pre, k)
    assert torch.equal(got.view(B, k).sort(1).values, ref.view(B, k).sort(1).values)
    assert torch.equal(torch.div(got, F, rounding_mode="floor"), torch.arange(B).repeat_interleave(k))
    assert (topk_groups(F, k) > 0) == (F in (40, 1024, 4096))
    ties = torch.randint(0, 6, (B, F), generator=torch.Generator().manual_seed(1)).float()
    vals = ties.view(-1)[row_topk_indices(ties, k)].view(B, k).sort(1).values
    assert torch.equal(vals, ties.topk(k, dim=1).values.sort(1).values)
    assert torch.unique(row_topk_indices(ties, k)).numel() == B * k  # no entry picked twice


def test_batch_topk_indices_is_exact():
    """The sampled-threshold selection returns exactly the indices of a full top-n."""
    from ontogeny.dictionaries.rules import batch_topk_indices
    flat = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    for n in (10, 640, 5000):
        expect = flat.topk(n).indices.sort().values
        assert torch.equal(batch_topk_indices(flat, n), expect)


def test_topk_keeps_exactly_the_k_largest():
    cfg = DictionaryConfig(rule="topk", d_in=4, d_sae=10, k=3)
    rule = RULES["topk"](cfg)
    pre = torch.tensor([[5.0, -1, 2, 7, 0.5, 3, -2, 1, 0, 4]])
    codes = rule(pre)
    assert torch.equal(codes, torch.tensor([[5.0, 0, 0, 7, 0, 0, 0, 0, 0, 4]]))


def test_batchtopk_keeps_k_per_token_on_average_and_learns_threshold():
    cfg = DictionaryConfig(rule="batchtopk", d_in=4, d_sae=6, k=2, threshold_start_step=0, threshold_beta=0.5)
    rule = RULES["batchtopk"](cfg).train()
    pre = torch.tensor([[9.0, 8, 7, 0, 0, 0], [1.0, 0.5, 0, 0, 0, 6]])
    codes = rule(pre)
    assert torch.equal(codes, torch.tensor([[9.0, 8, 7, 0, 0, 0], [0, 0, 0, 0, 0, 6]]))
    rule.update(codes[codes > 0], step=0)          # first update copies the smallest kept value
    assert float(rule.theta) == 6.0
    rule.update(torch.tensor([2.0, 3.0]), step=1)  # then an EMA: 0.5 * 6 + 0.5 * 2
    assert float(rule.theta) == 4.0
    rule.eval()
    assert torch.equal(rule(pre), torch.tensor([[9.0, 8, 7, 0, 0, 0], [0, 0, 0, 0, 0, 6]]))
    assert torch.equal(rule.threshold_F, torch.full((6,), 4.0))


def test_jumprelu_straight_through_threshold_gradient():
    """d/dtheta of sum f and of L0 equal the rectangle-kernel pseudo-derivatives (arXiv 2407.14435)."""
    eps, theta = 0.2, 0.5
    cfg = DictionaryConfig(rule="jumprelu", d_in=2, d_sae=3, jumprelu_bandwidth=eps, jumprelu_init_threshold=theta)
    rule = RULES["jumprelu"](cfg)
    pre = torch.tensor([[0.45, 0.58, 2.0], [0.62, 0.3, 0.55]])  # in band: 0.45, 0.58, 0.55 (|pre-θ| < 0.1)
    codes = rule(pre)
    assert torch.allclose(codes, torch.tensor([[0.0, 0.58, 2.0], [0.62, 0.0, 0.55]]))
    codes.sum().backward()
    # df/dtheta = -(theta/eps) * #in-band, chain rule through theta = exp(log_theta): times theta
    in_band = torch.tensor([1.0, 1.0, 1.0])  # column 0: 0.45; column 1: 0.58; column 2: 0.55
    expect = -(theta / eps) * in_band * theta
    assert torch.allclose(rule.log_threshold_F.grad, expect, atol=1e-6)
    rule.log_threshold_F.grad = None
    l0 = rule.penalty(codes, pre, None, torch.ones(3), n_rows=2)
    assert math.isclose(float(l0.detach()), 4 / 2)  # four entries above threshold over two tokens
    l0.backward()
    assert torch.allclose(rule.log_threshold_F.grad, -(1 / eps) * in_band / 2 * theta, atol=1e-6)


def test_relu_penalty_is_decoder_norm_weighted_and_rescaling_invariant():
    """sum_i a_i ||d_i|| is unchanged when d_i is scaled by c and a_i by 1/c, as is the reconstruction."""
    m = Dictionary(DictionaryConfig(rule="relu", d_in=6, d_sae=10, fast=False), seed=1)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    out1 = m.training_loss(x, TrainState())
    c = torch.linspace(0.5, 3, 10)
    with torch.no_grad():
        m.W_dec_FD.mul_(c[:, None])
        m.W_enc_DF.div_(c[None, :])
        m.b_enc_F.div_(c)
    out2 = m.training_loss(x, TrainState())
    assert torch.allclose(out1.metrics["penalty"], out2.metrics["penalty"], rtol=1e-5)
    assert torch.allclose(out1.metrics["mse"], out2.metrics["mse"], rtol=1e-5)
    codes = m.encode(x)
    expect = (codes * m.W_dec_FD.norm(dim=1)).sum() / 32
    assert torch.allclose(out2.metrics["penalty"], expect, rtol=1e-5)


def test_row_dots_matches_gathered_reference():
    """The SDDMM fast path equals gathering both rows, with unsorted columns inside a row."""
    from ontogeny.dictionaries.sparse import row_dots, row_dots_reference
    g = torch.Generator().manual_seed(0)
    W, x = torch.randn(50, 16, generator=g), torch.randn(30, 16, generator=g)
    rows = torch.arange(30).repeat_interleave(5)
    cols = torch.randint(0, 50, (150,), generator=g)
    assert torch.allclose(row_dots(W, x, rows, cols), row_dots_reference(W, x, rows, cols), atol=1e-5)


def test_fused_dense_jumprelu_equals_the_two_functions_at_ties():
    """`_JumpReLUL0` (float step and band masks) gives `_JumpReLU` and `_Step`'s codes, L0 and gradients,
    with entries exactly at theta (code 0) and exactly eps/2 from it (outside the band)."""
    from ontogeny.dictionaries.rules.jumprelu import _JumpReLU, _JumpReLUL0, _Step
    eps = 0.25
    theta = torch.tensor([0.5, 0.25, 1.0])
    pre = torch.tensor([[0.5, 0.25, 1.0], [0.625, 0.375, 0.875], [0.55, 0.2, 3.0], [-1.0, 0.3, 1.05]])
    g = torch.tensor([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0], [2.0, 1.0, 1.0], [-0.5, 0.75, 2.0]])
    out = []
    for fused in (True, False):
        p, t = pre.clone().requires_grad_(), theta.clone().requires_grad_()
        if fused:
            codes, l0 = _JumpReLUL0.apply(p, t, eps)
        else:
            codes, l0 = _JumpReLU.apply(p, t, eps), _Step.apply(p, t, eps).sum()
        ((codes * g).sum() + 0.7 * l0).backward()
        out.append((codes.detach(), l0.detach(), p.grad, t.grad))
    for a, b in zip(*out, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert out[0][0][0].abs().sum() == 0 and float(out[0][1]) == 6  # pre == theta: not active
    # the band |pre - theta| < eps/2 holds row 0 (d = 0), 0.55, 0.2, 0.3 and 1.05; not 0.625, 0.375 or
    # 0.875 (|d| = eps/2 exactly)
    band = torch.tensor([[1.0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]])
    expect = -(1 / eps) * (theta * (band * g).sum(0) + 0.7 * band.sum(0))
    assert torch.allclose(out[0][3], expect, atol=1e-6)


@pytest.mark.parametrize("n_sample", [None, 512])
def test_batch_topk_indices_with_ties_and_fallback(n_sample):
    """Many tied values at the cut: exactly n distinct ascending indices whose values are the top-n
    values; a margin too small for the sample falls back to the full top-n (same values)."""
    from ontogeny.dictionaries.rules import batch_topk_indices
    flat = torch.randint(0, 40, (100_000,), generator=torch.Generator().manual_seed(2)).float()
    for n, margin in ((1000, 1.5), (3333, 1.5), (2000, 0.2)):
        got = batch_topk_indices(flat, n, n_sample=n_sample, margin=margin)
        assert got.numel() == n and torch.equal(got, got.unique())  # ascending, no entry twice
        assert torch.equal(flat[got].sort().values, flat.topk(n).values.sort().values)


def test_shared_column_order_gives_the_same_sums():
    """One `ColumnOrder` serves two column sums over the same entries (as the encoder's and decoder's
    backward share it) with the result of separate sorts; other entries are refused."""
    from ontogeny.dictionaries.sparse import ColumnOrder, column_sums
    g = torch.Generator().manual_seed(0)
    rows = torch.arange(50).repeat_interleave(6)
    cols = torch.randint(0, 70, (300,), generator=g)
    t1, t2, w = torch.randn(50, 8, generator=g), torch.randn(50, 8, generator=g), torch.randn(300, generator=g)
    dense = torch.zeros(50, 70).index_put((rows, cols), w, accumulate=True)  # brute force: dense^T @ table
    order = ColumnOrder()
    for t in (t1, t2):
        assert torch.allclose(column_sums(t, rows, cols, w, 70, order), dense.t() @ t, atol=1e-5)
    with pytest.raises(ValueError):
        column_sums(t1, rows[:10], cols[:10], w[:10], 70, order)


def test_reused_encoder_workspace_keeps_steps_independent(rule_params):
    """The fused encoder writes each step's dense pre-activations into one reused buffer: batches of
    different contents and sizes in turn give the losses and gradients of a fresh dictionary."""
    fast, _ = _pair("topk", rule_params["topk"]["small"])
    g = torch.Generator().manual_seed(5)
    for B in (64, 64, 17, 64):
        x = torch.randn(B, 12, generator=g)
        fresh, _ = _pair("topk", rule_params["topk"]["small"])
        got = []
        for m in (fast, fresh):
            m.train()
            m.zero_grad(set_to_none=True)
            out = m.training_loss(x, TrainState())
            out.loss.backward()
            got.append((out.loss.detach(), m.W_enc_DF.grad.clone(), m.b_dec_D.grad.clone()))
        for a, b in zip(*got, strict=True):
            assert torch.equal(a, b)
    assert fast._workspace._buf is not None and fast._workspace._buf.shape == (64, 40)

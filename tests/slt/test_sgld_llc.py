"""SGLD and LLC against analytic truths: Aoyagi's λ for deep linear networks, Gaussian posteriors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from ontogeny.errors import ConfigError
from ontogeny.slt.dln import aoyagi_lambda, make_dln_task
from ontogeny.slt.llc import estimate_llc
from ontogeny.slt.sgld import SGLDConfig, sample, shuffled_batches


@pytest.mark.parametrize("widths,rank,expected", [
    ([2, 1, 2], 0, 1.0),  # a·bᵀ at 0: λ = min(M, N)/2 (poles of ∫(|a|²|b|²)^{-z})
    ([3, 5], 0, 7.5),  # one layer is regular: d/2
    ([8, 6, 6, 8], 2, 21.5),  # the benchmark network (devinterp's issue quotes 21.5)
])
def test_aoyagi_known_values(widths, rank, expected):
    assert aoyagi_lambda(widths, rank) == pytest.approx(expected)


def _aoyagi_watanabe_2005(m: int, h: int, n: int, r: int) -> float:
    """Reduced-rank regression y = B A x (input m, hidden h, output n, true rank r): the closed form of
    Aoyagi & Watanabe 2005 (Neural Networks 18, Theorem 1), written independently of dln.aoyagi_lambda."""
    if m + h < n + r:
        return (h * m - h * r + n * r) / 2
    if n + h < m + r:
        return (h * n - h * r + m * r) / 2
    if m + n < h + r:
        return m * n / 2
    return (2 * (h + r) * (m + n) - (m - n) ** 2 - (h + r) ** 2 + (m + h + n + r) % 2) / 8


def test_aoyagi_matches_the_two_layer_closed_form_everywhere():
    # every shape up to width 7 and every true rank: the general (Aoyagi 2024) formula reduces to the
    # 2005 closed form for one hidden layer
    for m in range(1, 8):
        for h in range(1, 8):
            for n in range(1, 8):
                for r in range(min(m, h, n) + 1):
                    assert aoyagi_lambda([m, h, n], r) == pytest.approx(_aoyagi_watanabe_2005(m, h, n, r)), (m, h, n, r)
    # equal widths at full rank: the product is a free H×H matrix, λ = H²/2 at any depth
    assert aoyagi_lambda([3, 3, 3, 3], 3) == pytest.approx(4.5)
    assert aoyagi_lambda([4, 4, 4, 4, 4], 4) == pytest.approx(8.0)


def test_aoyagi_regular_when_full_rank_single_hidden():
    # H=1 between 1-d input and output, true rank 1: the map (a, b) -> ab is regular up to a 1-d fibre,
    # λ = (number of parameters − fibre dimension)/2 = (2 − 1)/2.
    assert aoyagi_lambda([1, 1, 1], 1) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="rank"):
        aoyagi_lambda([2, 2], 3)


def test_dln_llc_matches_aoyagi_within_15_percent():
    task = make_dln_task([8, 6, 6, 8], rank=2, n=10_000, seed=1)
    assert task.rank == 2 and task.lam == pytest.approx(21.5)
    params = {k: v.detach() for k, v in task.model.named_parameters()}
    cfg = SGLDConfig(lr=1e-3, n_beta=task.n / math.log(task.n), gamma=100.0, num_chains=4, num_draws=300,
                     num_burnin_steps=100, batch_size=100, seed=0)
    res = estimate_llc(task.loss_fn, params, shuffled_batches((task.x_ND, task.y_NO), 100, 0), cfg)
    assert abs(res.llc_mean / task.lam - 1) < 0.15, res.llc_mean
    assert not res.warnings


def _quadratic(a: torch.Tensor, mu: torch.Tensor):
    return lambda params, batch: 0.5 * (a * (params["w"] - mu) ** 2).sum()


def test_gaussian_llc_is_exact_stationary_value():
    # L = ½Σ a_i (w_i − μ_i)²: the discrete chain's stationary variance is s² = 1/(P(1 − εP/4)), P = nβa + γ,
    # so nβ·E[L − L*] = nβ·Σ ½ a_i s_i² exactly.
    a, mu = torch.tensor([0.5, 1.0, 2.0]), torch.tensor([0.3, -0.2, 0.1])
    nb, gam, eps = 10.0, 1.0, 1e-2
    cfg = SGLDConfig(lr=eps, n_beta=nb, gamma=gam, num_chains=16, num_draws=3000, num_burnin_steps=200, seed=3)
    res = estimate_llc(_quadratic(a, mu), {"w": mu.clone()}, lambda s: None, cfg)
    p = nb * a + gam
    s2 = 1 / (p * (1 - eps * p / 4))
    assert res.llc_mean == pytest.approx(float(nb * (0.5 * a * s2).sum()), rel=0.05)


def test_vmap_and_loop_backends_agree():
    task = make_dln_task([4, 3, 4], rank=1, n=500, seed=0)
    params = {k: v.detach() for k, v in task.model.named_parameters()}
    cfg = SGLDConfig(lr=1e-3, n_beta=50.0, gamma=10.0, num_chains=3, num_draws=20, batch_size=50, seed=5, mala=True)
    runs = [sample(task.loss_fn, params, shuffled_batches((task.x_ND, task.y_NO), 50, 0), cfg, backend=b)
            for b in ("vmap", "loop")]
    torch.testing.assert_close(runs[0].loss_trace_CS, runs[1].loss_trace_CS, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(runs[0].mala_acceptance_C, runs[1].mala_acceptance_C, rtol=1e-4, atol=1e-5)
    # chains differ (independent noise), and the same seed reproduces the run exactly
    assert runs[0].loss_trace_CS[0, -1] != runs[0].loss_trace_CS[1, -1]
    again = sample(task.loss_fn, params, shuffled_batches((task.x_ND, task.y_NO), 50, 0), cfg)
    assert torch.equal(again.loss_trace_CS, runs[0].loss_trace_CS)


def test_mask_freezes_unselected_parameters():
    # Observables see each chain's parameters: masked-out entries must stay exactly at w*.
    w0 = torch.arange(6.0)
    mask = torch.tensor([True, False, True, False, False, True])
    cfg = SGLDConfig(lr=1e-2, n_beta=1.0, gamma=1.0, num_chains=2, num_draws=5)
    res = sample(lambda p, b: (p["w"] ** 2).sum() + p["v"].sum(), {"w": w0, "v": torch.ones(2)}, lambda s: None,
                 cfg, masks={"w": mask}, observables={"w": lambda p: p["w"], "v": lambda p: p["v"]})
    w = res.observables["w"]  # [chains, draws, 6]
    assert torch.equal(w[..., ~mask], w0[~mask].expand(2, 5, 3))
    assert (w[..., mask] != w0[mask]).all()
    assert torch.equal(res.observables["v"], torch.ones(2, 5, 2))
    with pytest.raises(ConfigError, match="masks name"):
        sample(lambda p, b: p["w"].sum(), {"w": w0}, lambda s: None, cfg, masks={"nope": None})


def test_mala_acceptance_high_for_small_steps_low_for_large():
    a, mu = torch.tensor([1.0, 4.0]), torch.zeros(2)
    acc = []
    for eps in (1e-3, 0.3):
        cfg = SGLDConfig(lr=eps, n_beta=1.0, gamma=0.0, num_chains=8, num_draws=200, mala=True)
        acc.append(float(sample(_quadratic(a, mu), {"w": mu.clone()}, lambda s: None, cfg).mala_acceptance_C.mean()))
    assert acc[0] > 0.98 and acc[1] < acc[0] - 0.05


def test_divergence_and_below_initial_warnings():
    # a step size far beyond 2/curvature blows up; starting above the minimum keeps chains below L(w*)
    cfg = SGLDConfig(lr=1.0, n_beta=100.0, gamma=0.0, num_chains=2, num_draws=30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sample(_quadratic(torch.ones(2), torch.zeros(2)), {"w": torch.ones(2)}, lambda s: None, cfg)
    assert res.diverged_C.all() and any("diverged" in str(w.message) for w in caught)
    cfg = SGLDConfig(lr=1e-3, n_beta=100.0, gamma=0.0, num_chains=2, num_draws=50)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = sample(_quadratic(torch.ones(2), torch.zeros(2)), {"w": torch.ones(2)}, lambda s: None, cfg)
    assert not res.diverged_C.any() and (res.below_init_frac_C > 0.9).all()
    assert any("below the initial loss" in m for m in res.warnings)


def test_anchoring_at_the_true_parameter_loses_beta_chi2_over_2():
    # Gaussian mean model, λ = d/2. Anchored at the true mean μ instead of the minimum x̄ of L_n, the
    # estimator is nβ(E_β[L_n] − L_n(μ)) = d/2 − nβ·½‖x̄ − μ‖² (= d/2 − β·χ²_d/2 on average, −1/ln n of
    # λ): the low bias of every estimate taken at a teacher rather than at a minimum of the data's loss.
    d, n = 20, 4000
    gen = torch.Generator().manual_seed(5)
    mu = torch.ones(d, dtype=torch.float64)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) + mu
    loss = lambda p, b: 0.5 * ((b[0] - p["w"]) ** 2).sum(dim=1).mean()
    cfg = SGLDConfig(lr=2e-4, gamma=1.0, num_chains=4, num_draws=800, batch_size=1000, seed=2)
    nb = n / math.log(n)
    gap = nb * 0.5 * float(((x.mean(dim=0) - mu) ** 2).sum())  # 0.70 here (β·d/2 = 1.2 on average)
    at_min = estimate_llc(loss, {"w": x.mean(dim=0)}, shuffled_batches((x,), 1000, 2), cfg)
    at_mu = estimate_llc(loss, {"w": mu}, shuffled_batches((x,), 1000, 2), cfg)
    # (discrete-chain bias εP/4 ≈ +2.4% and the chain noise ≈ 0.15 are within the tolerance)
    assert at_min.llc_mean == pytest.approx(d / 2, abs=0.5)
    # same noise and batches, anchors apart: the difference is the anchor term itself, to a few percent
    assert at_min.llc_mean - at_mu.llc_mean == pytest.approx(gap, rel=0.1)

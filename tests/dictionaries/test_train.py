"""The generic trainer: planted recovery per rule, shared passes, decoder norms, folding, ATM."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from ontogeny.dictionaries.atm import ATMConfig, ATMPolicy
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary, geometric_median
from ontogeny.dictionaries.state import TrainState
from ontogeny.dictionaries.synthetic import PlantedFeatures, max_cosines, mean_max_cosine
from ontogeny.dictionaries.rules import RULES
from ontogeny.dictionaries.train import TrainConfig, train, train_many

torch.set_num_threads(1)

PLANTED = PlantedFeatures(d=24, n_features=48, n_active=3, seed=0)
ATM_CASE = ({"rule": "relu", "l1_coefficient": 0.3}, {"atm": ATMConfig()})


@pytest.mark.parametrize("case", sorted([*RULES, "atm"]))
def test_each_rule_recovers_planted_directions(case, rule_params):
    """48 unit directions in 24 dimensions, 3 active per token: every rule finds them (mean max cos >= 0.9)."""
    kw, tkw = ATM_CASE if case == "atm" else (rule_params[case]["planted"], {})
    kw = {"rule": case, **kw}
    model = Dictionary(DictionaryConfig(d_in=24, d_sae=96, **kw), seed=11)
    before = mean_max_cosine(PLANTED.directions_GD, model.W_dec_FD)
    res = train(model, PLANTED.batches(256, 600), TrainConfig(lr=4e-3, dead_tokens=40_000, **tkw), total_steps=600)
    cos = max_cosines(PLANTED.directions_GD, model.W_dec_FD.detach())
    assert before < 0.6
    assert float(cos.mean()) >= 0.9, (case, float(cos.mean()))
    assert res.final()["fvu"] < 0.25
    if case == "topk":
        assert res.final()["l0"] == 3.0
    if case in ("batchtopk", "matryoshka_batchtopk"):
        x, _ = PLANTED.sample(2000)
        l0 = float((model.encode(x) != 0).float().sum(1).mean())  # inference with the EMA threshold
        assert 1.5 < l0 < 6, l0


def test_train_many_equals_independent_runs():
    """Training two dictionaries on one pass gives bit-identical weights to training each alone."""
    cfgs = [DictionaryConfig(rule="topk", d_in=24, d_sae=64, k=3), DictionaryConfig(rule="relu", d_in=24, d_sae=64)]
    data = list(PLANTED.batches(128, 30))
    shared = [Dictionary(c, seed=i) for i, c in enumerate(cfgs)]
    alone = [copy.deepcopy(m) for m in shared]
    train_many(shared, data, TrainConfig(lr=1e-3))
    for m in alone:
        train(m, data, TrainConfig(lr=1e-3))
    for a, b in zip(shared, alone, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)


def test_train_many_accepts_one_tensor_per_model():
    ms = [Dictionary(DictionaryConfig(rule="topk", d_in=24, d_sae=32, k=2)) for _ in range(2)]
    a, b = list(PLANTED.batches(64, 5, seed=1)), list(PLANTED.batches(64, 5, seed=2))
    res = train_many(ms, list(zip(a, b, strict=True)), TrainConfig(lr=1e-3, log_every=1))
    assert [r.steps for r in res] == [5, 5] and res[0].history[0]["mse"] != res[1].history[0]["mse"]


def test_unit_decoder_rows_stay_unit_and_free_ones_move():
    unit = Dictionary(DictionaryConfig(rule="topk", d_in=24, d_sae=32, k=3))
    free = Dictionary(DictionaryConfig(rule="relu", d_in=24, d_sae=32))
    for m in (unit, free):
        train(m, PLANTED.batches(128, 20), TrainConfig(lr=1e-2))
    assert torch.allclose(unit.W_dec_FD.norm(dim=1), torch.ones(32), atol=1e-5)
    assert (free.W_dec_FD.norm(dim=1) - 1).abs().max() > 1e-3


def test_input_scale_is_folded_into_weights():
    """Trained on x*s with normalize; after folding, the dictionary maps raw x to raw x_hat exactly."""
    scaled = PlantedFeatures(d=24, n_features=48, n_active=3, seed=0, min_mag=5, max_mag=15)
    m = Dictionary(DictionaryConfig(rule="topk", d_in=24, d_sae=64, k=3))
    res = train(m, scaled.batches(128, 50), TrainConfig(lr=3e-3, normalize="expected_average_only_in"))
    x, _ = scaled.sample(500)
    s = res.scale
    assert abs(s * float(x.pow(2).sum(1).mean().sqrt()) - 24 ** 0.5) / 24 ** 0.5 < 0.2
    unfolded = copy.deepcopy(m)
    unfolded.W_enc_DF.data /= s
    unfolded.W_dec_FD.data *= s
    unfolded.b_dec_D.data *= s
    with torch.no_grad():
        assert torch.allclose(m(x), unfolded(x * s) / s, rtol=1e-4, atol=1e-4)
        assert torch.allclose(m.encode(x), unfolded.encode(x * s), rtol=1e-4, atol=1e-4)


def test_geometric_median_matches_numerical_minimiser():
    pts = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)).double()
    pts[:5] += 20  # outliers pull the mean, not the median
    gm = geometric_median(pts, max_iter=500, tol=1e-10).numpy()
    ref = minimize(lambda y: np.linalg.norm(pts.numpy() - y, axis=1).sum(), pts.mean(0).numpy(),
                   method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}).x
    assert np.allclose(gm, ref, atol=1e-4)


def test_atm_importance_threshold_and_mask_probability():
    """With hand-set EMAs the importance, threshold and mask probabilities follow the §4.2 formulas."""
    pol = ATMPolicy(ATMConfig(k_std=0.5, warmup_fraction=0.5, ramp_fraction=0.0), n_latents=4, total_steps=100)
    pol.mag_F[:] = torch.tensor([1.0, 1.0, 1.0, 0.2])
    pol.freq_F[:] = torch.tensor([0.2, 0.2, 0.2, 0.04])
    pol.rec_F[:] = torch.tensor([2.0, 2.0, 2.0, 0.4])
    pol.n_obs = 1
    s = pol.importance()
    assert torch.allclose(s, torch.tensor([1.25, 1.25, 1.25, 0.25]))  # each term is x / mean(x)
    assert torch.equal(pol.mask_probability(10), torch.zeros(4))  # warm-up
    tau = s.mean() - 0.5 * s.std()
    p = pol.mask_probability(60)
    assert torch.allclose(p, torch.tensor([0, 0, 0, float((tau - 0.25) / tau)]))
    vals = torch.ones(4000)
    cols = torch.arange(4).repeat(1000)
    kept = pol.mask(vals, cols, TrainState(step=60, generator=torch.Generator().manual_seed(0)))
    rate = 1 - kept.view(1000, 4).mean(0)
    assert abs(float(rate[3]) - float(p[3])) < 0.05 and float(rate[:3].max()) == 0


def test_atm_observe_computes_exact_ablation_contribution():
    """rec_i is the exact MSE increase from ablating latent i: ||e + a d_i||^2 - ||e||^2, averaged."""
    m = Dictionary(DictionaryConfig(rule="relu", d_in=5, d_sae=7, fast=True), seed=0)
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    pol = ATMPolicy(ATMConfig(), n_latents=7, total_steps=10)
    m.training_loss(x, TrainState(policy=pol, generator=torch.Generator()))
    with torch.no_grad():
        codes = m.encode(x)
        err = x - m.decode(codes)
        brute = torch.stack([((err + codes[:, [i]] * m.W_dec_FD[i]).pow(2).sum(1) - err.pow(2).sum(1)).mean()
                             for i in range(7)])
    assert torch.allclose(pol.rec_F, brute.clamp_min(0), atol=1e-5)
    fired = (codes > 0).float()
    assert torch.allclose(pol.freq_F, fired.mean(0))
    assert torch.allclose(pol.mag_F, codes.sum(0) / fired.sum(0).clamp_min(1), atol=1e-6)


def _hierarchical_batches(truth: Dictionary, n_parents: int, n_children: int, n: int, B: int, seed: int,
                          noise: float = 0.02):
    """Shared firing support: 2 of `n_parents` parents per token, each with one of its children (or none);
    a child fires only with its parent. x = truth.decode(codes) (the real decoder path, with a b_dec
    offset) + Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    P, C = n_parents, n_children
    for _ in range(n):
        par = torch.rand(B, P, generator=gen).topk(2, dim=1).indices
        codes = torch.zeros(B, truth.cfg.d_sae).scatter(1, par, 0.5 + torch.rand(B, 2, generator=gen))
        child = torch.randint(0, C + 1, (B, 2), generator=gen)
        vals = (0.5 + torch.rand(B, 2, generator=gen)) * (child < C)
        codes.scatter_add_(1, P + par * C + child.clamp_max(C - 1), vals)
        with torch.no_grad():  # grad mode is global: leave it before yielding to the trainer
            x = truth.decode(codes) + noise * torch.randn(B, truth.cfg.d_in, generator=gen)
        yield x


@pytest.mark.parametrize("rule, kw", [("batchtopk", {}), ("matryoshka_batchtopk", {"matryoshka_widths": [8, 16]})])
def test_batch_topk_kinds_recover_features_with_shared_support_and_noise(rule, kw):
    """8 parents x 3 children in 32 dimensions, children co-firing with their parent, noise 0.02: parents
    and children are each found (mean max cosine >= 0.75 for each group; an untrained dictionary: < 0.6)."""
    P, C, d = 8, 3, 32
    truth = Dictionary(DictionaryConfig(rule="relu", d_in=d, d_sae=P + P * C), seed=5)
    with torch.no_grad():
        truth.b_dec_D.copy_(0.3 * torch.randn(d, generator=torch.Generator().manual_seed(6)))
    G = truth.W_dec_FD.detach()
    m = Dictionary(DictionaryConfig(rule=rule, d_in=d, d_sae=64, k=4, threshold_start_step=200, **kw), seed=11)
    assert float(max_cosines(G, m.W_dec_FD.detach()).mean()) < 0.6
    res = train(m, _hierarchical_batches(truth, P, C, 600, 256, seed=1), TrainConfig(lr=4e-3, dead_tokens=40_000),
                total_steps=600)
    cos = max_cosines(G, m.W_dec_FD.detach())
    assert float(cos[:P].mean()) >= 0.75 and float(cos[P:].mean()) >= 0.75, (rule, cos[:P].mean(), cos[P:].mean())
    assert res.final()["fvu"] < 0.15

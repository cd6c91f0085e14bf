"""jumprelu's defaults for ontogeny's input scale (E||x||^2 = d_in): the bandwidth 0.001 sqrt(d_in) and
the initial threshold 0.5 (rules/jumprelu.py). Analytic STE gradients at the resolved bandwidth, and a
planted run in which the defaults sparsify within a short budget and the paper's raw values do not."""

from __future__ import annotations

import math

import pytest
import torch

from ontogeny.dictionaries import Dictionary, DictionaryConfig, TrainConfig, Trainer
from ontogeny.dictionaries.synthetic import PlantedFeatures, mean_max_cosine


@pytest.mark.parametrize("d_in", [16, 400])
def test_default_bandwidth_is_paper_value_at_unit_rms_coordinates(d_in):
    rule = Dictionary(DictionaryConfig(rule="jumprelu", d_in=d_in, d_sae=3)).rule
    assert rule.bandwidth == pytest.approx(0.001 * math.sqrt(d_in))
    explicit = DictionaryConfig(rule="jumprelu", d_in=d_in, d_sae=3, jumprelu_bandwidth=0.2)
    assert Dictionary(explicit).rule.bandwidth == 0.2


def test_threshold_gradient_uses_the_resolved_bandwidth():
    """d L0 / d log theta = -(theta/eps) K((pre - theta)/eps) per entry: -25 inside the band (theta 0.5,
    eps 0.02 at d_in 400), 0 outside it; the codes' gradient in theta is -(theta^2/eps) K."""
    rule = Dictionary(DictionaryConfig(rule="jumprelu", d_in=400, d_sae=4)).rule
    theta, eps = 0.5, 0.02
    assert float(rule.threshold_F[0]) == pytest.approx(theta)
    pre = torch.tensor([[theta + 0.009, theta + 0.011, theta - 0.009, theta - 0.3]])
    l0 = rule.penalty(rule(pre), pre, None, None, 1)
    (g_l0,) = torch.autograd.grad(l0, rule.log_threshold_F)
    torch.testing.assert_close(g_l0, torch.tensor([-theta / eps, 0.0, -theta / eps, 0.0]))
    (g_codes,) = torch.autograd.grad(rule(pre).sum(), rule.log_threshold_F)
    torch.testing.assert_close(g_codes, torch.tensor([-theta * theta / eps, 0.0, -theta * theta / eps, 0.0]))


def _train_planted(steps: int, **rule_kw) -> tuple[float, float]:
    """(held-out mean L0, MMCS) after `steps` Adam steps on normalised planted data (3 active of 64)."""
    planted = PlantedFeatures(d=32, n_features=64, n_active=3, noise=0.01, seed=0)
    model = Dictionary(DictionaryConfig(rule="jumprelu", d_in=32, d_sae=128, l0_coefficient=0.5, **rule_kw))
    trainer = Trainer(model, TrainConfig(lr=4e-3, normalize="expected_average_only_in"))
    for x in planted.batches(256, steps, seed=1):
        trainer.step(x)
    trainer.finish()
    x_eval = planted.sample(2048, torch.Generator().manual_seed(9))[0]
    with torch.no_grad():
        l0 = float((model.encode(x_eval) != 0).float().sum(1).mean())
    return l0, mean_max_cosine(planted.directions_GD, model.W_dec_FD.detach())


def test_defaults_sparsify_planted_data_where_the_paper_values_stay_dense():
    l0, mmcs = _train_planted(300)
    assert l0 <= 6 and mmcs >= 0.9, (l0, mmcs)
    l0_paper, _ = _train_planted(300, jumprelu_init_threshold=0.001, jumprelu_bandwidth=0.001)
    assert l0_paper > 3 * l0, (l0_paper, l0)

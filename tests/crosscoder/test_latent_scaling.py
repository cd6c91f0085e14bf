"""Latent Scaling on planted crosscoders: true emergence vs complete shrinkage vs latent decoupling."""

from __future__ import annotations

import numpy as np
import torch

from ontogeny.crosscoding.latent_scaling import diagnose, fit_scales

D, N = 8, 400


def _planted(case: str, seed: int = 0):
    """Two checkpoints; latent 0 decodes only into B (direction e0). Case decides what A holds."""
    g = torch.Generator().manual_seed(seed)
    f0 = torch.rand(N, generator=g) * (torch.rand(N, generator=g) < 0.3)
    f1 = torch.rand(N, generator=g) * (torch.rand(N, generator=g) < 0.5)   # a shared latent on e1
    u0, u1 = torch.eye(D)[0], torch.eye(D)[1]
    W = torch.zeros(3, 2, D)
    W[0, 1] = u0
    W[1, 0] = W[1, 1] = u1
    codes = torch.stack([f0, f1, torch.zeros(N)], dim=1)
    x_B = f0[:, None] * u0 + f1[:, None] * u1
    x_A = f1[:, None] * u1
    if case in ("shrinkage", "decoupling"):
        x_A = x_A + f0[:, None] * u0          # A carries the concept too
    if case == "decoupling":
        W[2, 0] = u0                          # ... reconstructed in A by another latent firing with it
        codes[:, 2] = f0
    acts = torch.stack([x_A, x_B], dim=1)
    recon = torch.einsum("nf,fkd->nkd", codes, W)
    return acts, codes, recon, W


def _run(case):
    acts, codes, recon, W = _planted(case)
    s = fit_scales(acts, codes, recon, W, [0])
    flags = diagnose(s, W[[0]].norm(dim=-1).numpy())
    return s, flags


def test_true_emergence_is_confirmed():
    s, flags = _run("emergence")
    assert s["ref"][0] == 1
    np.testing.assert_allclose(s["beta_eps"][0], [0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(s["nu_eps"][0], [0.0, 1.0], atol=1e-9)
    assert flags["confirmed"][0] and not flags["shrinkage"][0] and not flags["decoupling"][0]


def test_complete_shrinkage_is_flagged():
    s, flags = _run("shrinkage")
    np.testing.assert_allclose(s["nu_eps"][0, 0], 1.0, atol=1e-9)   # all of it sits in A's error
    assert flags["shrinkage"][0] and not flags["confirmed"][0]


def test_latent_decoupling_is_flagged():
    s, flags = _run("decoupling")
    np.testing.assert_allclose(s["beta_rec"][0, 0], 1.0, atol=1e-9)   # another latent rebuilds it in A
    assert flags["decoupling"][0] and not flags["shrinkage"][0] and not flags["confirmed"][0]


def test_beta_matches_least_squares_reference():
    acts, codes, recon, W = _planted("shrinkage", seed=3)
    acts = acts + 0.05 * torch.randn(acts.shape, generator=torch.Generator().manual_seed(1))
    s = fit_scales(acts, codes, recon, W, [0, 1])
    for row, j in enumerate([0, 1]):
        ref = int(s["ref"][row])
        d = W[j, ref].double()
        for m in range(2):
            y = (acts[:, m] - recon[:, m] + codes[:, j, None] * W[j, m]).double()
            a_col = (codes[:, j].double()[:, None] * d[None]).reshape(-1, 1)
            beta = torch.linalg.lstsq(a_col, y.reshape(-1, 1)).solution.item()
            assert abs(beta - s["beta_eps"][row, m]) < 1e-8

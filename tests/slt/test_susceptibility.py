"""Susceptibilities against the fluctuation–dissipation identity on Gaussian posteriors, brute-force
covariances and the linearity that ties per-token values to the dataset-level one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ontogeny.errors import ConfigError
from ontogeny.slt.llc import llc_from_samples
from ontogeny.slt.sgld import SGLDConfig, sample
from ontogeny.slt.susceptibility import ComponentDraws, per_token_chi, response_pca


def _gaussian_draws(a, mu, b_NI, nu_NI, cfg):
    """SGLD on L_q = ½Σa(w−μ)² from w* = μ, recording L_q and per-'token' probe losses ℓ_n = ½Σ b_n(w−ν_n)²."""
    loss = lambda p, batch: 0.5 * (a * (p["w"] - mu) ** 2).sum()
    obs = {"base": lambda p: 0.5 * (a * (p["w"] - mu) ** 2).sum(),
           "probe": lambda p: 0.5 * (b_NI * (p["w"] - nu_NI) ** 2).sum(dim=1)}
    res = sample(loss, {"w": mu.clone()}, lambda s: None, cfg, observables=obs)
    return ComponentDraws("full", len(mu), 0.0, res.observables["base"].double(),
                          {"p": res.observables["probe"].double()}, llc_from_samples(res, cfg.n_beta))


def test_per_token_chi_matches_fluctuation_dissipation_analytics():
    # Posterior ∝ exp(−nβL_q − γ/2‖w−μ‖²) is Gaussian (the discrete chain's: s² = 1/(P(1−εP/4)), P = nβa+γ).
    # χ_n = −Cov(φ, ℓ_n − L_q) with φ = L_q − L_q(w*) = ½Σ a z², z = w − μ, so χ_n = −Σ_i ½ a_i (b_ni − a_i) s_i⁴.
    torch.manual_seed(0)
    a = torch.tensor([0.5, 1.0, 2.0])
    mu = torch.tensor([0.2, -0.1, 0.4])
    b_NI = torch.tensor([[2.0, 2.0, 2.0], [0.1, 0.1, 0.1], [4.0, 4.0, 0.5], [0.5, 1.0, 2.0]])
    nu_NI = torch.randn(4, 3)
    nb, gam, eps = 10.0, 1.0, 1e-2
    cfg = SGLDConfig(lr=eps, n_beta=nb, gamma=gam, num_chains=32, num_draws=4000, num_burnin_steps=200, seed=1)
    draws = _gaussian_draws(a, mu, b_NI, nu_NI, cfg)
    chi = per_token_chi(draws, "p", centring="covariance")
    p = nb * a + gam
    s4 = (1 / (p * (1 - eps * p / 4))) ** 2
    truth = -(0.5 * a * (b_NI - a) * s4).sum(dim=1).double()
    assert truth[3] == 0  # probe identical to the base distribution: no response
    torch.testing.assert_close(chi, truth, atol=0.08 * truth.abs().max(), rtol=0.1)
    big = truth.abs() > 0.2 * truth.abs().max()
    assert big.sum() >= 2 and torch.equal(torch.sign(chi[big]), torch.sign(truth[big]))


def test_centrings_against_brute_force_numpy():
    gen = torch.Generator().manual_seed(0)
    mk = lambda: ComponentDraws("x", 1, 1.0, 1 + 0.1 * torch.randn(3, 50, generator=gen, dtype=torch.float64),
                                {"p": 2 + torch.randn(3, 50, 7, generator=gen, dtype=torch.float64)}, None)
    comp, full = mk(), mk()
    phi = comp.phi_CD.flatten().numpy()
    base = comp.base_CD.flatten().numpy()
    ell = comp.probe_CDN["p"].flatten(0, 1).numpy()
    cov = [-np.cov(phi, ell[:, n] - base, bias=True)[0, 1] for n in range(7)]
    torch.testing.assert_close(per_token_chi(comp, "p", centring="covariance"), torch.tensor(cov, dtype=torch.float64))
    # devinterp: E[φL] − E[φℓ] − E[φ]·(mean_full L − mean_full ℓ)
    fb, fl = full.base_CD.mean().item(), full.probe_CDN["p"].mean(dim=(0, 1)).numpy()
    dev = [(phi * base).mean() - (phi * ell[:, n]).mean() - phi.mean() * (fb - fl[n]) for n in range(7)]
    torch.testing.assert_close(per_token_chi(comp, "p", full, "devinterp"), torch.tensor(dev, dtype=torch.float64))
    # the two agree when the full run's means equal the component's own
    torch.testing.assert_close(per_token_chi(comp, "p", comp, "devinterp"), per_token_chi(comp, "p", centring="covariance"))
    with pytest.raises(ConfigError, match="full-model run"):
        per_token_chi(comp, "p", None, "devinterp")


def test_dataset_level_equals_mean_of_per_token():
    # χ_{q'} = −Cov(φ, L_{q'} − L_q) with L_{q'} the probe set's mean loss equals the mean of per-token χ.
    gen = torch.Generator().manual_seed(1)
    comp = ComponentDraws("x", 1, 0.5, torch.randn(4, 40, generator=gen, dtype=torch.float64),
                          {"p": torch.randn(4, 40, 9, generator=gen, dtype=torch.float64)}, None)
    per_tok = per_token_chi(comp, "p", centring="covariance")
    phi = comp.phi_CD.flatten().numpy()
    probe_mean = comp.probe_CDN["p"].mean(dim=2).flatten().numpy()
    direct = -np.cov(phi, probe_mean - comp.base_CD.flatten().numpy(), bias=True)[0, 1]
    assert per_tok.mean().item() == pytest.approx(direct, rel=1e-10)
    assert per_tok.sum().item() == pytest.approx(9 * direct, rel=1e-10)


def test_response_pca_recovers_planted_rank_two_structure():
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(200, 2, generator=gen, dtype=torch.float64) * torch.tensor([5.0, 2.0], dtype=torch.float64)
    v = torch.linalg.qr(torch.randn(8, 2, generator=gen, dtype=torch.float64))[0]
    x = u @ v.T + 0.01 * torch.randn(200, 8, generator=gen, dtype=torch.float64) + 3.0  # offset removed by centring
    pca = response_pca(x)
    assert pca.explained_ratio[:2].sum() > 0.999
    # the leading two loadings span the planted column space
    proj = v @ (v.T @ pca.loadings_KR[:, :2])
    torch.testing.assert_close(proj, pca.loadings_KR[:, :2], atol=1e-3, rtol=0)
    assert pca.explained_ratio.sum().item() == pytest.approx(1.0)


def test_head_separation_uses_the_named_heads_and_says_when_none_pass():
    from ontogeny.slt.tables import head_separation

    # heads named by the census (not by their score here: the census decides), loadings planted
    heads = [{"component": c, "induction_score": s, "pc1": p}
             for c, s, p in (("l0h0", 0.05, -1.0), ("l0h1", 0.1, -0.8), ("l1h0", 0.6, 2.0), ("l1h1", 0.2, -0.2))]
    row = head_separation(heads, ["l1h0"], 0.3)[0]
    load = torch.tensor([-1.0, -0.8, 2.0, -0.2], dtype=torch.float64)
    a, b = load[2:3], load[[0, 1, 3]]
    pooled = ((a.var(unbiased=False) * 1 + b.var(unbiased=False) * 3) / 4).sqrt()
    assert row["standardised_gap"] == pytest.approx(float((a.mean() - b.mean()) / pooled))
    from scipy.stats import spearmanr

    assert row["spearman_induction"] == pytest.approx(spearmanr([0.05, 0.1, 0.6, 0.2], load.numpy()).statistic)
    assert row["n_induction_heads"] == 1 and row["induction_heads"] == "l1h0" and row["note"] == "none"
    none = head_separation(heads, [], 0.3)[0]
    assert none["standardised_gap"] is None and none["induction_heads"] == "none passed"
    assert "no head passed the census induction threshold 0.3" in none["note"]


def test_calibrated_sweep_samples_every_component_at_the_chosen_settings(tiny_series_dir, tmp_path):
    """With `calibration` set, the sweep chooses ε, γ on the full model (the LLC's procedure) and runs every
    component there: the head's refined LLC equals an independent run of the same sampler at those settings."""
    import pyarrow.parquet as pq

    from ontogeny.series.corpus import CorpusConfig, build_corpus
    from ontogeny.series.load import load_series
    from ontogeny.slt.calibrate import CalibrationConfig
    from ontogeny.slt.pipeline import susceptibility_run
    from ontogeny.slt.susceptibility import SusceptibilityConfig, sample_component, token_sets_from_corpus

    series = load_series(tiny_series_dir)
    model, corpus = series.model(4), build_corpus(seed=0, config=CorpusConfig.tiny())
    # loose criteria so both grid points pass and agree (a plateau): the rule then takes the smaller ε. The
    # checkpoint is not a minimum: a small nβ under a strong γ keeps the chains' estimates positive (noise
    # term tr(H)/2γ above the descent nβ|g|²/γ); no burn-in detection, so no point is "unsettled".
    cal = CalibrationConfig(lrs=[1e-3, 3e-3], gammas=[300.0], num_chains=2, num_draws=20, min_acceptance=1e-6,
                            half_tol=1e3, max_below_frac=1.0, plateau_tol=1e3, max_extensions=0)
    cfg = SusceptibilityConfig(sgld=SGLDConfig(lr=0.5, gamma=1.0, n_beta=1.0, num_chains=2, num_draws=6,
                                               detect_burnin=False, batch_size=4),
                               components=["l0h1", "l1h0"], probe_kinds=["prose"],
                               ctx=32, n_sampling_seqs=16, n_base_seqs=2, n_probe_seqs=2, calibration=cal)
    res = susceptibility_run(model, series.tokenizer, cfg, tmp_path, 4, corpus=corpus)
    grid = pq.read_table(tmp_path / "tables" / "susceptibility_calibration.parquet").to_pylist()
    assert [(r["lr"], r["chosen"]) for r in grid] == [(1e-3, True), (3e-3, False)]
    assert res["sgld"]["lr"] == 1e-3 and res["sgld"]["gamma"] == 300.0 and res["sgld"]["calibrated"]
    comps = {r["component"]: r for r in pq.read_table(tmp_path / "tables" / "susceptibility_components.parquet").to_pylist()}
    assert {(r["lr"], r["gamma"]) for r in comps.values()} == {(1e-3, 300.0)}
    sampling, base, probes = token_sets_from_corpus(series.tokenizer, cfg, corpus=corpus)
    direct = sample_component(model, "l0h1", sampling, base, probes,
                              cfg.sgld.model_copy(update={"lr": 1e-3, "gamma": 300.0}))
    assert comps["l0h1"]["llc_mean"] == pytest.approx(direct.llc.llc_mean, rel=1e-9)
    assert (tmp_path / "figures" / "susceptibility_calibration.json").stat().st_size > 0


def test_per_head_llc_is_the_same_estimate_in_the_llc_curve_and_the_sweep(tiny_series_dir):
    """One sampler: a head's refined LLC from `llc_rows` (ontogeny llc --components) equals the one the
    susceptibility sweep records for that head, given the same settings, token ids and seed (the sweep's
    observables do not touch the chain)."""
    from ontogeny.series.corpus import CorpusConfig, build_corpus
    from ontogeny.series.load import load_series
    from ontogeny.slt.pipeline import llc_rows
    from ontogeny.slt.susceptibility import SusceptibilityConfig, sample_component, token_sets_from_corpus

    series = load_series(tiny_series_dir)
    model = series.model(4)
    cfg = SusceptibilityConfig(sgld=SGLDConfig(lr=1e-3, n_beta=30.0, num_chains=2, num_draws=25, num_burnin_steps=3,
                                               batch_size=4), probe_kinds=["prose"], ctx=32, n_sampling_seqs=16,
                               n_base_seqs=2, n_probe_seqs=2)
    sampling, base, probes = token_sets_from_corpus(series.tokenizer, cfg, corpus=build_corpus(
        seed=0, config=CorpusConfig.tiny()))
    sweep = sample_component(model, "l1h0", sampling, base, probes, cfg.sgld).llc
    row = llc_rows(model, sampling, cfg.sgld, ["l1h0"], 4)[0]
    assert row["llc_mean"] == pytest.approx(sweep.llc_mean, rel=1e-9)
    assert (row["llc_std"], row["burnin_draws"], row["n_beta"]) == pytest.approx(
        (sweep.llc_std, sweep.n_burnin_draws, sweep.n_beta), rel=1e-9)

"""Per-component susceptibilities χ = −Cov(φ_C, L_{q'} − L_q) and per-token susceptibilities of an LM.

Baker, Wang, Hoogland & Murfet 2025 ("Studying small language models with susceptibilities", arXiv
2504.18274). For each component C (a head, or `full`) SGLD samples only C's weights around w*; at every
draw the per-token losses of fixed token sets are recorded: the base set (L_q, "pretraining") and one set
per probe q'. With φ_C = L_q(w) − L_q(w*):
    χ^C_xy = −Cov_C(φ_C, ℓ_xy − L_q)   (per token; negative = C expresses the continuation)
    χ^C_{q'} = mean over the probe's tokens of χ^C_xy   (the dataset-level value, by linearity)
Two centrings (a documented option): `covariance` is the true covariance over the component's own
draws; `devinterp` reproduces devinterp 2.0.1's `compute_susceptibilities`, whose centring term uses the
means of the *full-model* run: χ = E[φ L_q] − E[φ ℓ] − E[φ]·(Ē_full[L_q] − Ē_full[ℓ]).
No nβ or 1/δh factor is applied (as devinterp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ontogeny.errors import ConfigError
from ontogeny.slt.calibrate import CalibrationConfig
from ontogeny.slt.heads import component_masks, head_names, n_selected
from ontogeny.slt.llc import LLCResult, llc_from_samples
from ontogeny.slt.lm import eager_attention, lm_batches, lm_loss_fn, model_params, token_loss_observable
from ontogeny.slt.sgld import SGLDConfig, sample

Centring = Literal["devinterp", "covariance"]


def _default_sgld() -> SGLDConfig:
    return SGLDConfig(lr=1e-3, n_beta=30.0, gamma=300.0, num_chains=4, num_draws=100, batch_size=16)


class SusceptibilityConfig(BaseModel):
    """A susceptibility sweep: SGLD settings (paper: ε 1e-3, nβ 30, γ 300, 4 chains), token sets, centring."""

    model_config = ConfigDict(extra="forbid")

    sgld: SGLDConfig = Field(default_factory=_default_sgld)
    centring: Centring = Field("devinterp", description="'devinterp' (full-run centring) or 'covariance'")
    components: list[str] | None = Field(None, description="restrictions (default: every head)")
    ctx: int = Field(64, ge=2, description="tokens per sequence")
    n_sampling_seqs: int = Field(256, ge=1, description="sequences in the SGLD minibatch pool (base kind)")
    n_base_seqs: int = Field(8, ge=1, description="fixed base-observable sequences (L_q)")
    n_probe_seqs: int = Field(8, ge=1, description="fixed sequences per probe")
    base_kind: str = Field("code", description="corpus kind of the base distribution q")
    probe_kinds: list[str] = Field(default_factory=lambda: ["prose", "tests", "docstrings", "synthetic"])
    seed: int = Field(0, description="seed of the token-set sampling")
    calibration: CalibrationConfig | None = Field(
        None, description="choose ε and γ first on the full model and the sampling set (CalibrationConfig, "
        "the same procedure as `ontogeny llc --calibrate`); every component is then sampled at the chosen "
        "settings; None: use sgld as given")


@dataclass
class ComponentDraws:
    """One component's SGLD run: φ, the base loss and each probe's per-token losses at every draw."""

    component: str
    n_params: int
    base_init: float  # L_q(w*) on the base observable set
    base_CD: torch.Tensor  # mean base-set loss per (chain, draw)
    probe_CDN: dict[str, torch.Tensor]  # per-token probe losses per (chain, draw), tokens flattened
    llc: LLCResult

    @property
    def phi_CD(self) -> torch.Tensor:
        return self.base_CD - self.base_init


def sample_component(model: nn.Module, component: str, sampling_ids: torch.Tensor, base_ids: torch.Tensor,
                     probe_ids: Mapping[str, torch.Tensor], sgld: SGLDConfig,
                     on_step: Callable[[int], None] | None = None) -> ComponentDraws:
    """Run SGLD restricted to `component` and record the observables of the susceptibility estimator."""
    masks = component_masks(model, component)
    params = model_params(model)
    names = ["__base__", *probe_ids]
    sets = {"__base__": base_ids, **probe_ids}
    was_training = model.training
    model.eval()
    with eager_attention(model):
        obs = {k: token_loss_observable(model, sets[k]) for k in names}
        with torch.no_grad():
            base_init = float(obs["__base__"](params).double().mean())
        res = sample(lm_loss_fn(model), params, lm_batches(sampling_ids, sgld), sgld,
                     masks=masks, observables=obs, on_step=on_step)
    model.train(was_training)
    # the detected burn-in draws are dropped from the observables as from the LLC (same sampler, same rule)
    base_CD = res.kept(res.observables["__base__"]).double().flatten(2).mean(dim=2)
    probe = {k: res.kept(res.observables[k]).double().flatten(2) for k in probe_ids}
    return ComponentDraws(component, n_selected(model, masks), base_init, base_CD, probe,
                          llc_from_samples(res, tol=sgld.convergence_tol))


def per_token_chi(draws: ComponentDraws, probe: str, centre: ComponentDraws | None = None,
                  centring: Centring = "covariance") -> torch.Tensor:
    """χ per probe token [N]: E[φ L_q] − E[φ ℓ_n] − E[φ]·(m_q − m_n), m from `centre` (devinterp) or own draws."""
    phi = draws.phi_CD.flatten()  # [S] samples = chains × draws
    base = draws.base_CD.flatten()
    ell_SN = draws.probe_CDN[probe].flatten(0, 1)
    if centring == "covariance":
        ref_base, ref_ell = base.mean(), ell_SN.mean(dim=0)
    elif centring == "devinterp":
        if centre is None:
            raise ConfigError("centring='devinterp' needs the full-model run as `centre`")
        ref_base, ref_ell = centre.base_CD.mean(), centre.probe_CDN[probe].flatten(0, 1).mean(dim=0)
    else:
        raise ConfigError(f"centring must be 'devinterp' or 'covariance', got {centring!r}")
    return (phi * base).mean() - (phi[:, None] * ell_SN).mean(dim=0) - phi.mean() * (ref_base - ref_ell)


@dataclass
class SusceptibilityResult:
    """Per-token and dataset-level susceptibilities of every component, with each run's refined LLC."""

    components: list[str]
    probes: list[str]
    chi_tokens: dict[str, torch.Tensor]  # probe -> [components, tokens]
    token_ids: dict[str, torch.Tensor]  # probe -> [seqs, ctx] ids the tokens come from
    llc: dict[str, LLCResult]
    n_params: dict[str, int]
    centring: str
    warnings: list[str] = field(default_factory=list)

    @property
    def response_PK(self) -> torch.Tensor:
        """Dataset-level response matrix [probes, components]: the mean per-token χ of each probe."""
        return torch.stack([self.chi_tokens[p].mean(dim=1) for p in self.probes])

    def token_matrix(self) -> tuple[torch.Tensor, list[str]]:
        """Token-level response matrix [tokens, components] (all probes stacked) and each row's probe."""
        rows = torch.cat([self.chi_tokens[p].T for p in self.probes])
        labels = [p for p in self.probes for _ in range(self.chi_tokens[p].shape[1])]
        return rows, labels


def susceptibility_sweep(model: nn.Module, sampling_ids: torch.Tensor, base_ids: torch.Tensor,
                         probe_ids: Mapping[str, torch.Tensor], config: SusceptibilityConfig,
                         on_component: Callable[[str], None] | None = None,
                         on_step: Callable[[int], None] | None = None) -> SusceptibilityResult:
    """Sample the full model (for centring and the whole-model LLC) and every component; return all χ."""
    comps = config.components or head_names(model)
    if "full" in comps:
        comps = [c for c in comps if c != "full"]
    runs: dict[str, ComponentDraws] = {}
    for comp in ["full", *comps]:
        runs[comp] = sample_component(model, comp, sampling_ids, base_ids, probe_ids, config.sgld, on_step)
        if on_component is not None:
            on_component(comp)
    probes = list(probe_ids)
    chi = {p: torch.stack([per_token_chi(runs[c], p, runs["full"], config.centring) for c in comps])
           for p in probes}
    msgs = [f"{c}: {m}" for c, r in runs.items() for m in r.llc.warnings]
    return SusceptibilityResult(comps, probes, chi, {p: probe_ids[p] for p in probes},
                                {c: r.llc for c, r in runs.items()}, {c: r.n_params for c, r in runs.items()},
                                config.centring, msgs)


@dataclass
class PCA:
    """PCA of a matrix by SVD after column centring (the paper's standardisation, a PROPOSAL)."""

    explained_ratio: torch.Tensor  # [R]
    scores_MR: torch.Tensor  # rows in PC coordinates
    loadings_KR: torch.Tensor  # columns' weights on each PC (right singular vectors)
    singular_values: torch.Tensor


def response_pca(x_MK: torch.Tensor, center: bool = True) -> PCA:
    """SVD of the (column-centred) response matrix: explained variance ratios, row scores, column loadings."""
    x = x_MK.double()
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    # fix signs so each loading vector's largest entry is positive (deterministic output)
    sign = torch.sign(vh[torch.arange(vh.shape[0]), vh.abs().argmax(dim=1)])
    sign[sign == 0] = 1
    u, vh = u * sign, vh * sign[:, None]
    var = s ** 2
    return PCA(var / var.sum().clamp_min(1e-300), u * s, vh.T, s)


def token_sets_from_corpus(tokenizer, config: SusceptibilityConfig, corpus_seed: int = 0,
                           corpus=None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(sampling ids from the base kind's train split, base and probe ids from the eval split), [seqs, ctx]."""
    from ontogeny.series.corpus import build_corpus
    from ontogeny.series.capture import pack_tokens

    corpus = corpus if corpus is not None else build_corpus(seed=corpus_seed)
    train, ev = corpus.by_kind("train"), corpus.by_kind("eval")
    for k in [config.base_kind, *config.probe_kinds]:
        if k not in ev or not ev[k]:
            raise ConfigError(f"corpus kind {k!r} has no eval documents (kinds: {sorted(ev)})")
    text = lambda docs: [d.text for d in docs]
    s = config.seed
    sampling = pack_tokens(tokenizer, text(train[config.base_kind]), config.n_sampling_seqs, config.ctx, s)
    base = pack_tokens(tokenizer, text(ev[config.base_kind]), config.n_base_seqs, config.ctx, s + 1)
    probes = {k: pack_tokens(tokenizer, text(ev[k]), config.n_probe_seqs, config.ctx, s + 2 + i)
              for i, k in enumerate(config.probe_kinds)}
    return sampling, base, probes

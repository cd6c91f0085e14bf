"""An acausal crosscoder over K checkpoints: per-checkpoint encoders into one latent space, per-checkpoint
decoders; a source of the generic trainer (`dictionaries.train`), with an activation rule from `RULES`.

Bayazit et al. 2025 ("Crosscoding Through Time"; authors' crosscoder.py after Anthropic's crosscoders
and ckkissane's replication):

    pre = sum_m x_m W_enc[m] + b_enc,   codes = rule(pre),   x_hat_m = codes W_dec[:, m] + b_dec[m]
    L1 loss  = mean_b sum_m ||x_m - x_hat_m||^2 + lambda * mean_b sum_i a_i sum_m ||W_dec[i, m]||
    BatchTopK = keep the k*B largest a_i * sum_m ||W_dec[i, m]|| of the batch (inference: a threshold),
                loss = reconstruction + alpha * aux-k on dead latents (no L1).

W_dec starts N(0, 1) with every (latent, checkpoint) row at norm `dec_init_norm` (0.08); W_enc is its
transpose; biases 0. Inputs are scaled per checkpoint by s_m = sqrt(D) / mean ||x_m|| during training
(`estimate_scales`), and `fold_input_scales` writes s into the weights afterwards so the crosscoder reads
raw activations; `scale_K` keeps s so `normalised_decoder_norms` recovers the unfolded norms, the space
in which the paper computes RelDec.

Two departures, both parameters: the L1 weight is scaled by sqrt(D / l1_reference_width) (lambda is the
authors' value at their width 2048; `CrossCoderConfig.l1_scale` says why), and a BatchTopK-kind crosscoder
can choose its own k during training by a descending search (`k_search_phase_steps`, `ksearch.KSearch`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from torch import nn

from ontogeny.dictionaries.config import DictionaryConfig, RuleName, rule_fields
from ontogeny.dictionaries.ksearch import KSearch
from ontogeny.dictionaries.rules import RULES, Rule, make_rule
from ontogeny.dictionaries.rules.aux_k import aux_codes, aux_loss, aux_size
from ontogeny.dictionaries.saelens_io import CFG_FILE, WEIGHTS_FILE, read_folder, write_folder
from ontogeny.dictionaries.state import StepOutput, TrainState
from ontogeny.errors import ConfigError, StoreError

WEIGHTS = WEIGHTS_FILE
CFG = CFG_FILE


def _crosscoder_rule_fields() -> dict:
    """The registry's rule fields; the L1 weight defaults to the crosscoder authors' 2.0 (SAE: 5.0)."""
    fields = dict(rule_fields())
    ann, info = fields["l1_coefficient"]
    info = copy.copy(info)
    info.default = 2.0
    fields["l1_coefficient"] = (ann, info)
    return fields


class CrossCoderBase(BaseModel):
    """Shape of a crosscoder, its k schedule and init; the rule's own fields come from the registry."""

    model_config = ConfigDict(extra="forbid")

    n_sources: int = Field(..., ge=1, description="K: number of checkpoints stacked in each input")
    d_in: int = Field(..., gt=0, description="D: width of one checkpoint's activation")
    d_sae: int = Field(..., gt=0, description="F: number of shared latents")
    rule: RuleName = Field("relu", description="activation rule from the registry (relu + decoder-norm-"
                                               "weighted L1, the paper's; batchtopk; ...)")
    k_init: int | None = Field(None, gt=0, description="k rules: k at step 0 (authors: 1000), annealed to k")
    k_anneal_steps: int = Field(0, ge=0, description="k rules: steps of linear k annealing (authors: 5000)")
    dec_init_norm: float = Field(0.08, gt=0, description="initial norm of every decoder row d_{i,m}")
    l1_reference_width: int | None = Field(2048, gt=0, description="relu: l1_coefficient is meant at this "
                                           "input width (the authors' d_model 2048); the penalty is scaled by "
                                           "sqrt(d_in / l1_reference_width). None: no scaling")
    k_search_phase_steps: int = Field(0, ge=0, description="k rules: steps per phase of the descending k search "
                                      "(KSearch; 0 = k fixed). Starts at k, halves it, then bisects")
    k_search_max_phases: int = Field(12, gt=0, description="k rules: at most this many search phases")
    k_search_rel_tol: float = Field(0.1, ge=0, description="k search: a smaller k is accepted while its FVU "
                                    "<= (1 + rel_tol) * best accepted FVU + abs_tol")
    k_search_abs_tol: float = Field(0.005, ge=0, description="k search: absolute FVU slack (see rel_tol)")
    k_search_max_frac: float = Field(0.85, gt=0, le=1, description="k search: stops (at the smallest accepted k) "
                                     "once this share of the training steps is spent")
    k_search_plateau: float = Field(0.05, ge=0, lt=1, description="k search: a phase ends when a window's "
                                    "FVU improves on the previous window's by less than this (relative)")

    @model_validator(mode="after")
    def _check(self):
        try:
            self.rule_config(clamp=False)
        except ConfigError as e:
            raise ConfigError(f"crosscoder {e}") from e
        if self.k_search_phase_steps and self.k_anneal_steps:
            raise ConfigError("crosscoder: k_search_phase_steps and k_anneal_steps cannot both be set")
        return self

    def l1_scale(self) -> float:
        """sqrt(d_in / l1_reference_width) (1 without a reference): the width factor of the L1 penalty.

        Why: inputs are normalised to mean norm sqrt(D), so the reconstruction term grows like D while the
        decoder-norm-weighted L1 term grows like sqrt(D); a fixed lambda shrinks a feature of relative size
        c/||x|| by lambda / (2 c), i.e. relatively more the narrower the input. At D = 24 the authors' lambda
        = 2 (meant at D = 2048) is ~9x stronger than theirs and loses single-checkpoint features
        (docs/crosscoder.md). The factor keeps the authors' trade-off at any width."""
        return 1.0 if self.l1_reference_width is None else (self.d_in / self.l1_reference_width) ** 0.5

    def rule_config(self, k: int | None = None, clamp: bool = True) -> DictionaryConfig:
        """The `DictionaryConfig` the shared activation rule reads (the decoder stays free)."""
        fields = {name: getattr(self, name) for name in rule_fields()}
        k = k or self.k
        fields["k"] = min(k, self.d_sae) if clamp else k
        return DictionaryConfig(rule=self.rule, d_in=self.n_sources * self.d_in, d_sae=self.d_sae, **fields,
                                decoder_norm="free", apply_b_dec_to_input=False, fast=False)


CrossCoderConfig = create_model("CrossCoderConfig", __base__=CrossCoderBase, __module__=__name__,
                                **_crosscoder_rule_fields())
CrossCoderConfig.__doc__ = "Shape and sparsity of a crosscoder (defaults: the authors' L1 crosscoder)."


class CrossCoder(nn.Module):
    """A crosscoder over K stacked checkpoints (see module docstring); inputs are [B, K, D]."""

    def __init__(self, cfg: CrossCoderConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        K, D, F = cfg.n_sources, cfg.d_in, cfg.d_sae
        gen = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(F, K, D, generator=gen)
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True) * cfg.dec_init_norm
        self.W_dec_FKD = nn.Parameter(W_dec)
        self.W_enc_KDF = nn.Parameter(W_dec.permute(1, 2, 0).contiguous())
        self.b_enc_F = nn.Parameter(torch.zeros(F))
        self.b_dec_KD = nn.Parameter(torch.zeros(K, D))
        self.register_buffer("scale_K", torch.ones(K))
        self.rule: Rule = make_rule(cfg.rule_config(cfg.k_init if cfg.k_anneal_steps else None))
        self.k_search = KSearch(cfg) if cfg.k_search_phase_steps and self.rule.reads("k") else None

    @property
    def n_latents(self) -> int:
        return self.cfg.d_sae

    # ----------------------------------------------------------------- inference (plain reference)
    def _check_input(self, x_BKD: torch.Tensor) -> None:
        want = (self.cfg.n_sources, self.cfg.d_in)
        if x_BKD.dim() != 3 or tuple(x_BKD.shape[1:]) != want:
            raise ConfigError(f"crosscoder input must be [B, {want[0]}, {want[1]}], got {tuple(x_BKD.shape)}")

    def pre_activations(self, x_BKD: torch.Tensor) -> torch.Tensor:
        """sum_m x_m W_enc[m] + b_enc: [B, F]."""
        self._check_input(x_BKD)
        return torch.einsum("bkd,kdf->bf", x_BKD, self.W_enc_KDF) + self.b_enc_F

    def rank_weights(self) -> torch.Tensor:
        """sum_m ||d_{i,m}|| in the normalised space (what the L1 term and BatchTopK's ranking weigh)."""
        return self.normalised_decoder_norms().sum(-1)

    def normalised_decoder_norms(self) -> torch.Tensor:
        """||d_{i,m}|| [F, K] as trained (unfolded): folded norms times s_m."""
        return self.W_dec_FKD.norm(dim=-1) * self.scale_K

    def codes_from_pre(self, pre_BF: torch.Tensor) -> torch.Tensor:
        """The activation rule; rules that rank latents (top-k kinds) rank pre-activations weighted by the
        summed decoder norms, as the paper's BatchTopK does."""
        if not self.rule.ranks_latents:
            return self.rule(pre_BF)
        w_F = self.rank_weights().detach().clamp_min(1e-12)
        return self.rule(pre_BF * w_F) / w_F

    def encode(self, x_BKD: torch.Tensor) -> torch.Tensor:
        """Shared codes [B, F] of a stack of K activations."""
        return self.codes_from_pre(self.pre_activations(x_BKD))

    def decode(self, codes_BF: torch.Tensor) -> torch.Tensor:
        """Per-checkpoint reconstructions [B, K, D]."""
        return torch.einsum("bf,fkd->bkd", codes_BF, self.W_dec_FKD) + self.b_dec_KD

    def forward(self, x_BKD: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x_BKD))

    # ----------------------------------------------------------------- training contract (state.py)
    def training_loss(self, x_BKD: torch.Tensor, state: TrainState) -> StepOutput:
        """Reconstruction summed over checkpoints (one term per nested prefix of the rule) + the rule's
        coefficient * penalty (L1 weighted by summed decoder norms for relu) + aux-k for aux-k rules."""
        self._check_input(x_BKD)
        B = x_BKD.shape[0]
        if self.cfg.k_anneal_steps and self.rule.reads("k"):
            self.rule.cfg = self.rule.cfg.model_copy(update={"k": self._annealed_k(state.step)})
        if self.k_search is not None:
            self.k_search.apply(self.rule)
        pre_BF = self.pre_activations(x_BKD)
        codes_BF = self.codes_from_pre(pre_BF)
        recon_BKD = self.decode(codes_BF)
        err_BKD = x_BKD - recon_BKD
        mse_K = err_BKD.pow(2).sum(-1).mean(0)
        mse = mse_K.sum()
        w_F = self.rank_weights()
        penalty = self.rule.penalty(codes_BF, pre_BF, None, w_F, B)
        coef = self.rule.coefficient() * (self.cfg.l1_scale() if self.rule.penalty_uses_decoder_norm else 1.0)
        loss = mse + state.sparsity_scale * coef * penalty
        metrics = {"mse": mse.detach(), "penalty": penalty.detach()}
        for w in self.rule.prefix_widths()[:-1]:  # nested prefixes (matryoshka rules)
            part_BKD = torch.einsum("bf,fkd->bkd", codes_BF[:, :w], self.W_dec_FKD[:w]) + self.b_dec_KD
            part = (x_BKD - part_BKD).pow(2).sum((-1, -2)).mean()
            loss = loss + part
            metrics[f"mse_prefix_{w}"] = part.detach()
        dead_F = state.dead_F if self.rule.uses_aux_k and self.cfg.aux_coefficient > 0 else None
        n_aux = aux_size(self.cfg.k_aux, self.cfg.n_sources * self.cfg.d_in, dead_F)
        if n_aux:
            aux_BKD = torch.einsum("bf,fkd->bkd", aux_codes(pre_BF, dead_F, n_aux), self.W_dec_FKD)
            aux = aux_loss(err_BKD, aux_BKD)
            loss = loss + self.cfg.aux_coefficient * aux
            metrics["aux"] = aux.detach()
        with torch.no_grad():
            var_K = (x_BKD - x_BKD.mean(0)).pow(2).sum(-1).mean(0).clamp_min(1e-12)
            for m in range(self.cfg.n_sources):
                metrics[f"fvu_{m}"] = mse_K[m].detach() / var_K[m]
            metrics["fvu"] = mse.detach() / var_K.sum()
            if self.k_search is not None:
                self.k_search.observe(metrics["fvu"], state.step, state.total_steps)
                metrics["k"] = torch.tensor(float(self.rule.cfg.k))
            active_BF = codes_BF.detach() != 0
            metrics["l0"] = active_BF.sum().float() / B
            ranked = codes_BF.detach() * w_F.detach() if self.rule.ranks_latents else codes_BF.detach()
            self.rule.update(ranked[active_BF], state.step)
        return StepOutput(loss, metrics, active_BF.sum(0))

    @property
    def k_search_trials(self) -> list[dict[str, float]]:
        """The k search's phases (k, FVU, accepted, step), from training or from the loaded folder."""
        return self.k_search.trials if self.k_search is not None else getattr(self, "_k_trials", [])

    @property
    def current_k(self) -> int | None:
        """The k the rule encodes with now (after a k search: the chosen k); None for rules without k."""
        return int(self.rule.cfg.k) if self.rule.reads("k") else None

    def _annealed_k(self, step: int) -> int:
        k0 = self.cfg.k_init or self.cfg.k
        frac = min(1.0, step / self.cfg.k_anneal_steps)
        return max(1, round(k0 + (self.cfg.k - k0) * frac))

    @torch.no_grad()
    def initialize_from_batch(self, x_BKD: torch.Tensor, method: str = "zeros") -> None:
        """b_dec from a first batch: zeros (the authors' choice) or the per-checkpoint mean."""
        if method == "mean":
            self.b_dec_KD.copy_(x_BKD.float().mean(0))
        elif method != "zeros":
            raise ConfigError(f"crosscoder b_dec init {method!r}: use zeros or mean")

    # ----------------------------------------------------------------- input scaling
    @torch.no_grad()
    def fold_input_scales(self, scale_K: torch.Tensor) -> None:
        """Trained on x_m * s_m: W_enc[m] *= s_m, W_dec[:, m] /= s_m, b_dec[m] /= s_m (raw in, raw out)."""
        s = torch.as_tensor(scale_K, dtype=self.W_enc_KDF.dtype)
        if s.shape != (self.cfg.n_sources,) or not bool((s > 0).all()):
            raise ConfigError(f"scale_K must be {self.cfg.n_sources} positive numbers, got {s.tolist()}")
        self.W_enc_KDF.mul_(s[:, None, None])
        self.W_dec_FKD.div_(s[None, :, None])
        self.b_dec_KD.div_(s[:, None])
        self.scale_K.mul_(s)

    # ----------------------------------------------------------------- SAELens-style folder
    def save(self, folder: str | Path, metadata: dict | None = None) -> Path:
        """Write `cfg.json` + `sae_weights.safetensors` (W_enc [K,D,F], W_dec [F,K,D], b_enc, b_dec, scale,
        and the rule's tensors such as `threshold`) through the one SAELens-layout writer. The rule's
        current k (`rule_k`, which differs from `k` while k is annealed) and its state are saved, so the
        loaded crosscoder encodes exactly as this one."""
        tensors = {"W_enc": self.W_enc_KDF, "W_dec": self.W_dec_FKD, "b_enc": self.b_enc_F,
                   "b_dec": self.b_dec_KD, "scale": self.scale_K, **self.rule.saelens_tensors()}
        cfg = {"architecture": "crosscoder", **self.cfg.model_dump(mode="json"), **(metadata or {}),
               "rule_state": {**self.rule.saelens_metadata(), "k": getattr(self.rule.cfg, "k", None)}}
        if self.k_search is not None:
            cfg["k_search"] = self.k_search.trials
        return write_folder(folder, cfg, tensors)

    @classmethod
    def load(cls, folder: str | Path) -> CrossCoder:
        """Read a folder written by `save` (raises StoreError naming the file)."""
        folder = Path(folder)
        raw, t = read_folder(folder)
        try:
            fields = {k: raw[k] for k in CrossCoderConfig.model_fields if k in raw}
            cc = cls(CrossCoderConfig(**fields))
        except (ValueError, TypeError) as e:
            raise StoreError(f"cannot read crosscoder file {folder / CFG}: {e}") from e
        state = raw.get("rule_state")
        if state is None:  # written before rule_state existed: training ran to its end, so k is final
            state = {"k": cc.cfg.k}
        if state.get("k") and cc.rule.reads("k"):
            cc.rule.cfg = cc.rule.cfg.model_copy(update={"k": min(int(state["k"]), cc.cfg.d_sae)})
        need = {"W_enc": "W_enc_KDF", "W_dec": "W_dec_FKD", "b_enc": "b_enc_F", "b_dec": "b_dec_KD",
                "scale": "scale_K"}
        shapes = {name: tuple(getattr(cc, attr).shape) for name, attr in need.items()}
        legacy = "rule_state" not in raw
        shapes.update({name: shape for name, shape in RULES[cc.cfg.rule].saelens_tensor_shapes(cc.rule.cfg).items()
                       if not (legacy and name not in t)})
        for name, shape in shapes.items():
            if name not in t or tuple(t[name].shape) != shape:
                raise StoreError(f"{folder / WEIGHTS}: tensor {name!r} missing or of the wrong shape")
        with torch.no_grad():
            for name, attr in need.items():
                getattr(cc, attr).copy_(t[name])
        cc.rule.load_saelens(t, state)
        cc.k_search = None        # the saved k (rule_state) is the searched one; a reload does not search again
        cc._k_trials = list(raw.get("k_search", []))
        return cc.eval()


def estimate_scales(acts_NKD: torch.Tensor, n_rows: int | None = None) -> torch.Tensor:
    """s_m = sqrt(D) / mean_n ||x_{n,m}|| per checkpoint (SAELens / the authors' buffer), [K]."""
    rows = acts_NKD if n_rows is None else acts_NKD[:n_rows]
    mean_norm_K = rows.float().norm(dim=-1).mean(0)
    if not bool((mean_norm_K > 0).all()):
        raise ConfigError("a checkpoint's activations are all zero; cannot estimate its input scale")
    return (acts_NKD.shape[-1] ** 0.5) / mean_norm_K


def scaled_batches(acts_NKD: torch.Tensor, scale_K: torch.Tensor, batch_size: int, n_steps: int,
                   seed: int = 0) -> Iterator[torch.Tensor]:
    """`n_steps` shuffled batches [B, K, D] of x_m * s_m (epochs repeat as needed), deterministic."""
    if batch_size > acts_NKD.shape[0]:
        raise ConfigError(f"batch_size={batch_size} exceeds the {acts_NKD.shape[0]} activation rows")
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < n_steps:
        perm = torch.randperm(acts_NKD.shape[0], generator=gen)
        for i in range(0, acts_NKD.shape[0] - batch_size + 1, batch_size):
            if done >= n_steps:
                return
            yield acts_NKD[perm[i:i + batch_size]] * scale_K[None, :, None]
            done += 1


def encode_in_chunks(cc: CrossCoder, acts_NKD: torch.Tensor, chunk: int = 4096) -> Iterable[torch.Tensor]:
    """Codes of many rows, a chunk at a time (no autograd)."""
    with torch.no_grad():
        for i in range(0, acts_NKD.shape[0], chunk):
            yield cc.encode(acts_NKD[i:i + chunk])


def fit_crosscoder(acts_NKD: torch.Tensor, cfg: CrossCoderConfig, train_cfg=None, batch_size: int = 4096,
                   n_steps: int = 1000, seed: int = 0, on_step=None):
    """Train a crosscoder on stacked activations with the generic trainer; returns (crosscoder, result).

    Inputs are scaled per checkpoint (`estimate_scales`), the scales folded in at the end. Defaults of
    `train_cfg`: the authors' Adam (lr 5e-5, betas 0.9/0.999), grad clip 1, L1 warm-up over the first 5%
    of steps, linear lr decay to 0 over the run (the authors decay over the last 20% only), zero b_dec.
    """
    from ontogeny.dictionaries.train import TrainConfig, train

    if acts_NKD.dim() != 3 or tuple(acts_NKD.shape[1:]) != (cfg.n_sources, cfg.d_in):
        raise ConfigError(f"activations must be [N, {cfg.n_sources}, {cfg.d_in}], got {tuple(acts_NKD.shape)}")
    train_cfg = train_cfg or TrainConfig(lr=5e-5, sparsity_warmup_steps=max(1, n_steps // 20),
                                         lr_end_fraction=0.0, b_dec_init="zeros")
    if train_cfg.normalize != "none":
        raise ConfigError("fit_crosscoder scales each checkpoint itself: use TrainConfig(normalize='none')")
    torch.manual_seed(seed)
    cc = CrossCoder(cfg, seed=seed)
    scale_K = estimate_scales(acts_NKD)
    data = scaled_batches(acts_NKD, scale_K, min(batch_size, acts_NKD.shape[0]), n_steps, seed)
    result = train(cc, data, train_cfg, total_steps=n_steps, on_step=on_step)
    cc.fold_input_scales(scale_K)
    return cc.eval(), result

"""`Dictionary`: a sparse autoencoder with an interchangeable activation rule (see `rules.RULES`).

`pre = (x - b_dec) W_enc + b_enc`, `codes = rule(pre)`, `x_hat = codes W_dec + b_dec` (SAELens layout:
W_enc [d_in, d_sae], W_dec [d_sae, d_in]). Training loss = ||x - x_hat||^2 summed over D, averaged
over tokens (one term per nested prefix the rule names, `rule.prefix_widths()`; one term for most rules),
+ the rule's coefficient * its penalty, + aux_coefficient * aux-k for rules that use it (`rules/aux_k.py`).
The dictionary knows no rule by name: it asks the rule (`rules/base.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.rules import RULES, Rule, make_rule
from ontogeny.dictionaries.rules.aux_k import aux_codes, aux_loss, aux_size, dead_top_cols
from ontogeny.dictionaries.sparse import (
    ColumnOrder,
    SparseCodes,
    Workspace,
    row_dots,
    sparse_decode,
    sparse_encode,
    split_flat,
)
from ontogeny.dictionaries.state import StepOutput, TrainState
from ontogeny.errors import ConfigError

__all__ = ["RULES", "Dictionary", "geometric_median"]


class Dictionary(nn.Module):
    """A sparse dictionary over one activation site (one checkpoint, one hook)."""

    def __init__(self, cfg: DictionaryConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        D, F = cfg.d_in, cfg.d_sae
        gen = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(F, D, generator=gen)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
        self.W_dec_FD = nn.Parameter(W_dec)
        self.W_enc_DF = nn.Parameter(W_dec.t().clone())
        self.b_enc_F = nn.Parameter(torch.zeros(F))
        self.b_dec_D = nn.Parameter(torch.zeros(D))
        self.rule: Rule = make_rule(cfg)
        self._density = 1.0  # share of non-zero codes at the last step (chooses the path; dense at first)
        self._workspace = Workspace()  # the fused encoder's [B, F] buffer, reused step to step

    # ----------------------------------------------------------------- inference (plain reference)
    @property
    def n_latents(self) -> int:
        return self.cfg.d_sae

    @property
    def threshold_F(self) -> torch.Tensor | None:
        """Per-latent inference threshold (jumprelu, batchtopk), else None."""
        return self.rule.threshold_F

    def pre_activations(self, x_BD: torch.Tensor) -> torch.Tensor:
        """`(x - b_dec) W_enc + b_enc`, [B, F]."""
        self._check_input(x_BD)
        centred = x_BD - self.b_dec_D if self.cfg.apply_b_dec_to_input else x_BD
        return torch.addmm(self.b_enc_F, centred, self.W_enc_DF)

    def _pre_activations_fast(self, x_BD: torch.Tensor) -> torch.Tensor:
        """`pre_activations` as `x W_enc + (b_enc - b_dec W_enc)`: the same values (to rounding), and its
        backward gives b_dec's gradient as one matrix-vector product, -W_enc (sum_b g_b), where the
        reference differentiates through `x - b_dec` with a [B, F] @ [F, D] product."""
        if not self.cfg.apply_b_dec_to_input:
            return torch.addmm(self.b_enc_F, x_BD, self.W_enc_DF)
        bias_F = torch.addmv(self.b_enc_F, self.W_enc_DF.t(), self.b_dec_D, alpha=-1)
        return torch.addmm(bias_F, x_BD, self.W_enc_DF)

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Codes [B, F] (dense tensor, mostly zeros)."""
        return self.rule(self.pre_activations(x_BD))

    def decode(self, codes_BF: torch.Tensor) -> torch.Tensor:
        """Reconstruction [B, D] = codes W_dec + b_dec."""
        return codes_BF @ self.W_dec_FD + self.b_dec_D

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x_BD))

    def _check_input(self, x_BD: torch.Tensor) -> None:
        if x_BD.dim() != 2 or x_BD.shape[1] != self.cfg.d_in:
            raise ConfigError(f"dictionary input must be [B, {self.cfg.d_in}], got {tuple(x_BD.shape)}")

    # ----------------------------------------------------------------- training contract
    def training_loss(self, x_BD: torch.Tensor, state: TrainState) -> StepOutput:
        """Loss of one batch and its metrics; the fast (sparse) or plain (dense) path per `cfg.fast`."""
        self._check_input(x_BD)
        B, F = x_BD.shape[0], self.cfg.d_sae
        dead_F = state.dead_F if self.rule.uses_aux_k and self.cfg.aux_coefficient > 0 else None
        n_aux = aux_size(self.cfg.k_aux, self.cfg.d_in, dead_F)
        dec_norm_F = self.W_dec_FD.norm(dim=1) if self.rule.penalty_uses_decoder_norm else None
        widths = self.rule.prefix_widths()

        dense_now = self.rule.density_dependent and self._density > self.cfg.sparse_below
        if self.cfg.fast and not dense_now:
            select = self._selector(dead_F if n_aux else None, n_aux)
            # without aux-k entries the encoder's and the decoder's backward sum over the same entries:
            # one column sort serves both
            order = ColumnOrder() if not n_aux and len(widths) == 1 else None
            pre_N, flat_N = sparse_encode(x_BD, self.W_enc_DF, self.b_enc_F, self.b_dec_D, select,
                                          self.cfg.apply_b_dec_to_input, order, self._workspace)
            n_main = select.n_main
            rows, cols, offsets = split_flat(flat_N[:n_main], B, F)
            codes_N = self.rule.values(pre_N[:n_main], cols)
            kept_N = codes_N if state.policy is None else state.policy.mask(codes_N, cols, state)
            if len(widths) == 1:
                recon_BD = sparse_decode(SparseCodes(rows, cols, kept_N, offsets, B, F), self.W_dec_FD,
                                         order) + self.b_dec_D
                prefix_BD = []
            else:  # one sparse decode per group of latents [w_{m-1}, w_m); prefixes are running sums
                prefix_BD = self._prefix_sums([self._group_decode(rows, cols, kept_N, lo, w, B)
                                               for lo, w in zip([0, *widths[:-1]], widths, strict=True)])
                recon_BD = prefix_BD.pop()
            penalty = self.rule.penalty(kept_N, pre_N[:n_main], cols, dec_norm_F, B)
            aux_sparse = None
            if n_aux:
                arows, acols, aoffs = split_flat(flat_N[n_main:], B, F)
                aux_sparse = SparseCodes(arows, acols, torch.relu(pre_N[n_main:]), aoffs, B, F)
            codes_out = codes_N.detach()
            active = codes_out != 0
            fired_F = torch.bincount(cols[active], minlength=F)
        else:
            pre_BF = self._pre_activations_fast(x_BD) if self.cfg.fast else self.pre_activations(x_BD)
            fused = self.cfg.fast and state.policy is None  # dense regime of the fast trainer
            if fused:
                codes_BF, penalty = self.rule.dense_codes_and_penalty(pre_BF, dec_norm_F, B)
            else:
                codes_BF = self.rule(pre_BF)
            kept_BF = codes_BF
            if state.policy is not None:
                cols_all = torch.arange(F, device=x_BD.device).repeat(B)
                kept_BF = state.policy.mask(codes_BF.reshape(-1), cols_all, state).view(B, F)
            if len(widths) == 1:
                recon_BD = torch.addmm(self.b_dec_D, kept_BF, self.W_dec_FD)
                prefix_BD = []
            else:
                prefix_BD = self._prefix_sums([kept_BF[:, lo:w] @ self.W_dec_FD[lo:w]
                                               for lo, w in zip([0, *widths[:-1]], widths, strict=True)])
                recon_BD = prefix_BD.pop()
            if not fused:
                penalty = self.rule.penalty(kept_BF, pre_BF, None, dec_norm_F, B)
            aux_dense = aux_codes(pre_BF, dead_F, n_aux) if n_aux else None
            codes_out = codes_BF.detach()
            # non-zero count per latent as float passes (`count_nonzero(dim=0)` on the CPU is ~4x slower)
            fired_F = torch.sign(codes_out).abs_().sum(0).long()

        err_BD = x_BD - recon_BD
        mse = err_BD.pow(2).sum(-1).mean()
        loss = mse + state.sparsity_scale * self.rule.coefficient() * penalty
        metrics = {"mse": mse.detach(), "penalty": penalty.detach()}
        for w, part_BD in zip(widths, prefix_BD, strict=False):  # nested prefixes (matryoshka rules)
            part = (x_BD - part_BD).pow(2).sum(-1).mean()
            loss = loss + part
            metrics[f"mse_prefix_{w}"] = part.detach()
        if n_aux:
            aux_BD = (sparse_decode(aux_sparse, self.W_dec_FD) if self.cfg.fast and not dense_now
                      else aux_dense @ self.W_dec_FD)
            aux = aux_loss(err_BD, aux_BD)
            loss = loss + self.cfg.aux_coefficient * aux
            metrics["aux"] = aux.detach()
        with torch.no_grad():
            n_active = fired_F.sum()
            metrics["l0"] = n_active.float() / B
            self._density = float(n_active) / (B * F)
            # sum_d Var(x_d) by two passes over [B, D] (`Tensor.var(0)` reduces across rows, ~10x slower)
            total_var = (x_BD - x_BD.mean(0)).pow(2).sum() / B
            metrics["fvu"] = mse.detach() / total_var.clamp_min(1e-12)
            self.rule.update(codes_out, state.step)
            if state.policy is not None:
                if codes_out.dim() == 2:  # dense path: list the non-zero entries
                    nz = torch.nonzero(codes_out.reshape(-1), as_tuple=True)[0]
                    rows = torch.div(nz, F, rounding_mode="floor")
                    cols, codes_out = nz - rows * F, codes_out.reshape(-1)[nz]
                contrib = self._contribution(codes_out, rows, cols, err_BD.detach())
                state.policy.observe(codes_out, cols, contrib, B, state)
        return StepOutput(loss, metrics, fired_F)

    def _prefix_sums(self, parts_BD: list[torch.Tensor]) -> list[torch.Tensor]:
        """b_dec + running sums of per-group reconstructions: the reconstruction of every prefix."""
        out, acc = [], self.b_dec_D
        for part in parts_BD:
            acc = acc + part
            out.append(acc)
        return out

    def _group_decode(self, rows_N, cols_N, vals_N, lo: int, hi: int, B: int) -> torch.Tensor:
        """Sparse decode of the entries whose latent lies in [lo, hi) (rows stay ascending)."""
        keep = torch.nonzero((cols_N >= lo) & (cols_N < hi), as_tuple=True)[0]
        rows = rows_N[keep]
        offsets = torch.searchsorted(rows, torch.arange(B, device=rows.device))
        return sparse_decode(SparseCodes(rows, cols_N[keep], vals_N[keep], offsets, B, self.cfg.d_sae), self.W_dec_FD)

    def _selector(self, dead_F: torch.Tensor | None, n_aux: int):
        """Selection for the fused encoder: the rule's entries, then (if any) the aux-k dead entries."""
        rule = self.rule

        def select(pre_BF: torch.Tensor) -> torch.Tensor:
            main = rule.select(pre_BF)
            select.n_main = main.numel()
            if dead_F is None or n_aux == 0:
                return main
            B, F = pre_BF.shape
            cols = dead_top_cols(pre_BF, dead_F, n_aux)
            aux = (cols + torch.arange(B, device=pre_BF.device)[:, None] * F).reshape(-1)
            return torch.cat([main, aux])

        select.n_main = 0
        return select

    def _contribution(self, vals_N, rows_N, cols_N, err_BD) -> torch.Tensor:
        """Exact increase of ||e||^2 if each entry's latent were ablated: 2 a <d_i, e> + a^2 ||d_i||^2."""
        W = self.W_dec_FD.detach()
        dots = row_dots(W, err_BD, rows_N, cols_N)
        return 2 * vals_N * dots + vals_N.pow(2) * W.pow(2).sum(-1)[cols_N]

    @torch.no_grad()
    def initialize_from_batch(self, x_BD: torch.Tensor, method: str = "geometric_median") -> None:
        """Set b_dec from a first batch: its geometric median (Gao et al.), its mean, or zeros."""
        if method == "geometric_median":
            self.b_dec_D.copy_(geometric_median(x_BD.float()))
        elif method == "mean":
            self.b_dec_D.copy_(x_BD.float().mean(0))
        elif method != "zeros":
            raise ConfigError(f"unknown b_dec init {method!r}: use geometric_median, mean or zeros")

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Unit-norm decoder: remove the gradient component parallel to each decoder row."""
        g = self.W_dec_FD.grad
        if self.cfg.unit_decoder and g is not None:
            W = self.W_dec_FD
            coef_F = torch.linalg.vecdot(g, W) / torch.linalg.vecdot(W, W).clamp_min(1e-12)
            g.addcmul_(W, coef_F[:, None], value=-1)  # g -= (<g, w> / <w, w>) w, row by row

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Unit-norm decoder: rescale each decoder row back to norm 1."""
        if self.cfg.unit_decoder:
            self.W_dec_FD.div_(self.W_dec_FD.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Trained on `x * scale`; rewrite the weights so the dictionary takes raw x and returns raw x_hat.

        pre((x s - b) W + c) = (x - b/s)(s W) + c, and x_hat/s = codes (W_dec/s) + b_dec/s.
        """
        self.W_enc_DF.mul_(scale)
        self.W_dec_FD.div_(scale)
        self.b_dec_D.div_(scale)


@torch.no_grad()
def geometric_median(points_ND: torch.Tensor, max_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """argmin_y sum_n ||x_n - y|| by Weiszfeld's iteration (robust centre used to initialise b_dec)."""
    y = points_ND.mean(0)
    for _ in range(max_iter):
        dist = (points_ND - y).norm(dim=1).clamp_min(1e-8)
        w = 1.0 / dist
        y_new = (w[:, None] * points_ND).sum(0) / w.sum()
        if (y_new - y).norm() <= tol * (1 + y.norm()):
            return y_new
        y = y_new
    return y

"""Sparse fast paths: a fused encoder that keeps only selected pre-activations, and a sparse decoder.

The dense reference computes `pre = x W_enc + b`, `codes = rule(pre)`, `x_hat = codes W_dec` with
autograd through [B, F] tensors: five B x D x F matmuls per step. Here only the encoder's forward is
dense. Every other product touches just the N selected entries (N = B * k for TopK):

  decoder forward   x_hat_b = sum_{(b,i) in S} a_bi W_dec[i]          embedding_bag over tokens' latents
  decoder backward  dW_dec[i] = sum_{(b,i) in S} a_bi g_b             embedding_bag over latents' tokens
                    da_bi = <W_dec[i], g_b>                          gathered row dot products
  encoder backward  dW_enc[:, i] = sum_{(b,i) in S} G_bi (x_b - b_dec) embedding_bag over latents' tokens

so a step costs one dense matmul plus O(N * D) (the idea of EleutherAI/sparsify's fused encoder and
sparse decoder, written here with `F.embedding_bag`). `tests/dictionaries/test_rules.py` checks every
rule's fast path against the dense reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from ontogeny.dictionaries import kernels


@dataclass
class SparseCodes:
    """Non-zero candidates of a code matrix [B, F], grouped by row (rows ascending)."""

    rows_N: torch.Tensor
    cols_N: torch.Tensor
    vals_N: torch.Tensor
    offsets_B: torch.Tensor
    n_rows: int
    n_latents: int

    def to_dense(self) -> torch.Tensor:
        return dense_from_flat(self.vals_N, self.rows_N * self.n_latents + self.cols_N, self.n_rows, self.n_latents)


def split_flat(flat_N: torch.Tensor, n_rows: int, n_latents: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, columns and per-row offsets of row-grouped flat indices into a [n_rows, n_latents] matrix."""
    rows = torch.div(flat_N, n_latents, rounding_mode="floor")
    cols = flat_N - rows * n_latents
    offsets = torch.searchsorted(rows, torch.arange(n_rows, device=flat_N.device))
    return rows, cols, offsets


def _by_column(rows_N: torch.Tensor, cols_N: torch.Tensor, n_latents: int):
    """Order entries by column: (permutation, rows in that order, per-column offsets).

    A stable sort of the columns alone (in the narrowest integer type that holds them: int16 sorts ~2.5x
    faster than the int64 key it replaces) keeps each column's entries in their input order."""
    narrow = torch.int16 if n_latents <= 2 ** 15 else torch.int32 if n_latents <= 2 ** 31 else torch.long
    order = torch.sort(cols_N.to(narrow), stable=True).indices
    counts = torch.bincount(cols_N, minlength=n_latents)
    offsets = torch.zeros(n_latents, dtype=torch.long, device=cols_N.device)
    offsets[1:] = counts.cumsum(0)[:-1]
    return order, rows_N.index_select(0, order), offsets


class ColumnOrder:
    """`_by_column` of one set of entries, computed once and shared by every backward that sums over it
    (the decoder's dW_dec and the encoder's dW_enc touch the same entries when there is no aux-k)."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._value = None

    def get(self, rows_N: torch.Tensor, cols_N: torch.Tensor, n_latents: int):
        key = (rows_N.numel(), n_latents)
        if self._value is None:
            self._key, self._value = key, _by_column(rows_N, cols_N, n_latents)
        elif key != self._key:
            raise ValueError("a ColumnOrder is shared only by sums over the same entries")
        return self._value


def column_sums(table_BD: torch.Tensor, rows_N: torch.Tensor, cols_N: torch.Tensor, w_N: torch.Tensor,
                n_latents: int, order: ColumnOrder | None = None) -> torch.Tensor:
    """out[i] = sum_{n: cols_n = i} w_n table[rows_n]  ([n_latents, D]): a sparse^T @ dense product."""
    perm, rows_sorted, offsets = (order.get(rows_N, cols_N, n_latents) if order is not None
                                  else _by_column(rows_N, cols_N, n_latents))
    return F.embedding_bag(rows_sorted, table_BD, offsets, mode="sum", per_sample_weights=w_N.index_select(0, perm))


def row_dots(W_FD: torch.Tensor, g_BD: torch.Tensor, rows_N: torch.Tensor, cols_N: torch.Tensor,
             offsets_B: torch.Tensor | None = None) -> torch.Tensor:
    """<W[cols_n], g[rows_n]> for each entry n, rows ascending: a sampled dense-dense product (SDDMM)."""
    n_rows = g_BD.shape[0]
    if offsets_B is None:
        offsets_B = torch.searchsorted(rows_N, torch.arange(n_rows, device=rows_N.device))
    crow = torch.cat([offsets_B, offsets_B.new_tensor([rows_N.numel()])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(crow, cols_N, torch.zeros_like(cols_N, dtype=g_BD.dtype),
                                          (n_rows, W_FD.shape[0]), check_invariants=False)
    return torch.sparse.sampled_addmm(pattern, g_BD, W_FD.t(), beta=0.0).values()


def row_dots_reference(W_FD: torch.Tensor, g_BD: torch.Tensor, rows_N: torch.Tensor, cols_N: torch.Tensor,
                       ) -> torch.Tensor:
    """Plain version of `row_dots`: gather both rows and multiply."""
    return (W_FD[cols_N] * g_BD[rows_N]).sum(-1)


class _Gather(torch.autograd.Function):
    """`t[idx]` whose backward is one `index_add_` (plain indexing's backward sorts the indices)."""

    @staticmethod
    def forward(ctx, t_F, idx_N):
        ctx.save_for_backward(idx_N)
        ctx.size = t_F.shape[0]
        return t_F.index_select(0, idx_N)

    @staticmethod
    def backward(ctx, g_N):
        (idx_N,) = ctx.saved_tensors
        return torch.zeros(ctx.size, dtype=g_N.dtype, device=g_N.device).index_add_(0, idx_N, g_N), None


def gather(t_F: torch.Tensor, idx_N: torch.Tensor) -> torch.Tensor:
    """Per-entry values of a per-latent vector, `t[idx]`, with a cheap backward."""
    return _Gather.apply(t_F, idx_N)


class Workspace:
    """A reusable buffer for the fused encoder's dense pre-activations [B, F], which live only inside its
    forward (only the selected entries are kept). A fresh tensor of that size each step pays its page
    faults: on this project's CPU `addmm` into a fresh 4 MB (1024 x 1024) output took ~6 ms against ~4 ms
    into a reused one, 285 ms against 232 ms at 4096 x 4096. One per dictionary (not shared between
    threads)."""

    def __init__(self) -> None:
        self._buf: torch.Tensor | None = None

    def __getstate__(self) -> dict:  # a scratch buffer: never pickled with its dictionary
        return {}

    def __setstate__(self, state: dict) -> None:
        self._buf = None

    def get(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        b = self._buf
        if b is None or tuple(b.shape) != tuple(shape) or b.dtype != like.dtype or b.device != like.device:
            b = self._buf = torch.empty(shape, dtype=like.dtype, device=like.device)
        return b


class _SparsePre(torch.autograd.Function):
    """Fused encoder: `pre = (x - b_dec) W_enc + b_enc`, returning only pre at `select(pre)`."""

    @staticmethod
    def forward(ctx, x_BD, W_enc_DF, b_enc_F, b_dec_D, select, use_b_dec, order, workspace):
        bias_F = b_enc_F - b_dec_D @ W_enc_DF if use_b_dec else b_enc_F
        shape = (x_BD.shape[0], W_enc_DF.shape[1])
        pre_BF = (torch.addmm(bias_F, x_BD, W_enc_DF) if workspace is None else
                  torch.addmm(bias_F, x_BD, W_enc_DF, out=workspace.get(shape, x_BD)))
        flat_N = select(pre_BF)
        vals_N = pre_BF.view(-1).index_select(0, flat_N)
        ctx.save_for_backward(x_BD, W_enc_DF, b_dec_D, flat_N)
        ctx.use_b_dec = use_b_dec
        ctx.order = order
        ctx.shape = pre_BF.shape
        ctx.mark_non_differentiable(flat_N)
        return vals_N, flat_N

    @staticmethod
    def backward(ctx, g_N, _g_flat):
        x_BD, W_enc_DF, b_dec_D, flat_N = ctx.saved_tensors
        B, Fn = ctx.shape
        rows = torch.div(flat_N, Fn, rounding_mode="floor")
        cols = flat_N - rows * Fn
        g_b = torch.zeros(Fn, dtype=g_N.dtype, device=g_N.device).index_add_(0, cols, g_N)
        g_W = g_x = g_bdec = None
        if ctx.needs_input_grad[1]:
            g_FD = column_sums(x_BD, rows, cols, g_N, Fn, ctx.order)  # dW_enc[:, i] = sum_b G_bi x_b
            if ctx.use_b_dec:  # d pre / d W_enc = x - b_dec
                g_FD.addr_(g_b, b_dec_D, alpha=-1)
            g_W = g_FD.t()
        if ctx.use_b_dec and ctx.needs_input_grad[3]:
            g_bdec = -(W_enc_DF @ g_b)
        if ctx.needs_input_grad[0]:
            g_x = F.embedding_bag(cols, W_enc_DF.t().contiguous(), split_flat(flat_N, B, Fn)[2], mode="sum",
                                  per_sample_weights=g_N)
        return g_x, g_W, g_b, g_bdec, None, None, None, None


class _SparseDecode(torch.autograd.Function):
    """x_hat = sum of selected decoder rows weighted by their codes (see module docstring)."""

    @staticmethod
    def forward(ctx, vals_N, W_dec_FD, rows_N, cols_N, offsets_B, order):
        ctx.save_for_backward(vals_N, W_dec_FD, rows_N, cols_N, offsets_B)
        ctx.order = order
        return F.embedding_bag(cols_N, W_dec_FD, offsets_B, mode="sum", per_sample_weights=vals_N)

    @staticmethod
    def backward(ctx, g_BD):
        vals_N, W_dec_FD, rows_N, cols_N, offsets_B = ctx.saved_tensors
        g_BD = g_BD.contiguous()
        g_vals = row_dots(W_dec_FD, g_BD, rows_N, cols_N, offsets_B) if ctx.needs_input_grad[0] else None
        g_W = (column_sums(g_BD, rows_N, cols_N, vals_N, W_dec_FD.shape[0], ctx.order)
               if ctx.needs_input_grad[1] else None)
        return g_vals, g_W, None, None, None, None


def sparse_encode(x_BD: torch.Tensor, W_enc_DF: torch.Tensor, b_enc_F: torch.Tensor, b_dec_D: torch.Tensor,
                  select: Callable[[torch.Tensor], torch.Tensor], apply_b_dec: bool = True,
                  order: ColumnOrder | None = None, workspace: Workspace | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations at the entries `select(pre)` picks: (pre_N, flat_N), flat = row * F + col.
    `order`: a `ColumnOrder` shared with a `sparse_decode` over exactly these entries (one sort, not two);
    `workspace`: a `Workspace` whose buffer holds the dense pre-activations (`select` must not keep them)."""
    return _SparsePre.apply(x_BD, W_enc_DF, b_enc_F, b_dec_D, select, apply_b_dec, order, workspace)


def sparse_decode(codes: SparseCodes, W_dec_FD: torch.Tensor, order: ColumnOrder | None = None) -> torch.Tensor:
    """`codes @ W_dec` without the dense code matrix (no bias); `order` as in `sparse_encode`."""
    return _SparseDecode.apply(codes.vals_N, W_dec_FD, codes.rows_N, codes.cols_N, codes.offsets_B, order)


@lru_cache(maxsize=64)
def topk_groups(n_latents: int, k: int) -> int:
    """Column groups G for `row_topk_indices`, or 0 when a plain top-k over the row is as cheap.

    The two top-k calls see G + k * F / G entries per row instead of F; G divides F and is >= k.
    """
    best, best_cost = 0, 0.75 * n_latents  # use groups only where they save a quarter or more
    for G in range(k, n_latents // 2 + 1):
        if n_latents % G == 0 and G + k * (n_latents // G) < best_cost:
            best, best_cost = G, G + k * (n_latents // G)
    return best


def row_topk_indices(pre_BF: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices (row * F + col, rows ascending) of each row's k largest entries: exact, in two small
    top-k calls instead of one over all F columns.

    Columns are split into G groups (column mod G). If an entry is among its row's k largest, its group's
    maximum is among the k largest group maxima (else k larger maxima, k distinct larger entries, exist).
    So the top k lie in the k groups of largest maxima, k * F / G candidates per row. The same values as
    `row_topk_reference` (indices may differ only between tied entries). On CPU float tensors the
    compiled `kernels.topk_rows` does the same (columns ascending within each row).
    """
    if kernels.available(pre_BF):  # compiled single-pass selection (kernels.py)
        return kernels.topk_rows(pre_BF, k)
    B, F = pre_BF.shape
    G = topk_groups(F, k)
    if G == 0:
        return row_topk_reference(pre_BF, k)
    s = F // G
    pre_BSG = pre_BF.detach().reshape(B, s, G)
    groups_BK = pre_BSG.amax(1).topk(k, dim=1, sorted=False).indices
    cand_BSK = pre_BSG.gather(2, groups_BK[:, None, :].expand(B, s, k))
    # flat index of each candidate (member m of group g in row b: b * F + m * G + g), built by one
    # broadcast add and read back with one gather (cheaper than integer division and remainder)
    base_BK = groups_BK + torch.arange(0, B * F, F, device=pre_BF.device)[:, None]
    flat_BC = (base_BK[:, None, :] + torch.arange(0, F, G, device=pre_BF.device)[None, :, None]).view(B, s * k)
    j_BK = cand_BSK.view(B, s * k).topk(k, dim=1, sorted=False).indices
    return flat_BC.gather(1, j_BK).view(-1)


def flat_above(pre_BF: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Ascending flat indices of the entries with pre[b, i] > threshold (a scalar or per-latent [F]):
    the compiled `kernels.flat_above` where it applies, else `nonzero`."""
    if kernels.available(pre_BF):
        return kernels.flat_above(pre_BF, threshold)
    return torch.nonzero((pre_BF.detach() > threshold).reshape(-1), as_tuple=True)[0]


def row_topk_reference(pre_BF: torch.Tensor, k: int) -> torch.Tensor:
    """Plain version of `row_topk_indices`: one top-k over each whole row."""
    B, F = pre_BF.shape
    idx = pre_BF.detach().topk(k, dim=-1, sorted=False).indices
    return (idx + torch.arange(B, device=pre_BF.device)[:, None] * F).reshape(-1)


def dense_from_flat(vals_N: torch.Tensor, flat_N: torch.Tensor, n_rows: int, n_latents: int) -> torch.Tensor:
    """Scatter flat (row * F + col) values into a dense [n_rows, n_latents] matrix."""
    out = vals_N.new_zeros(n_rows * n_latents).index_put((flat_N,), vals_N, accumulate=True)
    return out.view(n_rows, n_latents)

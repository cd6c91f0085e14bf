"""Match the features of two adjacent checkpoints' dictionaries and classify each feature's fate.

Identity by function: Pearson correlation of activation columns over one shared token set, paired by
the Hungarian algorithm over alive x alive features (RDT `_phase5_feature_matching`, the method the
life-history paper most likely used). Identity by direction: cosine of unit decoder rows, reported
for every pair as a second signal. Classes: stable r >= stable_r, transformed r >= transformed_r,
died otherwise; born = alive next-checkpoint feature claimed by no continuing pair.

Splits and merges (PROPOSAL), decided from the parent's side: an unclaimed feature j at b is a split
child of a continuing feature i at a when (1) overlap(j in i) = |fires_j(b) ∩ fires_i(a)| / |fires_j(b)|
>= split_overlap (the child fires where the parent fired) and (2) cos(d_i, d_j) >= split_cos (its
direction comes from the parent's). A newborn feature nested inside a continuing one passes (1) but
not (2): it is born, a hierarchy child. Merges mirror this: an unclaimed feature i at a is absorbed by a
continued feature j at b when overlap(i in j) >= split_overlap and cos(d_i, d_j) >= split_cos. Each
candidate takes the parent with the largest overlap among those passing. The correlation between the
two children plays no part (children that share the parent's support correlate strongly).
Without decoders only (1) is tested, so nested newborn features are then counted as splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import MatchConfig

CONTINUING = ("stable", "transformed")


def alive_mask(codes_NF: torch.Tensor, cfg: MatchConfig) -> np.ndarray:
    """Features that fire (|a| > fire_eps) on at least alive_frac of the tokens (and at least once)."""
    fires_F = (codes_NF.abs() > cfg.fire_eps).sum(0).cpu().numpy()
    return (fires_F >= max(1.0, cfg.alive_frac * codes_NF.shape[0]))


def correlation(codes_a_NF: torch.Tensor, codes_b_NG: torch.Tensor, chunk: int = 1 << 16,
                sparse: bool | None = None) -> np.ndarray:
    """Pearson r between every column of a and of b: r = cov(a_i, b_j) / (sd_i sd_j); 0 where sd = 0.

    Plain path: float64 sums and cross-products accumulated over row chunks. Fast path (`sparse`, chosen
    automatically when both are under 5% nonzero, as dictionary codes are): the cross-product a^T b as
    a scipy sparse-sparse product, exact in float64 and ~5x faster for TopK codes.
    """
    if codes_a_NF.shape[0] != codes_b_NG.shape[0]:
        raise ConfigError(f"codes cover different token sets: {codes_a_NF.shape[0]} vs {codes_b_NG.shape[0]} rows")
    if sparse is None:
        sparse = density(codes_a_NF) < 0.05 and density(codes_b_NG) < 0.05
    if sparse:
        A, B = to_csr(codes_a_NF), to_csr(codes_b_NG)
        (sa, saa), (sb, sbb) = _csr_moments(A), _csr_moments(B)
        sab = torch.from_numpy((A.T @ B).toarray())
    else:
        sa, saa = _moments(codes_a_NF, chunk)
        sb, sbb = _moments(codes_b_NG, chunk)
        sab = torch.zeros(codes_a_NF.shape[1], codes_b_NG.shape[1], dtype=torch.float64)
        for i in range(0, codes_a_NF.shape[0], chunk):
            sab += codes_a_NF[i:i + chunk].double().T @ codes_b_NG[i:i + chunk].double()
    return _pearson(sab, sa, saa, sb, sbb, codes_a_NF.shape[0])


def density(x: torch.Tensor) -> float:
    """Share of nonzero entries."""
    return float(torch.count_nonzero(x)) / max(1, x.numel())


def to_csr(x_NF: torch.Tensor) -> sp.csr_matrix:
    """A dense tensor as a float64 scipy CSR matrix, built from its nonzeros only."""
    nz = torch.nonzero(x_NF)
    vals = x_NF[nz[:, 0], nz[:, 1]].double().numpy()
    return sp.csr_matrix((vals, (nz[:, 0].numpy(), nz[:, 1].numpy())), shape=tuple(x_NF.shape))


def _moments(x_NF: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.zeros(x_NF.shape[1], dtype=torch.float64)
    ss = torch.zeros(x_NF.shape[1], dtype=torch.float64)
    for i in range(0, x_NF.shape[0], chunk):
        x = x_NF[i:i + chunk].double()
        s += x.sum(0)
        ss += (x * x).sum(0)
    return s, ss


def _csr_moments(A: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.asarray(A.sum(0)).ravel()),
            torch.from_numpy(np.asarray(A.multiply(A).sum(0)).ravel()))


def _pearson(sab, sa, saa, sb, sbb, n: int) -> np.ndarray:
    cov = sab / n - torch.outer(sa / n, sb / n)
    sda = (saa / n - (sa / n) ** 2).clamp_min(0).sqrt()
    sdb = (sbb / n - (sb / n) ** 2).clamp_min(0).sqrt()
    denom = torch.outer(sda, sdb)
    r = torch.where(denom > 1e-12, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))
    return r.clamp(-1, 1).numpy()


def decoder_cosine(W_dec_a_FD: torch.Tensor, W_dec_b_GD: torch.Tensor) -> np.ndarray:
    """Cosine between every pair of decoder rows (feature directions), [F, G]."""
    a = torch.nn.functional.normalize(W_dec_a_FD.double(), dim=1)
    b = torch.nn.functional.normalize(W_dec_b_GD.double(), dim=1)
    return (a @ b.T).numpy()


def hungarian(score_FG: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-total-score one-to-one pairing restricted to the given row and column indices."""
    if len(rows) == 0 or len(cols) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sub = score_FG[np.ix_(rows, cols)]
    ri, ci = linear_sum_assignment(-sub)
    return rows[ri].astype(np.int64), cols[ci].astype(np.int64)


@dataclass
class Match:
    """The fate of each feature across one transition (a -> b)."""

    pairs: list[tuple[int, int, float, float, str]]  # (i, j, r, cos, class) for continuing Hungarian pairs
    died: list[tuple[int, int, float, float]]        # (i, best j or -1, r, cos) alive in a, no continuation
    born: list[tuple[int, int, float, float]]        # (j, best i or -1, r, cos) alive in b, unclaimed
    splits: list[tuple[int, int, float, float]]      # (i, j, r, cos): extra child j of continuing i
    merges: list[tuple[int, int, float, float]]      # (i, j, r, cos): extra parent i of continued j
    alive_a: np.ndarray
    alive_b: np.ndarray
    direction_agree: float                           # share of continuing pairs the decoder matching repeats
    null: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of each event: stable, transformed, died, born, split, merge."""
        out = {"stable": 0, "transformed": 0}
        for p in self.pairs:
            out[p[4]] += 1
        out.update(died=len(self.died), born=len(self.born), split=len(self.splits), merge=len(self.merges))
        return out


def direction_class(cos: float, cfg: MatchConfig) -> str:
    """Decoder-direction class of a pair: stable (cos >= stable_cos), died (< died_cos) or drifted."""
    return "stable" if cos >= cfg.stable_cos else ("died" if cos < cfg.died_cos else "drifted")


def match_checkpoints(codes_a_NF: torch.Tensor, codes_b_NG: torch.Tensor, W_dec_a_FD: torch.Tensor | None,
                      W_dec_b_GD: torch.Tensor | None, cfg: MatchConfig, seed: int = 0) -> Match:
    """Hungarian matching on activation correlation, classes by threshold, splits, merges and a null."""
    alive_a, alive_b = alive_mask(codes_a_NF, cfg), alive_mask(codes_b_NG, cfg)
    r_FG = correlation(codes_a_NF, codes_b_NG)
    F, G = r_FG.shape
    if W_dec_a_FD is not None and W_dec_b_GD is not None:
        if W_dec_a_FD.shape[0] != F or W_dec_b_GD.shape[0] != G:
            raise ConfigError(f"decoder rows ({W_dec_a_FD.shape[0]}, {W_dec_b_GD.shape[0]}) do not match "
                              f"code widths ({F}, {G})")
        cos_FG = decoder_cosine(W_dec_a_FD, W_dec_b_GD)
    else:
        cos_FG = np.full((F, G), np.nan)
    rows, cols = np.flatnonzero(alive_a), np.flatnonzero(alive_b)
    mi, mj = hungarian(r_FG, rows, cols)

    pairs, died = [], []
    claimed_a, claimed_b = set(), set()
    for i, j in zip(mi.tolist(), mj.tolist()):
        r = float(r_FG[i, j])
        if r >= cfg.transformed_r:
            cls = "stable" if r >= cfg.stable_r else "transformed"
            pairs.append((i, j, r, float(cos_FG[i, j]), cls))
            claimed_a.add(i); claimed_b.add(j)
    cont_a = np.array(sorted(claimed_a), dtype=np.int64)
    cont_b = np.array(sorted(claimed_b), dtype=np.int64)
    fa, fb = fires(codes_a_NF, cfg), fires(codes_b_NG, cfg)
    both_FG = (fa.T @ fb).toarray()                     # tokens where a_i and b_j both fire
    n_a, n_b = np.asarray(fa.sum(0)).ravel(), np.asarray(fb.sum(0)).ravel()
    in_parent_FG = both_FG / np.maximum(n_b, 1)[None, :]   # overlap(j in i): share of j's firings inside i's
    in_child_FG = both_FG / np.maximum(n_a, 1)[:, None]    # overlap(i in j): share of i's firings inside j's
    same_dir = (np.nan_to_num(cos_FG, nan=1.0) >= cfg.split_cos)
    splits, born, merges = [], [], []
    for j in cols.tolist():
        if j in claimed_b:
            continue
        i_best = _parent(in_parent_FG[cont_a, j], same_dir[cont_a, j], cont_a, cfg.split_overlap)
        if i_best >= 0:
            splits.append((i_best, j, float(r_FG[i_best, j]), float(cos_FG[i_best, j])))
        else:
            i_any, r_any = _best(r_FG[:, j], rows)
            born.append((j, i_any, r_any, float(cos_FG[i_any, j]) if i_any >= 0 else float("nan")))
    for i in rows.tolist():
        if i in claimed_a:
            continue
        j_best = _parent(in_child_FG[i, cont_b], same_dir[i, cont_b], cont_b, cfg.split_overlap)
        if j_best >= 0:
            merges.append((i, j_best, float(r_FG[i, j_best]), float(cos_FG[i, j_best])))
        else:
            j_any, r_any = _best(r_FG[i, :], cols)
            died.append((i, j_any, r_any, float(cos_FG[i, j_any]) if j_any >= 0 else float("nan")))

    agree = float("nan")
    if pairs and not np.isnan(cos_FG).all():
        di, dj = hungarian(cos_FG, rows, cols)
        dmap = dict(zip(di.tolist(), dj.tolist()))
        agree = float(np.mean([dmap.get(p[0]) == p[1] for p in pairs]))
    null = permutation_null(codes_a_NF[:, rows], codes_b_NG[:, cols], cfg, seed) if cfg.n_null else {}
    return Match(pairs, died, born, splits, merges, alive_a, alive_b, agree, null)


def fires(codes_NF: torch.Tensor, cfg: MatchConfig) -> sp.csr_matrix:
    """Where each feature fires (|a| > fire_eps), as a sparse 0/1 [N, F] matrix."""
    return to_csr((codes_NF.abs() > cfg.fire_eps).float())


def _parent(overlap: np.ndarray, same_dir: np.ndarray, among: np.ndarray, min_overlap: float) -> int:
    """The candidate parent with the largest overlap among those passing both tests, or -1."""
    ok = (overlap >= min_overlap) & same_dir
    if not ok.any():
        return -1
    return int(among[np.flatnonzero(ok)[np.argmax(overlap[ok])]])


def _best(r_row: np.ndarray, among: np.ndarray) -> tuple[int, float]:
    if len(among) == 0:
        return -1, float("nan")
    k = int(np.argmax(r_row[among]))
    return int(among[k]), float(r_row[among[k]])


def permutation_null(codes_a_NF: torch.Tensor, codes_b_NG: torch.Tensor, cfg: MatchConfig,
                     seed: int = 0) -> dict[str, float]:
    """How many matches chance gives: shuffle b's token order, re-match, count pairs over threshold.

    A row permutation keeps each checkpoint's own co-firing structure and breaks only the pairing of
    tokens across checkpoints. Returns the mean and 95th percentile of stable and continuing counts and
    the 95th percentile of the matched r (RDT sets data-driven thresholds at this percentile).
    """
    gen = torch.Generator().manual_seed(seed)
    n = codes_a_NF.shape[0]
    stable, cont, rs = [], [], []
    rows, cols = np.arange(codes_a_NF.shape[1]), np.arange(codes_b_NG.shape[1])
    sparse = density(codes_a_NF) < 0.05 and density(codes_b_NG) < 0.05
    A, B = (to_csr(codes_a_NF), to_csr(codes_b_NG)) if sparse else (None, None)
    # column moments do not change when rows are permuted
    (sa, saa), (sb, sbb) = (_csr_moments(A), _csr_moments(B)) if sparse else \
        (_moments(codes_a_NF, 1 << 16), _moments(codes_b_NG, 1 << 16))
    for _ in range(cfg.n_null):
        perm = torch.randperm(n, generator=gen)
        if sparse:
            sab = torch.from_numpy((A.T @ B[perm.numpy()]).toarray())
        else:
            sab = codes_a_NF.double().T @ codes_b_NG[perm].double()
        r = _pearson(sab, sa, saa, sb, sbb, n)
        mi, mj = hungarian(r, rows, cols)
        m = r[mi, mj]
        stable.append(int((m >= cfg.stable_r).sum()))
        cont.append(int((m >= cfg.transformed_r).sum()))
        rs.append(m)
    allr = np.concatenate(rs) if rs and sum(len(x) for x in rs) else np.zeros(1)
    return {"null_stable_mean": float(np.mean(stable)), "null_stable_p95": float(np.percentile(stable, 95)),
            "null_continuing_mean": float(np.mean(cont)), "null_continuing_p95": float(np.percentile(cont, 95)),
            "null_r_p95": float(np.percentile(allr, 95))}

"""Compiled CPU kernels for the sparse fast path's selection step (`sparse.py`, the rules' `select`):
which entries of the dense pre-activations [B, F] a rule keeps, written as plain loops and compiled with
numba.

Why: in the fused encoder only one B x D x F matmul is dense and everything after it touches the
N = B * k selected entries. Selection itself reads all B * F entries, and torch's CPU operators do it
slowly: at 1024 x 1024 (k 32, one thread) the grouped top-k took ~7.5 ms and `nonzero(pre > 0)` ~3.7 ms
against ~5 ms for the matmul that produced the entries (profile in docs/dictionaries.md). These loops
compare each entry against a threshold once and select among a few candidates: 1.6-2.6x faster than
the torch operators at one thread, little at two (`benchmarks/sae_kernels.py`, docs/dictionaries.md):

  topk_rows        each row's k largest entries: G >= k groups of columns (column mod G) and their
                   maxima (torch's vectorised `amax`); t = the k-th largest group maximum, so at least
                   k entries are >= t; one pass collects the candidates >= t, the k-th largest of them
                   is found by counting (c^2 vectorised comparisons for c <= 128, else a select), one
                   more pass keeps the k. Exact; ties keep the earliest column.
  flat_above       flat indices of the entries above a per-column threshold (count pass, fill pass)
  batch_topk_flat  the n largest entries of the whole batch: a threshold from a hashed sample of all
                   entries, the entries >= it (as `flat_above`), the n largest of those; exact, ties
                   kept in index order

Sparse decoding and the backward's scatter sums stay torch operators (`embedding_bag`,
`sampled_addmm`): compiled loops for them were measured slower on this CPU (they lose the cache
locality of torch's column-sorted sums), and so were a min-heap top-k and a sampled-threshold top-k.

numba (a maintained LLVM JIT; no C compiler needed, unlike torch.compile's CPU backend) is an optional
speed dependency: without it, or for tensors it cannot take (CUDA, half precision, requires a copy),
`available` is False and `sparse.py` uses its torch operators. Kernels release the GIL and are spread
over `torch.get_num_threads()` threads by a small thread pool (not numba's `parallel=True`, whose
default threading layer must not be entered from two threads at once). Compiled code is cached on disk
(`cache=True`), so only the first process pays the compile (~15 s for all, per dtype); later processes
load it at their first selection (~0.8 s; `warm_up` does it on purpose).
`tests/dictionaries/test_kernels.py` checks every kernel against a plain torch version.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch

try:  # optional: the torch operators in sparse.py are the fallback
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

_DTYPES = (torch.float32, torch.float64)
ENV_DISABLE = "ONTOGENY_NO_KERNELS"  # set to 1 to force the torch operators (for comparisons)


def available(*tensors: torch.Tensor) -> bool:
    """Whether the compiled kernels can take these tensors: numba importable, not disabled by the
    environment, every tensor a CPU float32/float64 tensor of one dtype."""
    if numba is None or os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        return False
    dt = tensors[0].dtype if tensors else None
    return all(t.device.type == "cpu" and t.dtype in _DTYPES and t.dtype == dt for t in tensors)


# ----------------------------------------------------------------------------- threads
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = -1
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One process-wide pool, recreated after a fork (a forked child has no pool threads)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL, _POOL_PID = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1),
                                                  thread_name_prefix="ontogeny-kernel"), os.getpid()
        return _POOL


def _spread(fn, n: int, *args, min_chunk: int = 1) -> None:
    """Run fn(lo, hi, *args) over [0, n) in up to torch.get_num_threads() contiguous chunks."""
    t = max(1, min(torch.get_num_threads(), n // max(1, min_chunk)))
    if t == 1:
        fn(0, n, *args)
        return
    bounds = [n * i // t for i in range(t + 1)]
    futures = [_pool().submit(fn, bounds[i], bounds[i + 1], *args) for i in range(1, t)]
    fn(bounds[0], bounds[1], *args)
    for f in futures:
        f.result()


def _np(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (no copy; made contiguous first if needed)."""
    return t.detach().contiguous().numpy()


# ----------------------------------------------------------------------------- kernels
_HASH = 2654435761  # odd multiplier: j -> (j * _HASH) mod M visits M = 2^a * b entries spread out

if numba is not None:
    def _jit(fn):
        """njit with an on-disk cache where numba finds a writable place for it (beside this file or
        in the user's cache directory), else without (it then compiles once per process). fastmath
        lets LLVM vectorise the comparison loops; it assumes finite entries (a non-finite
        pre-activation has already made the loss non-finite)."""
        try:
            return numba.njit(cache=True, nogil=True, fastmath=True)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(nogil=True, fastmath=True)(fn)

    @_jit
    def _kth_largest_small(vals_G, G, k):
        """The k-th largest of vals[:G]: the largest v with at least k values >= v (G^2 vectorised
        comparisons)."""
        t = vals_G[0]
        found = False
        for g in range(G):
            v = vals_G[g]
            c = np.int32(0)
            for h in range(G):
                c += np.int32(vals_G[h] >= v)
            if c >= k and (not found or v > t):
                t = v
                found = True
        return t

    @_jit
    def _kth_largest(vals, n, k):
        """The k-th largest of vals[:n]: by counting for n <= 128 (cheaper there), else a select."""
        return _kth_largest_small(vals, n, k) if n <= 128 else np.partition(vals[:n], n - k)[n - k]

    @_jit
    def _keep_largest(cidx_C, cval_C, c, n, base, out_N, p0):
        """Write base + cidx of the n largest of cval[:c] (in candidate order; ties at the n-th largest
        value kept in candidate order) to out_N[p0:p0 + n]."""
        v = _kth_largest(cval_C, c, n)
        above = 0
        for i in range(c):
            if cval_C[i] > v:
                above += 1
        ties = n - above
        p = p0
        for i in range(c):
            x = cval_C[i]
            if x > v:
                out_N[p] = base + cidx_C[i]
                p += 1
            elif x == v and ties > 0:
                ties -= 1
                out_N[p] = base + cidx_C[i]
                p += 1

    @_jit
    def _topk_rows_k(lo, hi, pre_BF, gmax_BG, k, out_N):
        F = pre_BF.shape[1]
        G = gmax_BG.shape[1]
        cidx = np.empty(F, np.int64)
        cval = np.empty(F, pre_BF.dtype)
        for b in range(lo, hi):
            gmax = gmax_BG[b]
            t = _kth_largest(gmax, G, k)
            c = 0
            for j in range(F):  # one contiguous pass (cheaper than visiting only the chosen groups)
                v = pre_BF[b, j]
                if v >= t:
                    cidx[c] = j
                    cval[c] = v
                    c += 1
            _keep_largest(cidx, cval, c, k, b * F, out_N, b * k)

    @_jit
    def _count_above_k(lo, hi, pre_BF, thr_F, counts_B):
        F = pre_BF.shape[1]
        for b in range(lo, hi):
            c = 0
            for j in range(F):
                c += 1 if pre_BF[b, j] > thr_F[j] else 0
            counts_B[b] = c

    @_jit
    def _fill_above_k(lo, hi, pre_BF, thr_F, starts_B, out_N):
        F = pre_BF.shape[1]
        for b in range(lo, hi):
            p = starts_B[b]
            for j in range(F):
                if pre_BF[b, j] > thr_F[j]:
                    out_N[p] = b * F + j
                    p += 1

    @_jit
    def _hashed_sample(flat_M, S, out_S):
        M = flat_M.shape[0]
        for s in range(S):
            out_S[s] = flat_M[(s * _HASH) % M]

    @_jit
    def _largest_of_candidates(flat_M, cand_C, n, out_N):
        c = cand_C.shape[0]
        cval = np.empty(c, flat_M.dtype)
        for i in range(c):
            cval[i] = flat_M[cand_C[i]]
        _keep_largest(cand_C, cval, c, n, 0, out_N, 0)


# ----------------------------------------------------------------------------- torch-facing wrappers
@lru_cache(maxsize=64)
def _groups(F: int, k: int) -> int:
    """Column groups for `topk_rows`: the divisor of F nearest 2k, at least k (F itself if none)."""
    divisors = [g for g in range(k, F + 1) if F % g == 0]
    return min(divisors, key=lambda g: (abs(g - 2 * k), g))


def topk_rows(pre_BF: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices (row * F + col; rows ascending, columns ascending within a row) of each row's k
    largest entries; the same set as `pre.topk(k, dim=1)` (ties keep the earliest column)."""
    B, F = pre_BF.shape
    if not 0 < k <= F:
        raise ValueError(f"k={k} must be in [1, {F}]")
    G = _groups(F, k)
    pre = pre_BF.detach().contiguous()
    gmax_BG = pre.view(B, F // G, G).amax(1)  # torch's reduction is vectorised; numba's max() is not
    out = torch.empty(B * k, dtype=torch.long)
    _spread(_topk_rows_k, B, pre.numpy(), gmax_BG.numpy(), k, out.numpy(), min_chunk=64)
    return out


def flat_above(pre_BF: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Ascending flat indices of the entries with pre[b, i] > threshold[i] (threshold [F] or a scalar)."""
    B, F = pre_BF.shape
    thr = torch.as_tensor(threshold, dtype=pre_BF.dtype).detach().expand(F).contiguous()
    pre, thr_np = _np(pre_BF), _np(thr)
    counts = np.empty(B, np.int64)
    _spread(_count_above_k, B, pre, thr_np, counts, min_chunk=64)
    starts = np.zeros(B + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    out = torch.empty(int(starts[-1]), dtype=torch.long)
    _spread(_fill_above_k, B, pre, thr_np, starts, out.numpy(), min_chunk=64)
    return out


def batch_topk_flat(pre_BF: torch.Tensor, n: int, margin: float = 1.5, n_sample: int = 1 << 15
                    ) -> torch.Tensor:
    """Ascending flat indices of the n largest entries of the whole matrix (exact; ties at the n-th
    largest value kept in index order). The candidates are the entries >= a threshold that about
    `margin * n` entries pass, placed from `n_sample` hashed samples; all entries when too few pass."""
    B, F = pre_BF.shape
    M = B * F
    if not 0 < n <= M:
        raise ValueError(f"n={n} must be in [1, {M}]")
    pre = _np(pre_BF)
    flat = pre.reshape(-1)
    S = min(M, n_sample)
    samp = np.empty(S, pre.dtype)
    _hashed_sample(flat, S, samp)
    r = min(S, int(margin * n * S / M) + 3)
    t = np.partition(samp, S - r)[S - r]
    cand = flat_above(pre_BF, np.nextafter(t, t.dtype.type(-np.inf)))  # entries >= t
    if cand.numel() < n:
        cand = torch.arange(M)
    out = torch.empty(n, dtype=torch.long)
    _largest_of_candidates(flat, cand.numpy(), n, out.numpy())
    return out


def warm_up(dtype: torch.dtype = torch.float32) -> float:
    """Load (from numba's on-disk cache) or compile every kernel for `dtype` now, on a tiny input, and
    return the seconds it took; a no-op (0.0) without numba. A process otherwise pays this (~1 s from
    the cache, ~15 s to compile) at its first selection; benchmarks call it before timing, as they
    import a library before timing it."""
    if numba is None:
        return 0.0
    t = time.perf_counter()
    pre = torch.randn(64, 128, generator=torch.Generator().manual_seed(0)).to(dtype)
    topk_rows(pre, 4)
    flat_above(pre, 0.0)
    batch_topk_flat(pre, 256)
    return time.perf_counter() - t

"""The SAE fast path's selection step: compiled kernels (dictionaries/kernels.py) against the torch
operators they replace, on the same pre-activations, interleaved, one process.

For each shape (B x F, k) and thread count: TopK per row (`kernels.topk_rows` vs the grouped torch
`row_topk_indices`), batch top-(k*B) (`kernels.batch_topk_flat` vs `batch_topk_indices`), and the entries
above a per-latent threshold at density k/F (`kernels.flat_above` vs `sparse.flat_above`'s `nonzero`, the
kernels switched off). Pre-activations are Gaussian with a per-latent offset (like trained biases). Best wall time of interleaved repeats; the
kernels are loaded (`kernels.warm_up`) before timing. Writes benchmarks/results/sae_kernels.json.

    .venv/bin/python benchmarks/sae_kernels.py [--shapes 1024x1024x32,4096x512x16,4096x4096x32] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os

import torch

from _common import emit, interleaved_best
from ontogeny.dictionaries import kernels
from ontogeny.dictionaries.rules.batchtopk import batch_topk_indices
from ontogeny.dictionaries.sparse import flat_above, row_topk_indices


def torch_path(fn):
    """Call fn with the compiled kernels switched off (the torch operators)."""
    def run():
        os.environ[kernels.ENV_DISABLE] = "1"
        try:
            return fn()
        finally:
            os.environ.pop(kernels.ENV_DISABLE, None)
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="1024x1024x32,4096x512x16,4096x4096x32", help="B x F x k, comma list")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    load_s = kernels.warm_up()
    rows = []
    for shape in args.shapes.split(","):
        B, F, k = (int(v) for v in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        pre = torch.randn(B, F, generator=g) + 0.3 * torch.randn(F, generator=g)
        thr = pre.quantile(1 - k / F, dim=0)
        flat = pre.reshape(-1)
        for t in (int(v) for v in args.threads.split(",")):
            torch.set_num_threads(t)
            best = interleaved_best({
                "topk_kernel": lambda: kernels.topk_rows(pre, k),
                "topk_torch": torch_path(lambda: row_topk_indices(pre, k)),
                "batch_topk_kernel": lambda: kernels.batch_topk_flat(pre, B * k),
                "batch_topk_torch": lambda: batch_topk_indices(flat, B * k),
                "above_kernel": lambda: kernels.flat_above(pre, thr),
                "above_torch": torch_path(lambda: flat_above(pre, thr)),
            }, repeats=args.repeats)
            row = {"B": B, "F": F, "k": k, "threads": t, **{f"{n}_ms": round(1e3 * v, 3) for n, v in best.items()}}
            for op in ("topk", "batch_topk", "above"):
                row[f"{op}_speedup"] = round(best[f"{op}_torch"] / best[f"{op}_kernel"], 2)
            rows.append(row)
            print(row, flush=True)
    emit("sae_kernels", {"kernel_load_s": round(load_s, 2), "load_average": os.getloadavg(), "rows": rows})


if __name__ == "__main__":
    main()

"""Life-history speed: matching two checkpoints (sparse fast path vs dense reference) and the cost of one
joint-ablation population relative to a clean forward pass, measured in the same run.

Matching: Pearson correlation of TopK-like codes (N tokens x F features, k active per token) by the dense
float64 reference and by the scipy sparse-sparse fast path (checked equal to 1e-10), the Hungarian
assignment, and one permutation of the null. Ablation: an embedded-size GPT-NeoX (2 layers, d_model 128,
vocab 4096) with a random TopK dictionary (F = 512, k = 16) spliced at both residual sites.
Run: python benchmarks/lifehistory_match.py   (prints one JSON object, writes results/lifehistory_match.json)
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import emit
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ontogeny.causal.ablate import AblationRunner
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.lifehistory.config import MatchConfig
from ontogeny.lifehistory.match import correlation, hungarian, match_checkpoints

N, F, K = 16384, 1024, 16
SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def interleaved_best(fns, repeats: int = 3) -> dict[str, float]:
    """Best CPU time (process_time, one thread) of each function, called in turn.

    CPU time, not wall time: the machine is shared by several engineers, so wall time mostly measures
    their load; with one torch/scipy thread the process's CPU time is the work this code does.
    """
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.process_time()
            fn()
            best[k] = min(best[k], time.process_time() - t0)
    return best


def topk_codes(gen: torch.Generator) -> torch.Tensor:
    v, i = torch.randn(N, F, generator=gen).topk(K, dim=1)
    return torch.zeros(N, F).scatter_(1, i, v.relu())


def matching() -> dict:
    gen = torch.Generator().manual_seed(0)
    a = topk_codes(gen)
    keep = torch.rand(N, 1, generator=gen) < 0.7  # the next checkpoint keeps 70% of token rows' codes
    b = torch.where(keep, a, topk_codes(gen))
    err = float(np.abs(correlation(a, b, sparse=False) - correlation(a, b, sparse=True)).max())
    assert err < 1e-10, err
    r = correlation(a, b)
    idx = np.arange(F)
    t = interleaved_best({"dense": lambda: correlation(a, b, sparse=False),
                          "sparse": lambda: correlation(a, b, sparse=True),
                          "hungarian": lambda: hungarian(r, idx, idx),
                          "match": lambda: match_checkpoints(a, b, None, None, MatchConfig(n_null=0)),
                          "match_null2": lambda: match_checkpoints(a, b, None, None, MatchConfig(n_null=2))},
                         repeats=2)
    return {"n_tokens": N, "n_features": F, "k": K, "dense_correlation_s": t["dense"],
            "sparse_correlation_s": t["sparse"], "speedup_sparse_vs_dense": t["dense"] / t["sparse"],
            "max_abs_diff": err, "hungarian_s": t["hungarian"], "match_checkpoints_s": t["match"],
            "null_per_permutation_s": (t["match_null2"] - t["match"]) / 2}


def ablation() -> dict:
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=4096, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=64, rotary_pct=0.25)
    model = GPTNeoXForCausalLM(cfg).eval()
    ids = torch.randint(0, 4096, (32, 64), generator=torch.Generator().manual_seed(0))
    dicts = {s: Dictionary(DictionaryConfig(rule="topk", d_in=128, d_sae=512, k=16), seed=i).eval()
             for i, s in enumerate(SITES)}
    runner = AblationRunner(model, ids, dicts, batch_size=16)
    pop = {s: list(range(25)) for s in SITES}

    def clean():
        with torch.no_grad():
            for b in runner.batches:
                model(input_ids=b)

    t = interleaved_best({"clean": clean, "joint": lambda: runner.effect(pop)}, repeats=5)
    return {"ablation_tokens": ids.numel(), "clean_forward_s": t["clean"], "joint_population_s": t["joint"],
            "joint_vs_clean_ratio": t["joint"] / t["clean"]}


def main() -> None:
    torch.set_num_threads(1)
    import os

    emit("lifehistory_match", {**matching(), **ablation(), "load_avg_1min": os.getloadavg()[0],
                               "timer": "process_time (CPU seconds, 1 thread)",
                               "note": "shared 2-core machine (about 6 engineers); best of interleaved repeats"})


if __name__ == "__main__":
    main()

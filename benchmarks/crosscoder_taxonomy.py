"""Presence classes on planted life histories: class accuracy of L1 and BatchTopK crosscoders over K, noise
and k (the heavy version of tests/crosscoder/test_planted_taxonomy.py), or planted activation files for
`ontogeny crosscode --activations`.

    python benchmarks/crosscoder_taxonomy.py --ks 2,3,4,5 --noises 0,0.05,0.1 --rules relu,batchtopk --topk 3,6,12
    python benchmarks/crosscoder_taxonomy.py --write-files DIR --k-checkpoints 4

Prints one JSON object per run (K, rule, k, noise, per-class accuracy, FVU, dead, duplicates, split) and writes
benchmarks/results/crosscoder_taxonomy.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from ontogeny.crosscoding.planted import class_accuracy, planted_stack
from ontogeny.crosscoding.presence import presence_classes
from ontogeny.crosscoding.sparsity import diagnose
from ontogeny.dictionaries.crosscoder import CrossCoderConfig, fit_crosscoder
from ontogeny.dictionaries.train import TrainConfig

SCALES = [1.0, 3.0, 0.5, 2.0, 1.5, 0.8, 1.2, 2.5]


def one(k_ckpt: int, rule: str, k: int, noise: float, a) -> dict:
    p = planted_stack(k_ckpt, d_in=a.d_in, n_tokens=a.tokens, n_shared=a.shared, n_each=a.each, l0=a.l0,
                      noise=noise, scale_K=SCALES[:k_ckpt], seed=a.seed)
    g = len(p.present_GK)
    cfg = CrossCoderConfig(n_sources=k_ckpt, d_in=a.d_in, d_sae=2 * g, rule=rule, k=min(k, 2 * g),
                           threshold_start_step=min(1000, a.steps // 4))
    tcfg = TrainConfig(lr=a.lr, sparsity_warmup_steps=a.steps // 20, lr_end_fraction=0.0, b_dec_init="zeros",
                       log_every=max(1, a.steps // 20), dead_tokens=max(a.batch * 50, 100_000))
    t0 = time.perf_counter()
    cc, _ = fit_crosscoder(p.acts_NKD, cfg, tcfg, a.batch, a.steps, a.seed)
    names = [f"s{m}" for m in range(k_ckpt)]
    labels = presence_classes(cc.normalised_decoder_norms().detach().numpy(), names, a.tau)
    acc = class_accuracy(labels, cc.W_dec_FKD.detach() * cc.scale_K[None, :, None], p, names)
    rep = diagnose(cc, p.acts_NKD, planted=p, tau=a.tau)
    return {"K": k_ckpt, "rule": rule, "k": k if rule == "batchtopk" else "not used", "noise": noise,
            "min_class_accuracy": min(acc.values()), "accuracy": acc, **rep.row(),
            "wall_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", default="2,3,4,5")
    ap.add_argument("--noises", default="0,0.1")
    ap.add_argument("--rules", default="relu,batchtopk")
    ap.add_argument("--topk", default="3", help="BatchTopK k values")
    ap.add_argument("--d-in", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--shared", type=int, default=8)
    ap.add_argument("--each", type=int, default=2)
    ap.add_argument("--l0", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--tau", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-files", type=Path, default=None, help="write planted step files here and stop")
    ap.add_argument("--k-checkpoints", type=int, default=4)
    ap.add_argument("--noise", type=float, default=0.05)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.write_files is not None:
        p = planted_stack(a.k_checkpoints, d_in=a.d_in, n_tokens=a.tokens, n_shared=a.shared, n_each=a.each,
                          l0=a.l0, noise=a.noise, scale_K=SCALES[:a.k_checkpoints], seed=a.seed)
        for m in range(a.k_checkpoints):
            d = a.write_files / f"step_{(m + 1) * 100:06d}"
            d.mkdir(parents=True, exist_ok=True)
            save_file({"acts": p.acts_NKD[:, m].contiguous()}, str(d / "activations.safetensors"))
        print(json.dumps({"wrote": str(a.write_files), "steps": [(m + 1) * 100 for m in range(a.k_checkpoints)],
                          "features": len(p.present_GK), "tokens": a.tokens, "d_in": a.d_in}))
        return
    runs = []
    for k_ckpt in [int(x) for x in a.ks.split(",")]:
        for rule in a.rules.split(","):
            for k in ([int(x) for x in a.topk.split(",")] if rule == "batchtopk" else [32]):
                for noise in [float(x) for x in a.noises.split(",")]:
                    runs.append(one(k_ckpt, rule, k, noise, a))
                    print(json.dumps(runs[-1]), flush=True)
    out = Path(__file__).parent / "results" / "crosscoder_taxonomy.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"benchmark": "crosscoder_taxonomy", "args": vars(a) | {"write_files": None},
                               "runs": runs}, indent=1, default=str))


if __name__ == "__main__":
    main()

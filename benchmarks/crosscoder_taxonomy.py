"""Presence classes on planted life histories: class accuracy of L1 and BatchTopK crosscoders over K, noise
and k (the heavy version of tests/crosscoder/test_planted_taxonomy.py), or planted activation files for
`ontogeny crosscode --activations`.

    python benchmarks/crosscoder_taxonomy.py --ks 2,3,4,5 --noises 0,0.1 --rules relu,batchtopk --topk auto,12 --seeds 0,1
    python benchmarks/crosscoder_taxonomy.py --write-files DIR --k-checkpoints 4

Every crosscoder is trained through the command's own unit (`train_crosscoder_unit` from a `CrosscodeConfig`),
method knobs at their defaults unless a flag says otherwise (`--topk 3` fixes k, `--l1-unscaled` drops the
width reference of lambda). Prints one JSON object per run (K, rule, k asked / chosen / search trials, noise,
per-class accuracy, FVU, dead, duplicates, split) and writes `--out` (default
benchmarks/results/crosscoder_taxonomy.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from ontogeny.crosscoding.config import CrosscodeConfig
from ontogeny.crosscoding.pipeline import k_columns, train_crosscoder_unit
from ontogeny.crosscoding.planted import class_accuracy, planted_stack
from ontogeny.crosscoding.presence import presence_classes
from ontogeny.crosscoding.sparsity import diagnose

SCALES = [1.0, 3.0, 0.5, 2.0, 1.5, 0.8, 1.2, 2.5]


def one(k_ckpt: int, rule: str, k: str, noise: float, a, seed: int) -> dict:
    """One planted stack, one crosscoder through the command's own unit (`train_crosscoder_unit`)."""
    p = planted_stack(k_ckpt, d_in=a.d_in, n_tokens=a.tokens, n_shared=a.shared, n_each=a.each, l0=a.l0,
                      noise=noise, scale_K=SCALES[:k_ckpt], seed=seed)
    g = len(p.present_GK)
    cfg = CrosscodeConfig(steps=list(range(k_ckpt)), d_sae=2 * g, rule=rule, k=k if k == "auto" else int(k),
                          n_steps=a.steps, batch_size=a.batch, lr=a.lr, seed=seed, tasks=[],
                          l1_reference_width=None if a.l1_unscaled else 2048)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cc, _ = train_crosscoder_unit(p.acts_NKD, cfg, Path(tmp) / "cc", "planted")
    names = [f"s{m}" for m in range(k_ckpt)]
    labels = presence_classes(cc.normalised_decoder_norms().detach().numpy(), names, a.tau)
    acc = class_accuracy(labels, cc.W_dec_FKD.detach() * cc.scale_K[None, :, None], p, names)
    rep = diagnose(cc, p.acts_NKD, planted=p, tau=a.tau)
    return {"K": k_ckpt, "rule": rule, "seed": seed, "noise": noise, **k_columns(cc, cfg),
            "min_class_accuracy": min(acc.values()), "accuracy": acc, **rep.row(),
            "wall_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", default="2,3,4,5")
    ap.add_argument("--noises", default="0,0.1")
    ap.add_argument("--rules", default="relu,batchtopk")
    ap.add_argument("--topk", default="auto", help="BatchTopK k values ('auto' = the k search)")
    ap.add_argument("--seeds", default="0", help="seeds of the planted data and the crosscoder")
    ap.add_argument("--l1-unscaled", action="store_true", help="lambda as given (no width reference)")
    ap.add_argument("--d-in", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--shared", type=int, default=8)
    ap.add_argument("--each", type=int, default=2)
    ap.add_argument("--l0", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--tau", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "crosscoder_taxonomy.json"))
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
    for seed in [int(x) for x in a.seeds.split(",")]:
        for k_ckpt in [int(x) for x in a.ks.split(",")]:
            for rule in a.rules.split(","):
                for k in (a.topk.split(",") if rule == "batchtopk" else ["auto"]):
                    for noise in [float(x) for x in a.noises.split(",")]:
                        runs.append(one(k_ckpt, rule, k, noise, a, seed))
                        print(json.dumps(runs[-1]), flush=True)
    out = Path(a.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"benchmark": "crosscoder_taxonomy", "args": vars(a) | {"write_files": None},
                               "runs": runs}, indent=1, default=str))


if __name__ == "__main__":
    main()

"""What the allocator setting (src/ontogeny/allocator.py) buys: each workload in fresh processes with the
setting on and off (`ONTOGENY_NO_MALLOC_TUNING=1`), interleaved on/off/off/on, same threads.

Workloads (steady state: warm-up steps first, then timed steps):
  streamed_step   one step of the demo's streamed dictionary stage: a forward of 64 x 64 tokens through
                  the demo series' model (random init: the same cost as trained), both demo sites
                  captured, and one TopK step of each site's dictionary (d_in 128, 512 latents, k 16)
  sae_step        one TopK training step at the side-by-side benchmark's small shape (128 x 1024, batch
                  1024, k 32; benchmarks/sae_train.py)
  forward         the forward alone, as in streamed_step

Per run: median step time, page faults per step (minor faults, `getrusage`) and peak resident memory.
Ratios are off/on median times per on/off pair, then their median. Writes benchmarks/results/allocator.json.

    .venv/bin/python benchmarks/allocator.py [--threads 2] [--rounds 2] [--conditions "..."]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import emit

WORKLOADS = ("streamed_step", "sae_step", "forward")
SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def child(workload: str, threads: int, warmup: int, steps: int) -> dict:
    """Run one workload in this (fresh) process and return its figures."""
    import resource

    import torch

    from ontogeny import allocator
    from ontogeny.dictionaries import Dictionary, DictionaryConfig, TrainConfig, Trainer, kernels
    from ontogeny.dictionaries.stream import activation_chunks
    from ontogeny.series.train import SeriesConfig, build_model

    torch.set_num_threads(threads)
    kernels.warm_up()
    torch.manual_seed(0)
    if workload == "sae_step":
        model = Dictionary(DictionaryConfig(rule="topk", d_in=128, d_sae=1024, k=32), seed=0)
        trainer = Trainer(model, TrainConfig(lr=1e-3), total_steps=None)
        xs = [torch.randn(1024, 128) for _ in range(8)]

        def step(i: int) -> None:
            trainer.step(xs[i % 8])
    else:
        cfg = SeriesConfig()
        lm = build_model(cfg, vocab_size=cfg.vocab_size).eval()
        ids = [torch.randint(0, cfg.vocab_size, (64, cfg.context)) for _ in range(4)]
        trainers = [Trainer(Dictionary(DictionaryConfig(rule="topk", d_in=cfg.d_model, d_sae=4 * cfg.d_model, k=16),
                                       seed=0), TrainConfig(lr=3e-3), total_steps=None) for _ in SITES]

        def step(i: int) -> None:
            chunk = next(activation_chunks(lm, [ids[i % 4]], SITES))
            if workload == "streamed_step":
                for site, trainer in zip(SITES, trainers, strict=True):
                    trainer.step(chunk[site])
    for i in range(warmup):
        step(i)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"setting_applied": allocator.applied(), "median_step_ms": round(1e3 * statistics.median(times), 2),
            "faults_per_step": round((usage.ru_minflt - faults0) / steps, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def run_child(workload: str, on: bool, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env.pop("ONTOGENY_NO_MALLOC_TUNING", None)
    if not on:
        env["ONTOGENY_NO_MALLOC_TUNING"] = "1"
    cmd = [sys.executable, __file__, "--child", workload, "--threads", str(args.threads),
           "--warmup", str(args.warmup), "--steps", str(args.steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="on/off/off/on rounds per workload")
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--conditions", default="not stated")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.warmup, args.steps)))
        return
    load_before = os.getloadavg()
    rows = []
    for workload in args.workloads.split(","):
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.rounds):
            for on in (True, False, False, True):
                runs[on].append(run_child(workload, on, args))
        pairs = [off["median_step_ms"] / on["median_step_ms"] for on, off in zip(runs[True], runs[False], strict=True)]
        row = {"workload": workload, "threads": args.threads, "on": runs[True], "off": runs[False],
               "speedup_pairs": [round(p, 3) for p in pairs], "speedup": round(statistics.median(pairs), 3)}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("workload", "speedup", "speedup_pairs")}), flush=True)
    emit("allocator", {"command": " ".join(["benchmarks/allocator.py", *sys.argv[1:]]),
                       "conditions": args.conditions, "load_average_before": [round(v, 2) for v in load_before],
                       "load_average_after": [round(v, 2) for v in os.getloadavg()],
                       "order": "on, off, off, on per round", "ratios": "off / on median step time, median of pairs",
                       "results": rows})


if __name__ == "__main__":
    main()

"""Scale drill: the streamed dictionary stage on a Pythia-70M-shaped series, and a Pythia-160M projection.

What it measures (one JSON object; issue 12 item 5):
  - a GPT-NeoX series with Pythia-70M's real config (6 layers, d_model 512, 8 heads, d_mlp 2048, vocab 50304,
    rotary_pct 0.25, parallel residual), checkpoints from random init (seeds), saved and loaded from disk;
  - the streamed stage over all 6 layers (`blocks.L.hook_resid_post`, one TopK dictionary each, all six
    trained in ONE pass of the checkpoint's forward): tokens/s of forward + 6 dictionaries;
  - the same 6 dictionaries trained on pre-cached activations of the same number of tokens (training only;
    the caching time is reported apart): tokens/s, and the ratio streamed / cached (target >= 0.8), and
    streamed / (caching + training), the like-for-like ratio when the cached pipeline's activations are
    computed for this stage too;
  - peak resident memory of the streamed stage at two token budgets, each in a fresh child process
    (must be flat: the buffer is bounded, nothing grows with the budget);
  - measured per-token costs of a Pythia-160M-shaped forward (12 layers, d 768) and of one d_in-768
    dictionary step, and from them the projected cost of a Pythia-160M study (154 checkpoints x 12 layers x
    20M tokens): on this machine, on a Ray cluster of such machines, and (with --device cuda) on one GPU.
Tokens are random ids from one fixed stream (the forward's cost does not depend on which tokens).

Run: python benchmarks/scale_drill.py [--device cuda] [--budgets 32768 98304]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from _common import emit
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.store_train import stream_train
from ontogeny.dictionaries.stream import StreamConfig, TrainingWindows, activation_chunks
from ontogeny.dictionaries.train import TrainConfig, train_many

# Pythia's published configs (EleutherAI/pythia-70m and -160m config.json)
PYTHIA = {
    "70m": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048),
    "160m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
COMMON = dict(vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000,
              use_parallel_residual=True, hidden_act="gelu", layer_norm_eps=1e-5, tie_word_embeddings=False,
              initializer_range=0.02, attention_dropout=0.0, hidden_dropout=0.0)
STUDY = {"checkpoints": 154, "layers": 12, "tokens_per_dictionary": 20_000_000}


def pythia_config(size: str) -> GPTNeoXConfig:
    return GPTNeoXConfig(**COMMON, **PYTHIA[size])


def sites_of(n_layers: int) -> list[str]:
    return [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def dict_cfg(d_in: int, expansion: int, k: int) -> DictionaryConfig:
    return DictionaryConfig(rule="topk", d_in=d_in, d_sae=expansion * d_in, k=k)


def token_windows(ctx: int, seed: int = 0) -> TrainingWindows:
    stream = torch.randint(0, COMMON["vocab_size"], (2_000_000,), generator=torch.Generator().manual_seed(seed))
    return TrainingWindows(stream, ctx, seed)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def streamed_stage(model, args, budget: int, device: str) -> dict:
    """Train one dictionary per layer in one streamed pass of `budget` tokens; returns timings."""
    sites = sites_of(model.config.num_hidden_layers)
    dicts = {s: Dictionary(dict_cfg(model.config.hidden_size, args.expansion, args.k), seed=0).to(device)
             for s in sites}
    stream = StreamConfig(training_tokens=budget, batch_size=args.batch, buffer_tokens=args.buffer,
                          forward_seqs=args.forward_seqs, ctx=args.ctx)
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    results, info = stream_train(model, token_windows(args.ctx), dicts, TrainConfig(lr=1e-3), stream, device=device)
    sync(device)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    tokens = results[sites[0]].tokens
    return {"tokens_per_dictionary": tokens, "seconds": dt, "cpu_seconds": dc, "tokens_per_s": tokens / dt,
            "tokens_per_cpu_s": tokens / dc,
            "max_buffer_rows": info["max_buffer_rows"],
            "final_fvu": {s: round(results[s].final().get("fvu", float("nan")), 4) for s in sites}}


def cached_stage(model, args, n_tokens: int, device: str) -> dict:
    """Cache the same 6 sites for `n_tokens` tokens in memory, then train the same 6 dictionaries on them."""
    sites = sites_of(model.config.num_hidden_layers)
    n_seqs = math.ceil(n_tokens / args.ctx)
    it = token_windows(args.ctx).batches(args.forward_seqs)
    sync(device)
    t0 = time.perf_counter()
    parts = list(activation_chunks(model, (next(it) for _ in range(math.ceil(n_seqs / args.forward_seqs))), sites,
                                   device))
    acts = {s: torch.cat([p[s] for p in parts])[:n_tokens] for s in sites}
    sync(device)
    t_cache = time.perf_counter() - t0
    scales = {s: float(math.sqrt(a.shape[1] / a.pow(2).sum(1).mean())) for s, a in acts.items()}
    dicts = [Dictionary(dict_cfg(model.config.hidden_size, args.expansion, args.k), seed=0).to(device)
             for _ in sites]
    n_steps = n_tokens // args.batch
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(n_tokens, generator=gen).to(device)

    def data():
        for i in range(n_steps):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            yield [acts[s][idx] * scales[s] for s in sites]

    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    train_many(dicts, data(), TrainConfig(lr=1e-3), total_steps=n_steps)
    sync(device)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    tokens = n_steps * args.batch
    return {"tokens_per_dictionary": tokens, "cache_seconds": t_cache, "train_seconds": dt, "train_cpu_seconds": dc,
            "tokens_per_s": tokens / dt, "tokens_per_cpu_s": tokens / dc, "forward_tokens_per_s": n_tokens / t_cache}


def per_token_costs(size: str, args, device: str, n_tokens: int) -> dict:
    """Seconds per token of one body forward (all layers) and of one dictionary training step, at `size`."""
    cfg = pythia_config(size)
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(cfg).eval().to(device)
    sites = sites_of(cfg.num_hidden_layers)
    it = token_windows(args.ctx).batches(args.forward_seqs)
    batches = [next(it) for _ in range(max(2, n_tokens // (args.ctx * args.forward_seqs)))]
    list(activation_chunks(model, batches[:1], sites, device))  # warm-up
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in activation_chunks(model, batches[1:], sites, device):
        pass
    sync(device)
    n_fwd = len(batches[1:]) * args.forward_seqs * args.ctx
    fwd, fwd_cpu = (time.perf_counter() - t0) / n_fwd, (time.process_time() - c0) / n_fwd
    d = Dictionary(dict_cfg(cfg.hidden_size, args.expansion, args.k), seed=0).to(device)
    x = torch.randn(args.batch, cfg.hidden_size, device=device)
    n_steps = max(3, n_tokens // args.batch)
    train_many([d], [x] * 2, TrainConfig(lr=1e-3), total_steps=2)
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    train_many([d], [x] * n_steps, TrainConfig(lr=1e-3), total_steps=n_steps)
    sync(device)
    dic, dic_cpu = (time.perf_counter() - t0) / (n_steps * args.batch), (time.process_time() - c0) / (n_steps * args.batch)
    del model
    threads = torch.get_num_threads()
    return {"forward_s_per_token_wall": fwd, "dictionary_s_per_token_wall": dic,
            "forward_cpu_s_per_token": fwd_cpu, "dictionary_cpu_s_per_token": dic_cpu,
            # idle-core estimate: CPU-seconds spread over the threads (contention inflates wall, not CPU time)
            "forward_s_per_token": fwd_cpu / threads if device == "cpu" else fwd,
            "dictionary_s_per_token": dic_cpu / threads if device == "cpu" else dic, "d_model": cfg.hidden_size,
            "layers": cfg.num_hidden_layers, "d_sae": args.expansion * cfg.hidden_size}


def project(costs: dict, load_s: float, workers: tuple[int, ...] = (8, 32, 154)) -> dict:
    """Cost of the Pythia-160M study from per-token costs: per checkpoint, T x (forward + L x dictionary)."""
    T, L, C = STUDY["tokens_per_dictionary"], STUDY["layers"], STUDY["checkpoints"]
    per_ckpt = T * (costs["forward_s_per_token"] + L * costs["dictionary_s_per_token"]) + load_s
    total = C * per_ckpt
    return {"seconds_per_checkpoint": per_ckpt, "hours_one_machine": total / 3600,
            "days_one_machine": total / 86400,
            "ray_hours_shared_init": {str(w): math.ceil(C / w) * per_ckpt / 3600 for w in workers},
            "ray_note": "shared init: the 154 checkpoint units are independent, so a cluster of W such machines "
                        "takes ceil(154/W) units of time each (model load included, data transfer not); warm "
                        "start chains the checkpoints and gets no speed-up from W (hours_one_machine)"}


def child(args) -> None:
    """One streamed stage at one budget in this fresh process; prints its timings and peak memory."""
    torch.set_num_threads(args.threads)
    model = GPTNeoXForCausalLM.from_pretrained(args.checkpoint).eval().to(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = streamed_stage(model, args, args.child_budget, args.device)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_stage_mib"] = base_rss
    if args.device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print("CHILD " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--budgets", type=int, nargs=2, default=[16384, 65536], help="two token budgets (memory)")
    ap.add_argument("--rate-tokens", type=int, default=32768, help="tokens per dictionary of the rate comparison")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--forward-seqs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--buffer", type=int, default=16384)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--checkpoints", type=int, default=2)
    ap.add_argument("--contention", default="measured while other jobs shared the machine's 2 cores",
                    help="how the machine was loaded (recorded in the JSON)")
    ap.add_argument("--child-budget", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_budget:
        child(args)
        return
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="scale_drill_"))
    cfg = pythia_config("70m")
    steps = []
    for i in range(args.checkpoints):  # a "series" of random-init checkpoints, one seed each
        torch.manual_seed(i)
        GPTNeoXForCausalLM(cfg).save_pretrained(tmp / f"step_{i:06d}")
        steps.append(i)

    rows = []
    load_times = []
    for step in steps:  # the stage per checkpoint: load it once, stream to all six sites, free it
        t0 = time.perf_counter()
        model = GPTNeoXForCausalLM.from_pretrained(tmp / f"step_{step:06d}").eval().to(args.device)
        load_times.append(time.perf_counter() - t0)
        # interleaved: streamed, cached, on the same checkpoint, so background load hits both alike
        s = streamed_stage(model, args, args.rate_tokens, args.device)
        c = cached_stage(model, args, args.rate_tokens, args.device)
        # also against caching + training (what a cached pipeline pays: the activations must be computed once)
        both = c["tokens_per_dictionary"] / (c["cache_seconds"] + c["train_seconds"])
        rows.append({"step": step, "load_seconds": load_times[-1], "streamed": s, "cached": c,
                     "ratio_streamed_over_cached": s["tokens_per_s"] / c["tokens_per_s"],
                     "ratio_streamed_over_cache_plus_train": s["tokens_per_s"] / both})
        del model

    memory = []
    for budget in args.budgets:
        cmd = [sys.executable, __file__, "--child-budget", str(budget), "--checkpoint", str(tmp / "step_000000"),
               "--device", args.device, "--threads", str(args.threads), "--ctx", str(args.ctx),
               "--forward-seqs", str(args.forward_seqs), "--batch", str(args.batch), "--buffer", str(args.buffer),
               "--expansion", str(args.expansion), "--k", str(args.k)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("CHILD ")][-1]
        memory.append({"budget_tokens": budget, **json.loads(line[6:])})
    peak_key = "peak_cuda_mib" if args.device.startswith("cuda") else "peak_rss_mib"
    growth = memory[1][peak_key] / memory[0][peak_key]

    costs70 = per_token_costs("70m", args, args.device, 8192)
    costs160 = per_token_costs("160m", args, args.device, 8192)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    GPTNeoXForCausalLM(pythia_config("160m")).save_pretrained(tmp / "p160")
    t0 = time.perf_counter()
    GPTNeoXForCausalLM.from_pretrained(tmp / "p160").to(args.device)
    load160 = time.perf_counter() - t0
    ratio = min(r["ratio_streamed_over_cached"] for r in rows)
    ratio_cpu = min(r["streamed"]["tokens_per_cpu_s"] / r["cached"]["tokens_per_cpu_s"] for r in rows)
    on = "one GPU (" + args.device + ")" if args.device.startswith("cuda") else "this machine (CPU)"
    result = {
        "device": args.device, "threads": args.threads, "contention": args.contention,
        "settings": {"ctx": args.ctx, "forward_seqs": args.forward_seqs, "batch": args.batch,
                     "buffer_tokens": args.buffer, "expansion": args.expansion, "k": args.k, "rule": "topk",
                     "sites": sites_of(6), "tokens": "random ids of one fixed stream"},
        "pythia70m_config": {**COMMON, **PYTHIA["70m"]},
        "checkpoints": rows,
        "ratio_streamed_over_cached_min": ratio, "ratio_streamed_over_cached_cpu_time": ratio_cpu,
        "ratio_streamed_over_cache_plus_train_min": min(r["ratio_streamed_over_cache_plus_train"] for r in rows),
        "target_ratio": 0.8, "ratio_met": ratio >= 0.8,
        "memory": memory, "peak_growth_ratio": growth, "memory_flat": abs(growth - 1) < 0.05,
        "per_token_costs": {"pythia70m": costs70, "pythia160m": costs160},
        "projection_pythia160m": {"study": STUDY, "measured_on": on, "checkpoint_load_seconds": load160,
                                  "basis": "per-token CPU-seconds / threads on CPU (an idle-core estimate), wall "
                                           "time on CUDA",
                                  **project(costs160, load160)},
        "gpu": ("measured here" if args.device.startswith("cuda") else
                "unrun: no GPU was available; rerun with --device cuda for the one-GPU projection"),
        "wall_seconds": time.perf_counter() - t_all,
    }
    emit("scale_drill" + ("_cuda" if args.device.startswith("cuda") else ""), result)


if __name__ == "__main__":
    main()

"""Defaults of the streamed dictionary stage on the embedded model: a small sweep, and the demo's arithmetic.

1. Sweep (lr x batch x warm-up) of TopK dictionaries (d_sae = 4 x 128, k = 16) at both demo sites of one
   checkpoint, each trained on `--sweep-tokens` tokens of the corpus's train split (captured once, then fed
   through the same mixing buffer as the streamed path: equal by tests/stream), scored on the HELD-OUT
   evaluation set (the study's shared token set: corpus eval split): FVU, L0, dead fraction, CE recovered.
2. Rates: body forward tokens/s (both sites captured, no unembedding) and one streamed pass of
   `--demo-tokens` tokens per dictionary (forward + 2 dictionaries), and the demo's arithmetic: seconds for
   all checkpoints vs a log-spaced subset.

Run: python benchmarks/stream_sweep.py --series runs/demo/series --step 1600
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from _common import emit
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.metrics import reconstruction_metrics, splice_metrics
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.store_train import stream_train
from ontogeny.dictionaries.stream import (MixingBuffer, StreamConfig, TrainingWindows, activation_chunks,
                                          corpus_train_stream, input_scale)
from ontogeny.dictionaries.train import TrainConfig, train_many
from ontogeny.series.capture import TokenSetConfig, capture_all, series_corpus, shared_token_ids
from ontogeny.series.load import load_series

SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", required=True)
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--sweep-tokens", type=int, default=262_144)
    ap.add_argument("--demo-tokens", type=int, default=1_048_576)
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    ap.add_argument("--batches", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--warmups", type=float, nargs="+", default=[0.0, 0.05], help="lr warm-up, share of steps")
    ap.add_argument("--checkpoints", type=int, default=24, help="checkpoints of the demo series")
    ap.add_argument("--contention", default="measured while other jobs shared the machine's 2 cores")
    args = ap.parse_args()
    series = load_series(args.series, steps=[args.step])
    model = series.model(args.step)
    corpus = series_corpus(args.series)
    eval_ids = shared_token_ids(series.tokenizer, corpus, TokenSetConfig())
    eval_acts = capture_all(model, eval_ids, SITES)
    t0 = time.perf_counter()
    train_stream = corpus_train_stream(series.tokenizer, corpus)
    t_tok = time.perf_counter() - t0
    windows = TrainingWindows(train_stream, ctx=eval_ids.shape[1], seed=0)

    # cache the sweep's training rows once (the buffer then mixes them exactly as the stream would)
    it = windows.batches(64)
    chunks = list(activation_chunks(model, (next(it) for _ in range(args.sweep_tokens // (64 * 64))), SITES))
    scales = {s: input_scale(torch.cat([c[s] for c in chunks[:16]])) for s in SITES}
    d_in = series.d_model
    rows = []
    for lr, batch, warm in itertools.product(args.lrs, args.batches, args.warmups):
        n_steps = args.sweep_tokens // batch
        dicts = [Dictionary(DictionaryConfig(rule="topk", d_in=d_in, d_sae=4 * d_in, k=16), seed=0) for _ in SITES]
        data = ([b[s] * scales[s] for s in SITES] for b in MixingBuffer(65536, batch, 0).batches(chunks))
        tcfg = TrainConfig(lr=lr, lr_warmup_steps=int(warm * n_steps), dead_tokens=args.sweep_tokens // 4)
        t0, c0 = time.perf_counter(), time.process_time()
        train_many(dicts, itertools.islice(data, n_steps), tcfg, total_steps=n_steps)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        for s, d in zip(SITES, dicts, strict=True):
            d.fold_input_scale(scales[s])
            rec = reconstruction_metrics(d, eval_acts[s])
            sp = splice_metrics(model, eval_ids[:16], s, d)
            rows.append({"lr": lr, "batch": batch, "warmup_frac": warm, "site": s, "steps": n_steps,
                         "train_seconds_both_sites": round(dt, 2), "train_cpu_seconds_both_sites": round(dc, 2),
                         "fvu": round(rec["fvu"], 4),
                         "l0": round(rec["l0"], 2), "dead_frac": round(rec["dead_frac"], 4),
                         "ce_recovered": round(sp["ce_recovered"], 4)})
            print("SWEEP", rows[-1], flush=True)
    by_cfg = {}
    for r in rows:
        by_cfg.setdefault((r["lr"], r["batch"], r["warmup_frac"]), []).append(r["fvu"])
    best = min(by_cfg, key=lambda k: sum(by_cfg[k]))

    # rates: forward only, and one streamed pass at the demo budget with the chosen settings
    it = windows.batches(64)
    fb = [next(it) for _ in range(32)]
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in activation_chunks(model, fb, SITES):
        pass
    fwd_rate = 32 * 64 * 64 / (time.perf_counter() - t0)
    fwd_cpu_per_token = (time.process_time() - c0) / (32 * 64 * 64)
    print("FORWARD", fwd_rate, fwd_cpu_per_token, flush=True)
    stream = StreamConfig(training_tokens=args.demo_tokens, batch_size=best[1])
    dicts = {s: Dictionary(DictionaryConfig(rule="topk", d_in=d_in, d_sae=4 * d_in, k=16), seed=0) for s in SITES}
    tcfg = TrainConfig(lr=best[0], lr_warmup_steps=int(best[2] * stream.n_steps), dead_tokens=args.demo_tokens // 4)
    t0, c0 = time.perf_counter(), time.process_time()
    res, _ = stream_train(model, windows, dicts, tcfg, stream)
    t_stream, c_stream = time.perf_counter() - t0, time.process_time() - c0
    demo_eval = {s: {**{k: round(v, 4) for k, v in reconstruction_metrics(dicts[s], eval_acts[s]).items()},
                     "ce_recovered": round(splice_metrics(model, eval_ids[:16], s, dicts[s])["ce_recovered"], 4)}
                 for s in SITES}
    threads = torch.get_num_threads()
    per_ckpt = c_stream / threads  # CPU-seconds / threads: the wall time on idle cores if both are kept busy
    emit("stream_sweep", {
        "contention": args.contention, "series": args.series, "step": args.step,
        "train_stream_tokens": int(train_stream.numel()), "tokenize_seconds": t_tok,
        "eval_tokens": int(eval_ids.numel()), "sweep_tokens": args.sweep_tokens, "sweep": rows,
        "best": {"lr": best[0], "batch": best[1], "warmup_frac": best[2], "mean_fvu": sum(by_cfg[best]) / 2},
        "threads": threads, "forward_tokens_per_s_wall": fwd_rate, "forward_cpu_s_per_token": fwd_cpu_per_token,
        "streamed_pass": {"tokens_per_dictionary": res[SITES[0]].tokens, "seconds": t_stream,
                          "cpu_seconds": c_stream, "tokens_per_s_wall": res[SITES[0]].tokens / t_stream,
                          "tokens_per_cpu_s": res[SITES[0]].tokens / c_stream, "held_out": demo_eval},
        "demo_arithmetic": {"basis": "CPU-seconds of one streamed checkpoint / threads (idle-core estimate)",
                            "seconds_per_checkpoint": round(per_ckpt, 1),
                            **{f"{n}_checkpoints_seconds": round(n * per_ckpt, 1) for n in (args.checkpoints, 12)}},
    })


if __name__ == "__main__":
    main()

"""Training throughput of the embedded series' loop vs a bare training step, measured in the same run.

`ours`: one step of `train_series`' loop (batch assembly with synthetic rows, per-row loss, AdamW, clip).
`bare`: the same model and optimiser on a fixed pre-built batch (same shapes) with the model's own loss. The ratio
shows what the data mix and bookkeeping cost on top of the arithmetic. Also reports tokens/s, so the
default run's wall time on this machine is `n_steps * tokens_per_step / tokens_per_s` plus set-up.
Run: python benchmarks/series_train.py [--threads 2] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import emit, interleaved_best
from ontogeny.series.corpus import build_corpus
from ontogeny.series.data import TokenData
from ontogeny.series.tokenizer import train_tokenizer
from ontogeny.series.train import SeriesConfig, build_model, make_optimizer, train_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed block")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SeriesConfig()
    t0 = time.perf_counter()
    corpus = build_corpus(cfg.seed, cfg.corpus)
    t_corpus = time.perf_counter() - t0
    tok = train_tokenizer(corpus, cfg.vocab_size)
    t_tok = time.perf_counter() - t0 - t_corpus
    data = TokenData.build(corpus, tok, cfg.synthetic, cfg.context, cfg.eval_windows, cfg.seed)
    t_data = time.perf_counter() - t0 - t_corpus - t_tok

    def make():
        model = build_model(cfg, len(tok)).train()
        return model, make_optimizer(model, cfg)

    ours_m, ours_opt = make()
    bare_m, bare_opt = make()
    nat_BT, syn_BS = data.batch(0, cfg.batch_size, cfg.synthetic_rows, cfg.synthetic_context)
    counter = [0]

    def ours():
        for _ in range(args.steps):
            train_step(ours_m, ours_opt, data, cfg, counter[0], 1e-4)
            counter[0] += 1

    def bare():
        for _ in range(args.steps):
            loss = (bare_m(input_ids=nat_BT, labels=nat_BT).loss
                    + bare_m(input_ids=syn_BS, labels=syn_BS).loss)
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()

    best = interleaved_best({"ours": ours, "bare": bare}, repeats=args.repeats)
    tokens = args.steps * (cfg.batch_size * cfg.context + cfg.synthetic_rows * cfg.synthetic_context)
    tps = {k: tokens / v for k, v in best.items()}
    emit("series_train", {
        "config": {"n_layers": cfg.n_layers, "d_model": cfg.d_model, "vocab": cfg.vocab_size,
                   "batch_size": cfg.batch_size, "context": cfg.context, "synthetic_rows": cfg.synthetic_rows,
                   "synthetic_context": cfg.synthetic_context, "n_steps": cfg.n_steps},
        "setup_s": {"corpus": t_corpus, "tokenizer": t_tok, "tokenise": t_data},
        "tokens_per_s": tps, "s_per_step": {k: v / args.steps for k, v in best.items()},
        "ratio_ours_vs_bare": tps["ours"] / tps["bare"],
        "projected_default_train_s": cfg.n_steps * best["ours"] / args.steps,
        "note": "best of interleaved blocks; the machine is shared, so absolute figures are noisy",
    })


if __name__ == "__main__":
    main()

"""Activation capture throughput vs a bare forward pass, measured in the same run.

Target (issue 2): capture tokens/s >= 0.85x the bare forward's. Capture keeps references to tensors the
forward computes anyway, then copies them out; `stop_early` skips layers after the last site.
Run: python benchmarks/capture.py [--device cuda]
"""

from __future__ import annotations

import argparse

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from _common import emit, interleaved_best
from ontogeny.series.capture import capture_all

CONFIGS = {
    "embedded (2L d128)": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512),
    "pythia-14m-like (6L d128)": dict(hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
                                      intermediate_size=512),
    "pythia-70m-like (6L d512)": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                                      intermediate_size=2048),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-seqs", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, kw in CONFIGS.items():
        cfg = GPTNeoXConfig(vocab_size=4096, max_position_embeddings=args.ctx, **kw)
        model = GPTNeoXForCausalLM(cfg).eval().to(args.device)
        ids = torch.randint(0, 4096, (args.n_seqs, args.ctx))
        n_tok = ids.numel()
        L = cfg.num_hidden_layers

        @torch.no_grad()
        def bare():
            for i in range(0, args.n_seqs, args.batch):
                model(input_ids=ids[i:i + args.batch].to(args.device))

        every_layer = [f"blocks.{l}.hook_resid_post" for l in range(L)]
        t = interleaved_best({
            "bare": bare,
            "all": lambda: capture_all(model, ids, every_layer, args.batch),
            "mid": lambda: capture_all(model, ids, [f"blocks.{L // 2}.hook_resid_post"], args.batch)})
        t_bare, t_all, t_mid = t["bare"], t["all"], t["mid"]
        rows.append({"model": name, "tokens": n_tok,
                     "bare_forward_tok_s": n_tok / t_bare,
                     "capture_all_layers_tok_s": n_tok / t_all,
                     "capture_all_layers_ratio": t_bare / t_all,
                     "capture_mid_layer_stop_early_tok_s": n_tok / t_mid,
                     "capture_mid_layer_ratio": t_bare / t_mid})
    emit("capture", {"device": args.device, "target_ratio": 0.85, "results": rows,
                     "min_ratio_all_layers": min(r["capture_all_layers_ratio"] for r in rows)})


if __name__ == "__main__":
    main()

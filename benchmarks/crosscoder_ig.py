"""Integrated-gradient indirect effects: all interpolation steps in one batched forward/backward (ontogeny)
vs one forward/backward per step (the plain loop of the feature-circuits reference), measured in one run.

Model: a random GPT-NeoX of the embedded default's shape (2 layers, d_model 128, 4 heads, vocab 4096);
K=3 checkpoints (three seeds), a 512-latent crosscoder, 32 prompts of 24 tokens, 10 IG steps.
Prints one JSON object and writes benchmarks/results/crosscoder_ig.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ontogeny.causal.attribution import _splice, ig_token_effects, logit_diff, site_stack
from ontogeny.dictionaries.crosscoder import CrossCoder, CrossCoderConfig
from ontogeny.series.sites import patched

torch.set_num_threads(1)
SITE, STEPS, B, T, F = "blocks.1.hook_resid_pre", 10, 32, 24, 512


def loop_effects(model, m, cc, ids, last, correct, wrong, codes, err, steps):
    """Reference: one forward and backward per interpolation step."""
    grad_a = torch.zeros_like(codes)
    grad_e = torch.zeros_like(err[:, m])
    for k in range(steps):
        alpha = k / steps
        a = ((1 - alpha) * codes).requires_grad_(True)
        e = ((1 - alpha) * err[:, m]).requires_grad_(True)
        x = cc.decode(a)[:, m] + e
        with patched(model, {SITE: _splice(x.reshape(B, T, -1))}):
            mu = logit_diff(model(input_ids=ids).logits.float(), last, correct, wrong)
        ga, ge = torch.autograd.grad(mu.sum(), (a, e))
        grad_a += ga / steps
        grad_e += ge / steps
    return (-codes * grad_a).reshape(B, T, -1), (-(err[:, m] * grad_e).sum(-1)).reshape(B, T)


def main() -> dict:
    cfg = GPTNeoXConfig(vocab_size=4096, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=128, rotary_pct=0.25)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(GPTNeoXForCausalLM(cfg).eval())
    cc = CrossCoder(CrossCoderConfig(n_sources=3, d_in=128, d_sae=F, dec_init_norm=0.5), seed=0).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 4096, (B, T), generator=g)
    last = torch.full((B,), T - 1)
    correct, wrong = torch.randint(0, 4096, (B,), generator=g), torch.randint(0, 4096, (B,), generator=g)
    with torch.no_grad():
        x = site_stack(models, SITE, ids).reshape(-1, 3, 128)
        codes = cc.encode(x)
        err = x - cc.decode(codes)
    times = {"batched": [], "loop": []}
    diffs = []
    for rep in range(3):
        for name in ("batched", "loop"):
            t0 = time.perf_counter()
            outs = []
            for m, model in enumerate(models):
                fn = ig_token_effects if name == "batched" else loop_effects
                outs.append(fn(model, m, cc, SITE, ids, last, correct, wrong, codes, err, STEPS)
                            if name == "batched" else fn(model, m, cc, ids, last, correct, wrong, codes, err, STEPS))
            times[name].append(time.perf_counter() - t0)
            if name == "batched":
                batched = outs
            else:
                diffs.append(max(float((a[0] - b[0]).abs().max()) for a, b in zip(batched, outs)))
    best = {k: min(v) for k, v in times.items()}
    out = {"benchmark": "crosscoder_ig", "prompts": B, "tokens_per_prompt": T, "checkpoints": 3, "latents": F,
           "ig_steps": STEPS, "batched_s": round(best["batched"], 3), "loop_s": round(best["loop"], 3),
           "speedup_vs_loop": round(best["loop"] / best["batched"], 2),
           "max_abs_effect_diff": max(diffs), "torch_threads": torch.get_num_threads(),
           "note": "best of 3; CPU shared with other jobs"}
    path = Path(__file__).parent / "results" / "crosscoder_ig.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

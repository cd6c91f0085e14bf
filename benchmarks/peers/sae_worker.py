"""One timed SAE training run of one library (ontogeny or SAELens), in a fresh process with fixed threads.

Run by benchmarks/sae_train.py under the main venv (`--impl ontogeny`) or the peer venv `.venv-peers`
(`--impl saelens`, sae-lens from PyPI); it imports only torch and the library it times, and prints one JSON
object. Both libraries see identical data: the planted generator below is plain torch, seeded, and both
venvs hold the same CPU torch.

modes:
  throughput  median wall and CPU time of `--steps` optimiser steps on one fixed batch [B, D], for each
              `rule:regime` of `--configs` in turn (same order for both libraries); `--regime sparse`
              sets relu/jumprelu to a trained SAE's sparsity (L0 ~ k, through the encoder bias or the
              thresholds), `dense` leaves them at initialisation. Also the best fp32 matmul rate of the
              encoder-shaped product here and now (the peak).
  ttq         time to quality: train on fresh planted batches until FVU <= target, mean max cosine
              (MMCS) of the planted directions >= target and (`--max-l0`) mean L0 <= target on a held-out
              set; wall time excludes evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def planted(d: int, n_feat: int, n_active: int, seed: int):
    """Unit directions G [n_feat, d] and a sampler of x = codes G (+ noise); magnitudes U[0.5, 1.5]."""
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(n_feat, d, generator=gen)
    G = G / G.norm(dim=1, keepdim=True)

    def sample(n: int, g: torch.Generator, noise: float = 0.0) -> torch.Tensor:
        idx = torch.rand(n, n_feat, generator=g).topk(n_active, dim=1).indices
        mags = 0.5 + torch.rand(n, n_active, generator=g)
        x = torch.zeros(n, n_feat).scatter(1, idx, mags) @ G
        return x + noise * torch.randn(n, d, generator=g) if noise else x

    return G, sample


def matmul_peak(B: int, D: int, F: int, reps: int = 5) -> float:
    a, b = torch.randn(B, D), torch.randn(D, F)
    a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * B * D * F / (time.perf_counter() - t))
    return best


# SAELens's default; `--ontogeny-jumprelu-init` changes ontogeny's (None: ontogeny's own default)
JUMPRELU_INIT: float | None = 0.01
DECODER_INIT_NORM: float | None = None  # `--ontogeny-decoder-init-norm`: a control (SAELens's init)


class Ontogeny:
    def __init__(self, rule: str, D: int, F: int, k: int, lr: float, coef: float, threshold_from_step1: bool = True):
        from ontogeny.dictionaries import Dictionary, DictionaryConfig, TrainConfig, Trainer

        # jumprelu: SAELens's default bandwidth and initial threshold (JumpReLUTrainingSAEConfig), so both
        # libraries train the same hyperparameters
        kw = ({"l1_coefficient": coef} if rule == "relu" else
              {"l0_coefficient": coef, "jumprelu_bandwidth": 0.05} if rule == "jumprelu" else {})
        if rule == "jumprelu" and JUMPRELU_INIT is not None:
            kw["jumprelu_init_threshold"] = JUMPRELU_INIT
        if threshold_from_step1:  # throughput: batchtopk's threshold EMA runs every timed step
            kw["threshold_start_step"] = 1
        from ontogeny.dictionaries import kernels

        # the compiled selection kernels load (or compile) at their first call: do it before any timing,
        # as importing a library is, and record how long it took
        self.kernel_load_s = kernels.warm_up()
        self.model = Dictionary(DictionaryConfig(rule=rule, d_in=D, d_sae=F, k=k, **kw))
        if DECODER_INIT_NORM is not None:  # SAELens's heuristic init: rows at this norm, W_enc = W_dec^T
            with torch.no_grad():
                W = self.model.W_dec_FD
                W.mul_(DECODER_INIT_NORM / W.norm(dim=1, keepdim=True))
                self.model.W_enc_DF.copy_(W.t())
        self.trainer = Trainer(self.model, TrainConfig(lr=lr, b_dec_init="zeros"), total_steps=None)

    def step(self, x):
        self.trainer.step(x)

    def params(self):
        m = self.model
        return m.W_enc_DF, m.b_enc_F, m.W_dec_FD, getattr(m.rule, "log_threshold_F", None), "log"

    def encode(self, x):
        self.model.eval()
        with torch.no_grad():
            c = self.model.encode(x)
            r = self.model.decode(c)
        self.model.train()
        return c, r

    def set_sparse(self, density: float):
        self.model._density = density


class SAELens:
    def __init__(self, rule: str, D: int, F: int, k: int, lr: float, coef: float, threshold_from_step1: bool = True):
        import sae_lens as sl
        from sae_lens.saes.sae import TrainStepInput

        self.TrainStepInput = TrainStepInput
        if rule == "topk":
            self.sae = sl.TopKTrainingSAE(sl.TopKTrainingSAEConfig(d_in=D, d_sae=F, k=k))
        elif rule == "batchtopk":
            self.sae = sl.BatchTopKTrainingSAE(sl.BatchTopKTrainingSAEConfig(d_in=D, d_sae=F, k=k))
        elif rule == "matryoshka_batchtopk":
            self.sae = sl.MatryoshkaBatchTopKTrainingSAE(sl.MatryoshkaBatchTopKTrainingSAEConfig(
                d_in=D, d_sae=F, k=k, matryoshka_widths=[F // 8, F // 4, F // 2, F]))
        elif rule == "jumprelu":
            self.sae = sl.JumpReLUTrainingSAE(sl.JumpReLUTrainingSAEConfig(d_in=D, d_sae=F, l0_coefficient=coef))
        elif rule == "relu":
            self.sae = sl.StandardTrainingSAE(sl.StandardTrainingSAEConfig(d_in=D, d_sae=F, l1_coefficient=coef))
        self.coefs = {"relu": {"l1": coef}, "jumprelu": {"l0": coef}}.get(rule, {})
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=lr, betas=(0.9, 0.999))
        self.n = 0

    def step(self, x):
        self.sae.train()
        out = self.sae.training_forward_pass(self.TrainStepInput(
            sae_in=x, coefficients=self.coefs, dead_neuron_mask=None, n_training_steps=self.n,
            is_logging_step=False))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.sae.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad()
        self.n += 1

    def params(self):
        s = self.sae
        return s.W_enc, s.b_enc, s.W_dec, getattr(s, "threshold", None), "raw"

    def encode(self, x):
        self.sae.eval()
        with torch.no_grad():
            c = self.sae.encode(x)
            r = self.sae.decode(c)
        return c, r

    def set_sparse(self, density: float):
        pass


IMPLS = {"ontogeny": Ontogeny, "saelens": SAELens}


def sparsify_like_trained(impl, x: torch.Tensor, k: int) -> None:
    """Give relu/jumprelu a trained SAE's sparsity (L0 ~ k): a per-latent cut at the (1 - k/F) quantile."""
    W_enc, b_enc, W_dec, thr, kind = impl.params()
    with torch.no_grad():
        pre = x[:1024] @ W_enc + b_enc
        cut = pre.quantile(1 - k / W_enc.shape[1], dim=0)
        if thr is None:
            b_enc.sub_(cut.clamp_min(0))
        elif kind == "log":
            thr.copy_(cut.clamp_min(1e-3).log())
        else:
            thr.copy_(cut.clamp_min(1e-3))
    impl.set_sparse(k / W_enc.shape[1])


def throughput_one(a, rule: str, regime: str) -> dict:
    """Median wall and CPU (process) time of `a.steps` steps after `a.warmup`, one rule and regime."""
    D, F, B, k = a.d_in, a.d_sae, a.batch, a.k
    _, sample = planted(D, 2 * F, k, seed=0)
    x = sample(B, torch.Generator().manual_seed(1))
    impl = IMPLS[a.impl](rule, D, F, k, lr=1e-5, coef=1e-3)
    if regime == "sparse":
        sparsify_like_trained(impl, x, k)
    for _ in range(a.warmup):
        impl.step(x)
    times, cpu = [], []
    for _ in range(a.steps):
        t, c = time.perf_counter(), time.process_time()
        impl.step(x)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    codes, _ = impl.encode(x[:1024])
    step_s = statistics.median(times)
    return {"rule": rule, "regime": regime, "tokens_per_s": B / step_s, "step_s": step_s,
            "cpu_step_s": statistics.median(cpu), "l0": float((codes != 0).float().sum(1).mean()),
            "matmul_peak_flops": matmul_peak(B, D, F)}


def throughput(a) -> dict:
    """Every `rule:regime` of `--configs` in turn (the same order for both libraries)."""
    configs = [c.split(":") for c in a.configs.split(",")] if a.configs else [[a.rule, a.regime]]
    return {"rows": [throughput_one(a, rule, regime) for rule, regime in configs]}


def time_to_quality(a) -> dict:
    D, F, k = a.d_in, a.d_sae, a.k
    G, sample = planted(D, a.n_features, k, seed=0)
    x_eval = sample(4096, torch.Generator().manual_seed(99), a.noise)
    var = float((x_eval - x_eval.mean(0)).pow(2).sum())
    # time to quality: ontogeny's defaults (batchtopk's threshold from step 1,000; before it inference is
    # batch top-k, as SAELens's training SAE evaluates)
    impl = IMPLS[a.impl](a.rule, D, F, k, lr=a.lr, coef=a.coef, threshold_from_step1=False)
    gen = torch.Generator().manual_seed(1)
    train_s, reached, fvu, mmcs, l0 = 0.0, None, 1.0, 0.0, 0.0
    for step in range(1, a.max_steps + 1):
        x = sample(a.batch, gen, a.noise)
        t = time.perf_counter()
        impl.step(x)
        train_s += time.perf_counter() - t
        if step % a.eval_every == 0:
            codes, recon = impl.encode(x_eval)
            fvu = float((x_eval - recon).pow(2).sum()) / var
            W = impl.params()[2].detach()
            W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
            mmcs = float((G @ W.T).max(1).values.mean())
            l0 = float((codes != 0).float().sum(1).mean())
            if fvu <= a.target_fvu and mmcs >= a.target_mmcs and (a.max_l0 is None or l0 <= a.max_l0):
                reached = step
                break
    return {"reached_at_step": reached, "train_s": train_s if reached else None, "fvu": fvu, "mmcs": mmcs,
            "l0": l0, "kernel_load_s": getattr(impl, "kernel_load_s", None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=sorted(IMPLS), required=True)
    ap.add_argument("--mode", choices=["throughput", "ttq"], default="throughput")
    ap.add_argument("--rule", default="topk")
    ap.add_argument("--regime", choices=["dense", "sparse"], default="sparse")
    ap.add_argument("--configs", default="", help="throughput: comma list of rule:regime (overrides --rule/--regime)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--d-in", type=int, default=512)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--n-features", type=int, default=512)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--coef", type=float, default=1e-3)
    ap.add_argument("--target-fvu", type=float, default=0.1)
    ap.add_argument("--target-mmcs", type=float, default=0.9)
    ap.add_argument("--max-l0", type=float, default=None, help="ttq: also require mean L0 <= this (held-out set)")
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--ontogeny-jumprelu-init", default="0.01",
                    help="ontogeny's initial jumprelu threshold, or 'default' for ontogeny's own "
                         "(SAELens keeps its default 0.01)")
    ap.add_argument("--ontogeny-decoder-init-norm", type=float, default=None,
                    help="control: start ontogeny's decoder rows at this norm with W_enc = W_dec^T "
                         "(SAELens: 0.1); default: ontogeny's own init (norm 1)")
    a = ap.parse_args()
    global JUMPRELU_INIT, DECODER_INIT_NORM
    JUMPRELU_INIT = None if a.ontogeny_jumprelu_init == "default" else float(a.ontogeny_jumprelu_init)
    DECODER_INIT_NORM = a.ontogeny_decoder_init_norm
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = throughput(a) if a.mode == "throughput" else time_to_quality(a)
    print(json.dumps({"impl": a.impl, "rule": a.rule, "mode": a.mode, "regime": a.regime, "threads": a.threads,
                      **out}))


if __name__ == "__main__":
    main()

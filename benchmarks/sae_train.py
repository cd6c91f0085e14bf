"""SAE training speed side by side with SAELens: same data, same threads, interleaved A/B/B/A runs.

`make bench-peers` builds `.venv-peers` (sae-lens from PyPI over the same CPU torch) and runs this script.
Each run is a fresh process (`benchmarks/peers/sae_worker.py`) under the main venv (ontogeny) or the peer
venv (SAELens), with `torch.set_num_threads(T)`, on identical planted data (same seed, same torch). Per
(shape, threads) and round the order is ontogeny, SAELens, SAELens, ontogeny, and every process times all
(rule, regime) configurations in the same order, so a change of load on a shared machine hits both alike.
Ratios are formed per A/B pair (1st with 2nd run, 4th with 3rd) and their median is reported, for wall
time (tokens/s) and for CPU time of the process (less sensitive to other jobs, but at 2 threads it sums
both threads' time).

- throughput: shapes `--shapes` (d_in x d_sae x batch; default 128x1024x1024 and 512x4096x4096), k 32,
  fp32. Regimes: `sparse` (relu/jumprelu set to a trained SAE's L0 ~ k; topk kinds are always k-sparse)
  and `dense` (relu/jumprelu at initialisation). Fraction of peak = 6 B D F FLOPs per step (forward +
  backward of the two B x D x F products, dense count) / step time / the best fp32 matmul rate of the
  [B, D] @ [D, F] product measured by the same process.
- time to quality: planted superposition (d_in 128, 512 features, 8 active, noise 0.01), d_sae 1024,
  batch 1024, k 8, lr 4e-3 for both, relu's L1 `--ttq-l1` / jumprelu's L0 `--ttq-l0` for both; wall
  time of the optimiser steps (evaluation excluded) until FVU <= target, MMCS >= target and mean L0 <=
  `--ttq-max-l0` (a dense code reconstructs well without being a dictionary) on 4,096 held-out tokens,
  checked every 25 steps.

The JSON records the load average (`os.getloadavg`) before and after, and `--conditions` (what else ran).

usage: python benchmarks/sae_train.py [--peer-python .venv-peers/bin/python] [--threads 1,2] [--rounds 1]
       [--shapes 128x1024x1024,512x4096x4096] [--rules topk,batchtopk,jumprelu,relu]
       [--ttq-rules topk,batchtopk,relu,jumprelu] [--ttq-fvu 0.15] [--ttq-mmcs 0.95] [--ttq-l1 0.5] [--ttq-l0 0.05]
       [--ttq-target batchtopk=0.2/0.9,relu=0.19/0.95] [--ttq-max-steps 1000] [--ttq-jumprelu-init default]
       [--ttq-ontogeny-decoder-init-norm 0.1]  (a control: ontogeny at SAELens's decoder init; off by default)
       [--conditions "idle: nothing else running"]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "peers" / "sae_worker.py"
DEFAULT_PEER = HERE.parent / ".venv-peers" / "bin" / "python"


def run_worker(python: str, impl: str, args: list[str], timeout: int = 1800) -> dict:
    out = subprocess.run([python, str(WORKER), "--impl", impl, *args], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} worker failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peer_status(peer: str) -> str | None:
    """None when sae-lens imports under `peer`, else why not (in words)."""
    if not Path(peer).exists():
        return f"no peer venv at {peer} (run `make bench-peers`)"
    r = subprocess.run([peer, "-c", "import sae_lens, torch; print(sae_lens.__version__, torch.__version__)"],
                       capture_output=True, text=True, timeout=600)
    return None if r.returncode == 0 else f"sae_lens does not import: {r.stderr.strip()[-300:]}"


def abba(pythons: dict[str, str], args: list[str], rounds: int, order: str = "ABBA") -> dict[str, list[dict]]:
    """Runs in the order A, B, B, A per round (A = ontogeny, B = saelens); `order="AB"`: A, B."""
    res: dict[str, list[dict]] = {k: [] for k in pythons}
    order = [{"A": "ontogeny", "B": "saelens"}[c] for c in order]
    for _ in range(rounds):
        for impl in order:
            if impl in pythons:
                res[impl].append(run_worker(pythons[impl], impl, args))
    return res


def pair_ratios(a_runs: list[float], b_runs: list[float], higher_is_better: bool) -> list[float]:
    """Ratios (ontogeny over SAELens, > 1 = ontogeny faster) of the runs paired in A, B, B, A order."""
    return [(a / b if higher_is_better else b / a) for a, b in zip(a_runs, b_runs, strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=1, help="A/B/B/A rounds per configuration")
    ap.add_argument("--shapes", default="128x1024x1024,512x4096x4096", help="d_in x d_sae x batch, comma list")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per configuration and run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--rules", default="topk,batchtopk,jumprelu,relu")
    ap.add_argument("--ttq-rules", default="topk,batchtopk,relu,jumprelu")
    ap.add_argument("--ttq-order", default="ABBA", choices=["ABBA", "AB"], help="time-to-quality run order")
    ap.add_argument("--ttq-fvu", type=float, default=0.15, help="time to quality: FVU target")
    ap.add_argument("--ttq-mmcs", type=float, default=0.95, help="time to quality: MMCS target")
    ap.add_argument("--ttq-l1", type=float, default=0.5, help="time to quality: relu's L1 coefficient (both)")
    ap.add_argument("--ttq-l0", type=float, default=0.05, help="time to quality: jumprelu's L0 coefficient (both)")
    ap.add_argument("--ttq-target", default="batchtopk=0.2/0.9,relu=0.19/0.95", help="per-rule targets overriding --ttq-fvu/--ttq-mmcs, "
                                                     "e.g. batchtopk=0.2/0.9,relu=0.15/0.6")
    ap.add_argument("--ttq-jumprelu-init", default="default",
                    help="time to quality: ontogeny's initial jumprelu threshold ('default': ontogeny's "
                         "own, 0.5; SAELens keeps its default 0.01)")
    ap.add_argument("--ttq-ontogeny-decoder-init-norm", type=float, default=None,
                    help="time to quality, a control: start ontogeny's decoder rows at this norm, "
                         "W_enc = W_dec^T (SAELens's init: 0.1); default: ontogeny's own init (norm 1)")
    ap.add_argument("--ttq-max-l0", type=float, default=24.0, help="time to quality: mean L0 target (3 k, k = 8)")
    ap.add_argument("--ttq-max-steps", type=int, default=1000)
    ap.add_argument("--conditions", default="not stated", help="what else ran on the machine (recorded)")
    ap.add_argument("--out", default=str(HERE / "results" / "sae_train.json"))
    a = ap.parse_args()
    pythons = {"ontogeny": sys.executable}
    why = peer_status(a.peer_python)
    if why is None:
        pythons["saelens"] = a.peer_python
    configs = [f"{r}:{g}" for r in filter(None, a.rules.split(","))
               for g in (["sparse", "dense"] if r in ("relu", "jumprelu") else ["sparse"])]
    result: dict = {"benchmark": "sae_train_side_by_side", "saelens": why or "installed",
                    "command": " ".join(sys.argv), "conditions": a.conditions,
                    "load_average_before": [round(v, 2) for v in os.getloadavg()],
                    "config": {"k": 32, "rounds": a.rounds, "steps": a.steps, "warmup": a.warmup,
                               "order": "ontogeny, saelens, saelens, ontogeny",
                               "ratios": "median over A/B pairs of ontogeny / SAELens speed"},
                    "throughput": [], "time_to_quality": []}

    def save() -> None:  # after every row, so an interrupted run keeps what it measured
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2))

    def throughput_rows(shape: str, t: int) -> None:
        D, F, B = (int(v) for v in shape.split("x"))
        args = ["--d-in", str(D), "--d-sae", str(F), "--batch", str(B), "--configs", ",".join(configs),
                "--threads", str(t), "--steps", str(a.steps), "--warmup", str(a.warmup)]
        runs = abba(pythons, args, a.rounds)
        for i, cfg in enumerate(configs):
            rule, regime = cfg.split(":")
            row: dict = {"d_in": D, "d_sae": F, "batch": B, "threads": t, "rule": rule, "regime": regime}
            per = {impl: [r["rows"][i] for r in rs] for impl, rs in runs.items()}
            for impl, rs in per.items():
                row[impl] = {"tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rs), 1),
                             "cpu_step_s": round(statistics.median(r["cpu_step_s"] for r in rs), 5),
                             "fraction_of_peak": round(statistics.median(
                                 6 * B * D * F / r["step_s"] / r["matmul_peak_flops"] for r in rs), 3),
                             "l0": round(statistics.median(r["l0"] for r in rs), 1), "runs": len(rs)}
            if "saelens" in per:
                wall = pair_ratios([r["tokens_per_s"] for r in per["ontogeny"]],
                                   [r["tokens_per_s"] for r in per["saelens"]], True)
                cpu = pair_ratios([r["cpu_step_s"] for r in per["ontogeny"]],
                                  [r["cpu_step_s"] for r in per["saelens"]], False)
                row["ratio_wall"] = round(statistics.median(wall), 2)
                row["ratio_wall_pairs"] = [round(v, 2) for v in wall]
                row["ratio_cpu"] = round(statistics.median(cpu), 2)
            result["throughput"].append(row)
            print(json.dumps(row), file=sys.stderr)
        save()

    def ttq_rows() -> None:
        ttq_args = ["--mode", "ttq", "--d-in", "128", "--d-sae", "1024", "--batch", "1024", "--k", "8",
                    "--n-features", "512", "--threads", "1", "--max-steps", str(a.ttq_max_steps),
                    "--max-l0", str(a.ttq_max_l0), "--ontogeny-jumprelu-init", str(a.ttq_jumprelu_init)]
        if a.ttq_ontogeny_decoder_init_norm is not None:
            ttq_args += ["--ontogeny-decoder-init-norm", str(a.ttq_ontogeny_decoder_init_norm)]
        targets = {r: (a.ttq_fvu, a.ttq_mmcs) for r in filter(None, a.ttq_rules.split(","))}
        for item in filter(None, a.ttq_target.split(",")):
            r, fm = item.split("=")
            fvu, mmcs = (float(v) for v in fm.split("/"))
            targets[r] = (fvu, mmcs)
        for rule in filter(None, a.ttq_rules.split(",")):
            fvu, mmcs = targets[rule]
            coef = {"relu": a.ttq_l1, "jumprelu": a.ttq_l0}.get(rule, 0.0)
            runs = abba(pythons, [*ttq_args, "--rule", rule, "--target-fvu", str(fvu), "--target-mmcs", str(mmcs),
                                  "--coef", str(coef)], 1, a.ttq_order)
            row = {"rule": rule, "targets": {"fvu": fvu, "mmcs": mmcs, "max_l0": a.ttq_max_l0}}
            if a.ttq_ontogeny_decoder_init_norm is not None:
                row["ontogeny_decoder_init_norm"] = a.ttq_ontogeny_decoder_init_norm
            if rule in ("relu", "jumprelu"):
                row["coefficient"] = coef
            if rule == "jumprelu":
                row["initial_threshold"] = {"ontogeny": 0.5 if a.ttq_jumprelu_init == "default"
                                            else float(a.ttq_jumprelu_init), "saelens": 0.01}
                row["bandwidth"] = 0.05
            for impl, rs in runs.items():
                times = [r["train_s"] for r in rs if r["train_s"] is not None]
                row[impl] = {"train_s": [round(v, 2) for v in times] if times else "not reached",
                             "reached_at_step": [r["reached_at_step"] or "not reached" for r in rs],
                             "final_fvu": [round(r["fvu"], 4) for r in rs],
                             "final_mmcs": [round(r["mmcs"], 4) for r in rs],
                             "final_l0": [round(r["l0"], 1) for r in rs]}
                if impl == "ontogeny":  # untimed: loading the compiled kernels before the first step
                    row[impl]["kernel_load_s"] = [round(r["kernel_load_s"] or 0.0, 2) for r in rs]
            if "saelens" in runs:
                pairs = [(o["train_s"], s_["train_s"]) for o, s_ in zip(runs["ontogeny"], runs["saelens"], strict=False)]
                if all(o is not None and s_ is not None for o, s_ in pairs):
                    ratios = [s_ / o for o, s_ in pairs]
                    row["ratio_time_to_quality"] = round(statistics.median(ratios), 2)
                    row["ratio_pairs"] = [round(v, 2) for v in ratios]
                else:
                    row["ratio_time_to_quality"] = "not measured (a run did not reach the targets)"
            result["time_to_quality"].append(row)
            save()
            print(json.dumps(row), file=sys.stderr)

    ttq_rows()
    for shape in filter(None, a.shapes.split(",")):
        for t in (int(x) for x in a.threads.split(",")):
            throughput_rows(shape, t)
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    save()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

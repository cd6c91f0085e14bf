"""SAE training speed side by side with SAELens: same data, same threads, interleaved A/B/B/A runs.

`make bench-peers` builds `.venv-peers` (sae-lens from PyPI over the same CPU torch) and runs this script.
Each run is a fresh process (`benchmarks/peers/sae_worker.py`) under the main venv (ontogeny) or the peer
venv (SAELens), with `torch.set_num_threads(T)`, on identical planted data (same seed, same torch). For
every (threads, rule, regime) the order is ontogeny, SAELens, SAELens, ontogeny per round, so a change
of load on a shared machine hits both alike; medians are reported, and the ratio ontogeny / SAELens.

- throughput: d_in 512, d_sae 4096, k 32, batch 4096, fp32. Regimes: `sparse` (relu/jumprelu set to a
  trained SAE's L0 ~ k; topk kinds are always k-sparse) and `dense` (relu/jumprelu at initialisation).
  Fraction of peak = 6 B D F FLOPs per step (forward + backward of the two B x D x F products, dense
  count) / step time / the best fp32 matmul rate of the [B, D] @ [D, F] product measured by the same
  process. (The old version counted 12 D F per token against a reference's 6 B D F per step: 2x off.)
- time to quality: planted superposition (d_in 128, 512 features, 8 active, noise 0.01), d_sae 1024,
  batch 1024, lr 4e-3 for both; wall time of the optimiser steps (evaluation excluded) until FVU <= 0.1
  and MMCS >= 0.9 on 4,096 held-out tokens, checked every 25 steps.

usage: python benchmarks/sae_train.py [--peer-python .venv-peers/bin/python] [--threads 1,2] [--rounds 1]
       [--rules topk,batchtopk,jumprelu,relu] [--ttq-rules topk,batchtopk] [--quick]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=1, help="A/B/B/A rounds per configuration")
    ap.add_argument("--rules", default="topk,batchtopk,jumprelu,relu")
    ap.add_argument("--ttq-rules", default="topk,batchtopk")
    ap.add_argument("--quick", action="store_true", help="small shapes (d_in 128, d_sae 1024, batch 1024)")
    ap.add_argument("--ttq-order", default="ABBA", choices=["ABBA", "AB"], help="time-to-quality run order")
    ap.add_argument("--ttq-fvu", type=float, default=0.1, help="time to quality: FVU target")
    ap.add_argument("--ttq-mmcs", type=float, default=0.9, help="time to quality: MMCS target")
    ap.add_argument("--out", default=str(HERE / "results" / "sae_train.json"))
    a = ap.parse_args()
    shape = ["--d-in", "128", "--d-sae", "1024", "--batch", "1024"] if a.quick else \
        ["--d-in", "512", "--d-sae", "4096", "--batch", "4096"]
    D, F, B = (int(shape[i]) for i in (1, 3, 5))
    pythons = {"ontogeny": sys.executable}
    why = peer_status(a.peer_python)
    if why is None:
        pythons["saelens"] = a.peer_python
    result: dict = {"benchmark": "sae_train_side_by_side", "saelens": why or "installed",
                    "command": " ".join(sys.argv),
                    "config": {"d_in": D, "d_sae": F, "batch": B, "k": 32, "rounds": a.rounds,
                               "order": "ontogeny, saelens, saelens, ontogeny"},
                    "flops_per_step": 6 * B * D * F, "throughput": [], "time_to_quality": []}
    def save() -> None:  # after every row, so an interrupted run keeps what it measured
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2))

    def throughput_rows(t: int) -> None:
        for rule in filter(None, a.rules.split(",")):
            for regime in (["sparse", "dense"] if rule in ("relu", "jumprelu") else ["sparse"]):
                runs = abba(pythons, [*shape, "--rule", rule, "--regime", regime, "--threads", str(t)], a.rounds)
                row: dict = {"threads": t, "rule": rule, "regime": regime}
                for impl, rs in runs.items():
                    tps = statistics.median(r["tokens_per_s"] for r in rs)
                    frac = statistics.median(6 * B * D * F / r["step_s"] / r["matmul_peak_flops"] for r in rs)
                    row[impl] = {"tokens_per_s": round(tps, 1), "fraction_of_peak": round(frac, 3),
                                 "l0": round(statistics.median(r["l0"] for r in rs), 1), "runs": len(rs)}
                if "saelens" in row:
                    row["ratio_tokens_per_s"] = round(row["ontogeny"]["tokens_per_s"] /
                                                      row["saelens"]["tokens_per_s"], 2)
                result["throughput"].append(row)
                save()
                print(json.dumps(row), file=sys.stderr)

    def ttq_rows() -> None:
        ttq_args = ["--mode", "ttq", "--d-in", "128", "--d-sae", "1024", "--batch", "1024", "--k", "8",
                    "--n-features", "512", "--threads", "1", "--target-fvu", str(a.ttq_fvu),
                    "--target-mmcs", str(a.ttq_mmcs)]
        for rule in filter(None, a.ttq_rules.split(",")):
            runs = abba(pythons, [*ttq_args, "--rule", rule], 1, a.ttq_order)
            row = {"rule": rule, "targets": {"fvu": a.ttq_fvu, "mmcs": a.ttq_mmcs}}
            for impl, rs in runs.items():
                times = [r["train_s"] for r in rs if r["train_s"] is not None]
                row[impl] = {"train_s": round(statistics.median(times), 2) if times else "not reached",
                             "reached_at_step": [r["reached_at_step"] for r in rs],
                             "final_fvu": [round(r["fvu"], 4) for r in rs],
                             "final_mmcs": [round(r["mmcs"], 4) for r in rs]}
            if "saelens" in row and all(isinstance(row[i]["train_s"], float) for i in ("ontogeny", "saelens")):
                row["ratio_time_to_quality"] = round(row["saelens"]["train_s"] / row["ontogeny"]["train_s"], 2)
            result["time_to_quality"].append(row)
            save()
            print(json.dumps(row), file=sys.stderr)

    threads = [int(x) for x in a.threads.split(",")]
    ttq_rows()
    for t in threads:
        throughput_rows(t)
    save()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""LLC speed and accuracy: ontogeny's vmapped SGLD against devinterp 2.0.1 on one deep linear network.

Task: DLN widths [8, 6, 6, 8] (132 parameters), teacher product of rank 2, n = 10,000 Gaussian samples,
σ = 1; Aoyagi's λ = 21.5. Settings shared by both libraries: nβ = n/ln n, ε = 1e-3, γ = 100,
4 chains × 200 draws, batch 100, no burn-in. Prints one JSON object and writes
benchmarks/results/llc.json. Speeds are chain-draws per second of sampling wall time (medians of
`--repeats` runs). Estimates are compared with one common L(w*), the full-data loss
(`*_full_init`), because devinterp's 32-batch L(w*) carries a minibatch bias nβ·ΔL of tens of units at
nβ ≈ 1086. Also reports ontogeny's plain per-chain loop (the reference backend) and, if present,
devinterp's own estimate for the same settings (its L(w*) is a 32-batch mean, unpaired).

    .venv/bin/python benchmarks/llc.py [--repeats 3] [--peer-python .venv-peers-devinterp/bin/python]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ontogeny.slt.dln import make_dln_task
from ontogeny.slt.llc import estimate_llc
from ontogeny.slt.sgld import SGLDConfig, shuffled_batches

WIDTHS, RANK, N, LR, GAMMA, CHAINS, DRAWS, BATCH = [8, 6, 6, 8], 2, 10_000, 1e-3, 100.0, 4, 200, 100


def full_loss(task) -> float:
    """L_n(w*) on all n samples: the common reference that makes the two libraries' estimates comparable."""
    with torch.no_grad():
        params = {k: v.detach() for k, v in task.model.named_parameters()}
        return float(task.loss_fn(params, (task.x_ND, task.y_NO)))


def run_ontogeny(task, seed: int, backend: str, init_loss: str = "paired") -> dict:
    nb = task.n / math.log(task.n)
    cfg = SGLDConfig(lr=LR, n_beta=nb, gamma=GAMMA, num_chains=CHAINS, num_draws=DRAWS, batch_size=BATCH,
                     seed=seed, init_loss="batches" if init_loss == "batches" else "paired", num_init_loss_batches=32)
    params = {k: v.detach() for k, v in task.model.named_parameters()}
    t0 = time.perf_counter()
    res = estimate_llc(task.loss_fn, params, shuffled_batches((task.x_ND, task.y_NO), BATCH, seed), cfg,
                       backend=backend, init_loss=full_loss(task) if init_loss == "full" else None)
    wall = time.perf_counter() - t0
    return {"llc_mean": res.llc_mean, "llc_std": res.llc_std, "draws_per_s": CHAINS * DRAWS / wall,
            "seconds": wall}


def run_devinterp(task, seed: int) -> dict:
    from datasets import Dataset
    from devinterp.slt.llc import llc

    x, y, sigma = task.x_ND, task.y_NO, task.sigma

    def loss_fn(model, input_ids):  # each "sequence" is [i, i]: sample i, one per-token loss
        idx = input_ids[:, 0]
        return ((y[idx] - model(x[idx])) ** 2).sum(dim=-1, keepdim=True) / (2 * sigma ** 2)

    ds = Dataset.from_dict({"input_ids": [[i, i] for i in range(task.n)]}).with_format("torch")
    nb = task.n / math.log(task.n)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        out = llc(task.model, ds, {}, lr=LR, n_beta=nb, localization=GAMMA, num_chains=CHAINS, num_draws=DRAWS,
                  batch_size=BATCH, loss_fn=loss_fn, init_seed=100 + seed, device="cpu",
                  output_path=str(Path(tmp) / "s.zarr"))
        wall = time.perf_counter() - t0
    per_chain = nb * (out.loss_trace.values.mean(axis=1) - full_loss(task))  # same L(w*) as ontogeny's 'full'
    return {"llc_mean": float(out.llc_mean), "llc_std": float(out.llc_std), "draws_per_s": CHAINS * DRAWS / wall,
            "seconds": wall, "llc_mean_full_init": float(per_chain.mean()),
            "llc_std_full_init": float(per_chain.std())}


def run_devinterp_peer(task, seed: int, peer: str) -> dict:
    """devinterp through the peer venv's python (benchmarks/llc_devinterp_peer.py): the same settings, its
    sampling wall time measured inside the peer process (imports and start-up excluded)."""
    import subprocess

    nb = task.n / math.log(task.n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "task.pt"
        torch.save({"widths": WIDTHS, "state": task.model.state_dict(), "x": task.x_ND, "y": task.y_NO,
                    "sigma": task.sigma}, path)
        settings = {"lr": LR, "n_beta": nb, "gamma": GAMMA, "chains": CHAINS, "draws": DRAWS, "burnin_steps": 0,
                    "batch_size": BATCH, "seed": seed}
        proc = subprocess.run([peer, str(Path(__file__).parent / "llc_devinterp_peer.py"), str(path),
                               json.dumps(settings)], capture_output=True, text=True, timeout=3600, check=True)
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    per_chain = [nb * (m - full_loss(task)) for m in d["trace_chain_means"]]
    return {"llc_mean": d["llc_mean"], "llc_std": d["llc_std"], "draws_per_s": d["draws_per_s"],
            "seconds": d["seconds"], "llc_mean_full_init": statistics.mean(per_chain),
            "llc_std_full_init": statistics.pstdev(per_chain)}


def summarise(runs: list[dict]) -> dict:
    return {"draws_per_s_median": statistics.median(r["draws_per_s"] for r in runs),
            "llc_mean_over_seeds": statistics.mean(r["llc_mean"] for r in runs),
            "llc_sd_over_seeds": statistics.pstdev(r["llc_mean"] for r in runs),
            "llc_chain_std_mean": statistics.mean(r["llc_std"] for r in runs), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-python", default=None, help="python of a venv with devinterp 2.0.1, used when devinterp "
                    "is not importable here (e.g. .venv-peers-devinterp/bin/python)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = make_dln_task(WIDTHS, rank=RANK, n=N, seed=0)
    run_ontogeny(task, 99, "vmap")  # warm-up: the first torch.func call pays one-off set-up costs
    out: dict = {"benchmark": "llc", "task": {"widths": WIDTHS, "rank": task.rank, "n": N,
                                              "n_params": sum(p.numel() for p in task.model.parameters()),
                                              "aoyagi_lambda": task.lam},
                 "settings": {"lr": LR, "gamma": GAMMA, "n_beta": N / math.log(N), "chains": CHAINS,
                              "draws": DRAWS, "batch_size": BATCH, "threads": 1},
                 "machine": "2 CPU cores shared with other engineers' jobs; timings are noisy"}
    seeds = list(range(args.repeats))
    out["ontogeny_vmap"] = summarise([run_ontogeny(task, s, "vmap") for s in seeds])
    out["ontogeny_vmap_full_init"] = summarise([run_ontogeny(task, s, "vmap", "full") for s in seeds])
    out["ontogeny_vmap_devinterp_init_loss"] = summarise([run_ontogeny(task, s, "vmap", "batches") for s in seeds])
    out["ontogeny_loop"] = summarise([run_ontogeny(task, s, "loop") for s in seeds])
    try:
        if args.peer_python:
            runs = [run_devinterp_peer(task, s, args.peer_python) for s in seeds]
        else:
            import devinterp  # noqa: F401
            runs = [run_devinterp(task, s) for s in seeds]
        out["devinterp_available"] = True
        out["devinterp_via"] = args.peer_python or "in-process"
        out["devinterp"] = summarise(runs)
        out["devinterp"]["llc_full_init_mean_over_seeds"] = statistics.mean(
            r["llc_mean_full_init"] for r in out["devinterp"]["runs"])
        base = out["devinterp"]["draws_per_s_median"]
    except ImportError:
        out["devinterp_available"] = False
        base = out["ontogeny_loop"]["draws_per_s_median"]
    out["baseline"] = "devinterp" if out["devinterp_available"] else "ontogeny_loop"
    out["speedup_vmap_vs_baseline"] = out["ontogeny_vmap"]["draws_per_s_median"] / base
    out["speedup_vmap_vs_loop"] = (out["ontogeny_vmap"]["draws_per_s_median"]
                                   / out["ontogeny_loop"]["draws_per_s_median"])
    out["relative_error_vs_aoyagi"] = out["ontogeny_vmap"]["llc_mean_over_seeds"] / task.lam - 1
    for k in ("ontogeny_vmap", "ontogeny_vmap_full_init", "ontogeny_vmap_devinterp_init_loss", "ontogeny_loop", "devinterp"):
        if k in out:
            for r in out[k]["runs"]:
                for f in r:
                    r[f] = round(r[f], 4)
    text = json.dumps(out, indent=2)
    res_dir = Path(__file__).parent / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "llc.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

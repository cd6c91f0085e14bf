"""devinterp's side of benchmarks/llc_dln.py, run by the peer venv's python (devinterp 2.0.1, no ontogeny).

Reads a task file (torch.save of widths, weights, x, y, sigma) and settings JSON, runs devinterp's `llc`
with the same ε, nβ, γ, chains, draws, batch size and burn-in, and prints one JSON line: devinterp's own
estimate, the per-chain loss trace means, and the sampling wall time.

    .venv-peers-devinterp/bin/python benchmarks/llc_devinterp_peer.py TASK.pt '{"lr": ...}'
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn


def main() -> None:
    task = torch.load(sys.argv[1])
    s = json.loads(sys.argv[2])
    torch.set_num_threads(1)
    from datasets import Dataset
    from devinterp.slt.llc import llc

    widths = task["widths"]
    model = nn.Sequential(*[nn.Linear(a, b, bias=False) for a, b in zip(widths, widths[1:])])
    model.load_state_dict(task["state"])
    x, y, sigma = task["x"], task["y"], task["sigma"]

    def loss_fn(m, input_ids):  # each "sequence" is [i, i]: sample i, one per-token loss
        idx = input_ids[:, 0]
        return ((y[idx] - m(x[idx])) ** 2).sum(dim=-1, keepdim=True) / (2 * sigma ** 2)

    ds = Dataset.from_dict({"input_ids": [[i, i] for i in range(x.shape[0])]}).with_format("torch")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        out = llc(model, ds, {}, lr=s["lr"], n_beta=s["n_beta"], localization=s["gamma"],
                  num_chains=s["chains"], num_draws=s["draws"], num_burnin_steps=s["burnin_steps"],
                  batch_size=s["batch_size"], loss_fn=loss_fn, init_seed=100 + s["seed"], device="cpu",
                  output_path=str(Path(tmp) / "s.zarr"))
        wall = time.perf_counter() - t0
    trace = torch.as_tensor(out.loss_trace.values, dtype=torch.float64)  # [chains, burn-in + draws]
    if trace.shape[1] == s["draws"] + s["burnin_steps"]:
        trace = trace[:, s["burnin_steps"]:]  # devinterp's trace (and its llc_mean) include the burn-in
    print(json.dumps({"llc_mean": float(out.llc_mean), "llc_std": float(out.llc_std),
                      "trace_chain_means": trace.mean(dim=1).tolist(), "draws": trace.shape[1],
                      "seconds": wall, "draws_per_s": s["chains"] * s["draws"] / wall}))


if __name__ == "__main__":
    main()

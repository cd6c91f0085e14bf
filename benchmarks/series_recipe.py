"""One recipe experiment for the embedded series: train it, run the head census, print the figures as JSON.

Figures (held-out periods and offsets of `CensusConfig`, spans from every non-special token):
best layer-0 previous-token score, best layer-1 induction score (i-P+1), copy gain (first-copy loss minus
second-copy loss, nats), the jump step (single change point of the per-step synthetic-row loss, and of
the census copy gain over checkpoints), the 10-90% width of the jump, and the training wall time.
Run: python benchmarks/series_recipe.py --out /tmp/series_exp/A --set n_heads=8 --set synthetic.pool=vocab
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from ontogeny.census.heads import CensusConfig, best_head, census_series, head_means
from ontogeny.series.load import load_series
from ontogeny.series.train import SeriesConfig, read_record, train_series, training_jump


def parse_sets(sets: list[str]) -> dict:
    """`a.b=value` pairs into a nested dict; values parsed as JSON where they parse, else strings."""
    out: dict = {}
    for s in sets:
        key, _, raw = s.partition("=")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = val
    return out


def merge(base: dict, upd: dict) -> dict:
    for k, v in upd.items():
        base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[], help="SeriesConfig field=value (dots nest)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--census-every", type=int, default=1, help="census every k-th checkpoint (last always)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SeriesConfig.model_validate(merge(SeriesConfig().model_dump(), parse_sets(args.set)))
    out = Path(args.out)
    t0 = time.perf_counter()
    train_series(cfg, out)
    wall = time.perf_counter() - t0
    rec = read_record(out)
    series = load_series(out)
    steps = series.steps
    cen = CensusConfig()
    quick = cen.model_copy(update={"ablate": False, "n_seqs": 16})
    chosen = [s for i, s in enumerate(steps) if i % args.census_every == 0 and s != steps[-1]]
    head_rows, copy_rows = census_series(series, quick, steps=chosen)
    h_last, c_last = census_series(series, cen, steps=[steps[-1]])
    head_rows += h_last
    copy_rows += c_last
    means = head_means(head_rows)
    gain_by_step = {s: float(np.mean([r["copy_gain"] for r in copy_rows if r["step"] == s]))
                    for s in sorted({r["step"] for r in copy_rows})}
    ind_by_step = {s: max(r["induction"] for r in means if r["step"] == s and r["layer"] >= 1)
                   for s in gain_by_step}
    prev_by_step = {s: max(r["prev_token"] for r in means if r["step"] == s and r["layer"] == 0)
                    for s in gain_by_step}
    log = pq.read_table(out / "train_log.parquet").to_pylist()
    prev = best_head(head_rows, "prev_token", layer=0)
    ind = best_head(head_rows, "induction", layer=cfg.n_layers - 1)
    last = [r for r in copy_rows if r["step"] == steps[-1]]
    result = {
        "out": str(out), "overrides": parse_sets(args.set), "n_steps": cfg.n_steps,
        "train_wall_s": rec["wall_s"], "total_wall_s": wall,
        "prev_token": {"head": prev["component"], "score": prev["prev_token"]},
        "induction": {"head": ind["component"], "score": ind["induction"],
                      "ablation_copy_increase": ind["ablation_copy_increase"],
                      **{k: v for k, v in ind.items() if k.startswith("best_shift")}},
        "copy": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in last],
        "copy_gain": float(np.mean([r["copy_gain"] for r in last])),
        "training_jump": training_jump([r["loss_synthetic"] for r in log]),
        "curve": {s: [round(gain_by_step[s], 2), round(ind_by_step[s], 2), round(prev_by_step[s], 2)]
                  for s in gain_by_step},
    }
    print(json.dumps(result, indent=1))
    (out / "recipe.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Life-history recovery on planted series (the heavy version of tests/lifehistory): seeds x noise levels.

For each (seed, noise) a planted series is generated through the real encoder path and analysed with
DEFAULT parameters (the matching null and the prediction null at their defaults too). Prints per run:
F1 of births, deaths, transforms, splits and merges, carrier precision and recall, recruitment against
its planted value and its null, the turnover excess over both spacing nulls, prediction AUC vs null.
Run: python benchmarks/lifehistory_planted.py [--seeds 5] [--noise 0,0.1,0.2]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import emit

from ontogeny.lifehistory.analysis import LifeHistoryInputs, analyse
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.lifehistory.synthetic import planted_series
from ontogeny.lifehistory.tables import match_rows, summary


def f1(truth: set, got: set) -> float:
    tp = len(truth & got)
    return 2 * tp / (len(truth) + len(got)) if truth or got else 1.0


def one(seed: int, noise: float) -> dict:
    ps = planted_series(seed=seed, noise=noise)
    t0 = time.process_time()
    lh = analyse(LifeHistoryInputs(ps.steps, ps.sites, ps.codes, ps.W_dec, seq_len=ps.seq_len), LifeHistoryConfig())
    cpu = time.process_time() - t0
    _, events = match_rows(lh)
    got = {(r["site"], r["transition"], r["event"], r["feature_from"] if r["feature_from"] is not None else -1,
            r["feature_to"] if r["feature_to"] is not None else -1) for r in events}
    out = {"seed": seed, "noise": noise, "analyse_cpu_s": round(cpu, 2)}
    for kind in ("born", "died", "transformed", "split", "merge"):
        out[f"f1_{kind}"] = round(f1({e for e in ps.events if e[2] == kind}, {e for e in got if e[2] == kind}), 4)
    cars = {(c.site, c.feature) for c in lh.carriers}
    tp = len(cars & ps.carriers)
    out["carrier_precision"] = tp / len(cars) if cars else 0.0
    out["carrier_recall"] = tp / len(ps.carriers)
    final = lh.recruitment[-1]
    n_car = len(ps.carriers)
    out["recruitment_planted"] = (len(ps.scaffold_final) - n_car) / (final["n_alive"] - n_car)
    s = summary(lh)
    for k in ("recruitment", "recruitment_null", "turnover_ratio", "turnover_ratio_null_constant",
              "turnover_excess_constant", "turnover_excess_logspan", "prediction_auc", "prediction_auc_null",
              "precedence_function_first"):
        out[k] = s[k]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--noise", default="0,0.1,0.2")
    a = ap.parse_args()
    torch.set_num_threads(1)
    runs = [one(seed, float(n)) for n in a.noise.split(",") for seed in range(a.seeds)]
    worst = {k: min(r[k] for r in runs) for k in runs[0] if k.startswith(("f1_", "carrier_"))}
    emit("lifehistory_planted", {"runs": runs, "worst": worst,
                                 "note": "default LifeHistoryConfig; CPU seconds on a shared 2-core machine"})


if __name__ == "__main__":
    main()

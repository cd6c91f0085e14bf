"""The sweep's figures, built from its tables alone (runs, curves, rows): loss curves, emergence-time
distributions, plateau vs S with the fitted power law, heads vs head dim, transformer vs mixer,
alignment over training and the per-position staircase."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ontogeny.emergence.analyze import by_config, plateau_scaling
from ontogeny.emergence.plots import Figure, Trace, save

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _label(c: dict[str, Any]) -> str:
    base = f"{c['arch'][:5]} S{c['S']} s{c['s']}"
    if c["arch"] == "transformer":
        base += f" H{c['n_heads']}d{c['d_head']}"
    return base + (f" bias{c['bias']:g}" if c["bias"] else "")


def loss_curves(runs, curves, grid: str = "context", arch: str = "transformer") -> Figure:
    by_run = defaultdict(list)
    for c in curves:
        by_run[c["run_id"]].append(c)
    fig = Figure(
        f"output loss during training ({arch}, grid '{grid}'; one line per seed)",
        "step",
        "loss on the task outputs (nats)",
    )
    Ss = sorted({r["S"] for r in runs if r["grid"] == grid and r["arch"] == arch})
    for r in sorted(runs, key=lambda r: (r["S"], r["seed"])):
        if r["grid"] != grid or r["arch"] != arch:
            continue
        pts = sorted(by_run[r["run_id"]], key=lambda c: c["step"])
        fig.traces.append(
            Trace(
                f"S={r['S']}",
                [p["step"] for p in pts],
                [p["loss_out"] for p in pts],
                color=PALETTE[Ss.index(r["S"]) % len(PALETTE)],
                showlegend=r["seed"]
                == min(
                    x["seed"] for x in runs if x["grid"] == grid and x["S"] == r["S"] and x["arch"] == arch
                ),
            )
        )
    if runs:
        fig.hlines.append((runs[0]["plateau"], "plateau ln V"))
    return fig


def time_distribution(runs, col: str = "t_50") -> Figure:
    """Each seed's emergence time per configuration; censored runs drawn as x at the budget."""
    cfgs = by_config(runs, col)
    labels = [_label(c) for c in cfgs]
    fig = Figure(
        f"emergence time ({col}) across seeds per configuration (x: never, drawn at the budget)", "", "step"
    )
    xs, ys, xc, yc = [], [], [], []
    for i, c in enumerate(cfgs):
        for r in runs:
            if all(r[k] == c[k] for k in ("task", "S", "s", "arch", "n_heads", "d_head", "bias")):
                if r[col] is None:
                    xc.append(i)
                    yc.append(r["budget"])
                else:
                    xs.append(i)
                    ys.append(r[col])
    fig.traces.append(Trace("one seed", xs, ys, mode="markers", color=PALETTE[0]))
    fig.traces.append(Trace("one seed, never (censored)", xc, yc, mode="markers", color="black", symbol="x"))
    fig.traces.append(
        Trace(
            "median",
            list(range(len(cfgs))),
            [c["t_median"] for c in cfgs],
            mode="markers",
            color=PALETTE[3],
            symbol="line-ew-open",
        )
    )
    fig.xlabel = ""
    fig.xticklabels = labels
    return fig


def plateau_vs_S(runs, col: str = "t_50") -> Figure:
    cfgs = by_config(runs, col)
    fig = Figure(
        f"plateau length ({col}, median over seeds) vs state size S, with power-law fits",
        "S",
        "step",
        logx=True,
        logy=True,
    )
    for i, (arch, bias) in enumerate(sorted({(c["arch"], c["bias"]) for c in cfgs})):
        s_ref = 2 if any(c["s"] == 2 for c in cfgs) else cfgs[0]["s"]
        fit = plateau_scaling(cfgs, arch=arch, s=s_ref, bias=bias)
        if not fit["S"]:
            continue
        name = f"{arch}" + (f" bias {bias:g}" if bias else "")
        fig.traces.append(Trace(name, fit["S"], fit["t_median"], mode="markers", color=PALETTE[i]))
        if fit["n"] >= 2 and fit["a"] == fit["a"]:
            xs = [min(fit["S"]), max(fit["S"])]
            fig.traces.append(
                Trace(
                    f"fit {name}: a={fit['a']:.2f}",
                    xs,
                    [fit["b"] * x ** fit["a"] for x in xs],
                    color=PALETTE[i],
                    dash=True,
                )
            )
    return fig


def heads_vs_dim(runs, col: str = "t_50") -> Figure:
    cfgs = [c for c in by_config(runs, col) if c["arch"] == "transformer" and c["bias"] == 0]
    key = max(
        {(c["S"], c["s"]) for c in cfgs},
        key=lambda k: len({(c["n_heads"], c["d_head"]) for c in cfgs if (c["S"], c["s"]) == k}),
    )
    sel = [c for c in cfgs if (c["S"], c["s"]) == key]
    fig = Figure(
        f"heads vs head dimension (S={key[0]}, s={key[1]}): median {col}, censored at the budget",
        "head dimension",
        "step",
    )
    for i, H in enumerate(sorted({c["n_heads"] for c in sel})):
        pts = sorted((c["d_head"], c["t_median"], c["solve_rate"]) for c in sel if c["n_heads"] == H)
        fig.traces.append(_median_trace(f"H={H} (solve rates", pts, PALETTE[i]))
    return fig


def _median_trace(label: str, pts: list[tuple], color: str) -> Trace:
    """A line of (x, median emergence step, solve rate) points; the solve rates go in the label."""
    return Trace(f"{label} {', '.join(f'{p[2]:.0%}' for p in pts)})", [p[0] for p in pts], [p[1] for p in pts],
                 mode="lines+markers", color=color)


def arch_vs_s(runs, col: str = "t_50") -> Figure:
    cfgs = [c for c in by_config(runs, col) if c["bias"] == 0]
    S = max({c["S"] for c in cfgs}, key=lambda S: len({c["s"] for c in cfgs if c["S"] == S}))
    fig = Figure(
        f"transformer vs causal MLP-Mixer on the linear map (S={S}): median {col}", "s (ones per row)", "step"
    )
    for i, arch in enumerate(("transformer", "mixer")):
        pts = sorted(
            (c["s"], c["t_median"], c["solve_rate"])
            for c in cfgs
            if c["arch"] == arch
            and c["S"] == S
            and (arch == "mixer" or (c["n_heads"], c["d_head"]) == _ref_pair(cfgs))
        )
        if pts:
            fig.traces.append(_median_trace(f"{arch} (solve", pts, PALETTE[i]))
    return fig


def _ref_pair(cfgs):
    vals = [(c["n_heads"], c["d_head"]) for c in cfgs if c["arch"] == "transformer"]
    return max(set(vals), key=vals.count) if vals else None


def alignment_curves(runs, curves, S: int | None = None) -> Figure:
    """Parent mass of the best head over training for transformer runs at one S (one line per seed)."""
    sel = [r for r in runs if r["arch"] == "transformer" and r["bias"] == 0 and r["grid"] == "context"]
    if not sel:
        sel = [r for r in runs if r["arch"] == "transformer"]
    S = S or sorted({r["S"] for r in sel})[len({r["S"] for r in sel}) // 2]
    by_run = defaultdict(list)
    for c in curves:
        by_run[c["run_id"]].append(c)
    fig = Figure(f"transformer, S={S}: parent mass (solid) and loss_out / ln 2 (dashed)", "step", "score")
    for i, r in enumerate(sorted((r for r in sel if r["S"] == S), key=lambda r: r["seed"])):
        pts = sorted(by_run[r["run_id"]], key=lambda c: c["step"])
        col = PALETTE[i % len(PALETTE)]
        fig.traces.append(
            Trace(
                f"seed {r['seed']} parent mass",
                [p["step"] for p in pts],
                [p["parent_mass"] for p in pts],
                color=col,
            )
        )
        fig.traces.append(
            Trace(
                f"seed {r['seed']} loss_out/ln2",
                [p["step"] for p in pts],
                [p["loss_out"] / r["plateau"] for p in pts],
                color=col,
                dash=True,
                showlegend=False,
            )
        )
    return fig


def row_staircase(runs, rows) -> Figure:
    """Per-output-position emergence times of each solved transformer run at the largest solved S."""
    sel = [
        r
        for r in runs
        if r["arch"] == "transformer" and r["bias"] == 0 and r["solved"] and r["grid"] == "context"
    ]
    fig = Figure(
        "per-output-position emergence (loss < ln2/2): positions are learned at different steps",
        "output position",
        "step",
    )
    if not sel:
        return fig
    S = max(r["S"] for r in sel)
    for i, r in enumerate(r for r in sel if r["S"] == S):
        pts = sorted(
            (x["pos"], x["t_row"]) for x in rows if x["run_id"] == r["run_id"] and x["t_row"] is not None
        )
        fig.traces.append(
            Trace(
                f"S={S} seed {r['seed']}",
                [p[0] for p in pts],
                [p[1] for p in pts],
                mode="lines+markers",
                color=PALETTE[i % len(PALETTE)],
            )
        )
    return fig


def write_figures(
    runs: Sequence[dict], curves: Sequence[dict], rows: Sequence[dict], out: str | Path, col: str = "t_50"
) -> list[Path]:
    """Every figure of the sweep as HTML + PNG under `out`."""
    figs = {
        "loss_curves": loss_curves(runs, curves),
        "loss_curves_mixer": loss_curves(runs, curves, arch="mixer"),
        "emergence_times": time_distribution(runs, col),
        "plateau_vs_S": plateau_vs_S(runs, col),
        "heads_vs_dim": heads_vs_dim(runs, col),
        "arch_vs_s": arch_vs_s(runs, col),
        "alignment": alignment_curves(runs, curves),
        "row_staircase": row_staircase(runs, rows),
    }
    paths = []
    for name, fig in figs.items():
        if fig.traces:
            paths += save(fig, out, name)
    return paths

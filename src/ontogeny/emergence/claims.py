"""Seed 004's qualitative claims, one small function each, judged on a sweep's runs.

Each claim function takes the per-run rows, the per-config rows (`analyze.by_config`) and the emergence
column (e.g. "t_50") and returns `{"claim", "holds", "evidence"}`, where `holds` is True, False or None
(not testable with this sweep: the evidence then says what is missing). A new claim is one function
appended to `CLAIMS`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from ontogeny.emergence.analyze import by_config, modal_pair, plateau_scaling, select

Rows = Sequence[dict[str, Any]]


def _claim(claim: str, holds: bool | None, evidence: str) -> dict[str, Any]:
    return {"claim": claim, "holds": holds, "evidence": evidence}


def abrupt_after_plateau(rows: Rows, cfgs: Rows, col: str) -> dict[str, Any]:
    """Solved runs (no bias) rise from 20% to 90% of the way in at most half of their t_90."""
    name = "loss drops abruptly after a plateau"
    solved = [r for r in rows if r[col] is not None and r["t_20"] is not None and r["bias"] == 0
              and r["t_90"] is not None]
    if not solved:
        return _claim(name, None, "no solved runs")
    med = statistics.median((r["t_90"] - r["t_20"]) / max(r["t_90"], 1.0) for r in solved)
    return _claim(name, med <= 0.5, f"median (t_90 - t_20) / t_90 = {med:.2f} over {len(solved)} solved runs")


def seed_spread(rows: Rows, cfgs: Rows, col: str) -> dict[str, Any]:
    """The median over configs (>= 3 seeds) of max/min emergence time across seeds is at least 1.5."""
    name = "emergence time varies randomly across seeds"
    spreads = [c["spread"] for c in cfgs if c["spread"] is not None and c["bias"] == 0 and c["n_seeds"] >= 3]
    if not spreads:
        return _claim(name, None, "no config with >= 3 seeds and >= 2 solvers")
    med = statistics.median(spreads)
    return _claim(name, med >= 1.5, f"median max/min over seeds = {med:.2f} across {len(spreads)} configs "
                                    "(paper's replicators: 4-5x)")


def plateau_power_law(rows: Rows, cfgs: Rows, col: str) -> dict[str, Any]:
    """The transformer's median emergence time grows with S faster than S^0.5 (power-law fit)."""
    name = "plateau grows with context length S (power law)"
    fit = plateau_scaling(cfgs)
    if fit["n"] < 3:
        return _claim(name, None, f"only {int(fit['n'])} S values solved")
    return _claim(name, bool(fit["a"] > 0.5), f"transformer: t ~ S^{fit['a']:.2f} (R2 {fit['r2']:.2f}) over "
                                              f"S={fit['S']}; paper CA: a ~ 1.1-1.3")


def denser_rows_harder(rows: Rows, cfgs: Rows, col: str) -> dict[str, Any]:
    """At the S with the most s values, Spearman(s, median emergence time) > 0."""
    from scipy.stats import spearmanr

    name = "denser rows (larger s, towards S/2) are harder"
    base = select(cfgs, arch="transformer", bias=0.0, task="linear_map")
    ref = [c for c in base if (c["n_heads"], c["d_head"]) == modal_pair(base)]
    S_sp = max({c["S"] for c in ref}, key=lambda S: len({c["s"] for c in ref if c["S"] == S}), default=None)
    sp = sorted((c for c in ref if c["S"] == S_sp), key=lambda c: c["s"])
    if len(sp) < 3:
        return _claim(name, None, "fewer than 3 values of s")
    rho = float(spearmanr([c["s"] for c in sp], [c["t_median"] for c in sp]).statistic)
    return _claim(name, rho > 0, f"transformer S={sp[0]['S']}: " + ", ".join(
        f"s={c['s']}: solved {c['solve_rate']:.0%}, t_med {c['t_median']:.0f}" for c in sp)
        + f"; Spearman(s, t) = {rho:.2f}")


def _better(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """a beats b: a higher solve rate, then a shorter median emergence time."""
    return (a["solve_rate"], -a["t_median"]) > (b["solve_rate"], -b["t_median"])


def more_heads_win(rows: Rows, cfgs: Rows, col: str) -> dict[str, Any]:
    """At equal width H x d_head, the config with more heads beats every one with fewer."""
    name = "at equal width, more heads beat bigger heads"
    base = select(cfgs, arch="transformer", bias=0.0, task="linear_map")
    Ss = max({(c["S"], c["s"]) for c in base},
             key=lambda k: len({(c["n_heads"], c["d_head"]) for c in base if (c["S"], c["s"]) == k}),
             default=None)
    w = {(c["n_heads"], c["d_head"]): c for c in base if (c["S"], c["s"]) == Ss}
    pairs = [(a, b) for a in w for b in w if a[0] * a[1] == b[0] * b[1] and a[0] > b[0]]
    if not pairs:
        return _claim(name, None, "no two (H, d_head) with equal width")
    ev = [f"H{m[0]}xd{m[1]} ({w[m]['solve_rate']:.0%}, {w[m]['t_median']:.0f}) vs "
          f"H{f[0]}xd{f[1]} ({w[f]['solve_rate']:.0%}, {w[f]['t_median']:.0f})" for m, f in pairs]
    wins = sum(_better(w[m], w[f]) for m, f in pairs)
    return _claim(name, wins == len(pairs), "(solve rate, t_med): " + "; ".join(ev))


def mixer_wins_dense(rows: Rows, cfgs: Rows, col: str) -> dict[str, Any]:
    """On dense maps (s >= 3), every mixer config beats the transformer of the same shape."""
    name = "MLP-Mixer beats the transformer on dense (s >= 3) linear maps"
    ev, wins, n = [], 0, 0
    for c in select(cfgs, arch="mixer"):
        t = [x for x in select(cfgs, arch="transformer", bias=0.0, S=c["S"], s=c["s"], task=c["task"])
             if x["n_heads"] == c["n_heads"] and x["d_head"] == c["d_head"]]
        if t and c["s"] >= 3:
            n += 1
            wins += _better(c, t[0])
            ev.append(f"S={c['S']} s={c['s']}: mixer ({c['solve_rate']:.0%}, {c['t_median']:.0f}) vs "
                      f"transformer ({t[0]['solve_rate']:.0%}, {t[0]['t_median']:.0f})")
    if not n:
        return _claim(name, None, "no mixer/transformer pair with s >= 3")
    return _claim(name, wins == n, "(solve rate, t_med): " + "; ".join(ev))


def bias_shortens_plateau(rows: Rows, cfgs: Rows, col: str) -> dict[str, Any]:
    """Every biased config emerges earlier than its unbiased twin."""
    name = "an attention bias toward the true pattern shortens the plateau"
    ev, shorter = [], []
    for c in [c for c in cfgs if c["bias"] > 0]:
        base = [x for x in select(cfgs, arch=c["arch"], S=c["S"], s=c["s"], bias=0.0, task=c["task"])
                if x["n_heads"] == c["n_heads"] and x["d_head"] == c["d_head"]]
        if base:
            shorter.append(c["t_median"] < base[0]["t_median"])
            ev.append(f"S={c['S']}: {base[0]['t_median']:.0f} -> {c['t_median']:.0f} (c={c['bias']:g})")
    if not shorter:
        return _claim(name, None, "no bias runs")
    return _claim(name, all(shorter), "; ".join(ev))


CLAIMS: list[Callable[[Rows, Rows, str], dict[str, Any]]] = [
    abrupt_after_plateau, seed_spread, plateau_power_law, denser_rows_harder, more_heads_win,
    mixer_wins_dense, bias_shortens_plateau,
]


def claims(rows: Rows, col: str = "t_50") -> list[dict[str, Any]]:
    """Every claim of `CLAIMS` judged on the sweep's runs."""
    cfgs = by_config(rows, col)
    return [claim(rows, cfgs, col) for claim in CLAIMS]

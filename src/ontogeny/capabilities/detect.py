"""Finding when a capability emerges in a curve: threshold crossings, change points, abruptness.

- Threshold crossing (seed 004's "plateau length"): the first logged step with loss < threshold.
  Thresholds sit a fraction f of the way from the plateau to the floor: thr_f = plateau - f (plateau - floor).
- Change points with `ruptures` (spec section 4.4): Dynp for one jump, Pelt/Binseg for several, on the
  curve indexed by checkpoint number (jump=1, since short series are the norm). Default Pelt penalty
  (PROPOSAL) beta = pen_scale sigma^2 ln n with sigma = MAD(diff y) / (0.6745 sqrt 2); the spec's
  pen_scale = 2 gave 0.17 false jumps per 60-point pure-noise curve here and 3 gave 0.05, so the
  default is 4 (0 in 100 such curves; a 3-sigma jump is still found 93% of the time).
- Abruptness (PROPOSAL, after spec 4.4): delta = mean(y[k:]) - mean(y[:k]) (segment means; the spec's
  m=3 windows beside k make any smooth ramp look locally sharp); with z = (y - mean(y[:k])) / delta,
  width = step of the first z >= 0.9 at or after the rise minus the step where z last rose above 0.1
  before k; abrupt when |delta| >= min_delta and width / t_cp <= max_width_ratio. `resolution_limited`:
  from the first checkpoint past 10% of the rise to the first past 90% is at most one checkpoint
  interval (width <= the spacing at the change point),
  i.e. the jump is as sharp as the checkpoint grid can show; with spacing s at step t the width rule
  cannot pass when s / t > max_width_ratio, so the report says this beside "abrupt: no". A logistic
  y0 + delta sigmoid((t - t0) / tau) gives tau / t0 as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ontogeny.errors import ConfigError


def thresholds_between(plateau: float, floor: float, fractions: Sequence[float]) -> list[float]:
    """Loss levels a fraction f of the way from the plateau down to the floor."""
    return [plateau - f * (plateau - floor) for f in fractions]


def first_crossing(
    steps: Sequence[float], y: Sequence[float], threshold: float, below: bool = True, persist: int = 1
) -> float | None:
    """First step where y crosses the threshold and stays across for `persist` consecutive points
    (None if never: a censored run)."""
    y_arr = np.asarray(y, dtype=float)
    hit = y_arr < threshold if below else y_arr > threshold
    run = 0
    for i, h in enumerate(hit):
        run = run + 1 if h else 0
        if run >= persist:
            return float(steps[i - persist + 1])
    return None


def mad_sigma(y: Sequence[float]) -> float:
    """Robust noise level of a curve from its first differences: MAD(diff y) / (0.6745 sqrt 2); when
    the MAD is 0 (quantised values such as accuracies), the RMS of the 90% smallest |diff| / sqrt 2."""
    d = np.diff(np.asarray(y, dtype=float))
    if len(d) == 0:
        return 0.0
    mad = float(np.median(np.abs(d - np.median(d))) / (0.6745 * math.sqrt(2)))
    if mad > 1e-12:
        return mad
    small = d[np.abs(d) <= np.quantile(np.abs(d), 0.9)]
    return float(np.sqrt(np.mean(small**2) / 2))


def change_points(
    y: Sequence[float],
    n_bkps: int | None = None,
    pen: float | None = None,
    method: Literal["dynp", "pelt", "binseg"] = "pelt",
    model: str = "l2",
    min_size: int = 2,
    pen_scale: float = 4.0,
) -> list[int]:
    """Indices k where a new regime starts (y[k] is its first point); the end index is dropped.

    Give `n_bkps` (dynp, binseg) for a known number of jumps or `pen` (pelt, binseg); with neither,
    Pelt uses the default penalty of the module docstring.
    """
    import ruptures as rpt

    signal = np.asarray(y, dtype=float).reshape(-1, 1)
    n = len(signal)
    if n < 2 * min_size:
        return []
    if method == "dynp":
        if n_bkps is None:
            raise ConfigError("change_points: method 'dynp' needs n_bkps")
        algo = rpt.Dynp(model=model, min_size=min_size, jump=1).fit(signal)
        bk = algo.predict(n_bkps=n_bkps)
    elif method in ("pelt", "binseg"):
        cls = rpt.Pelt if method == "pelt" else rpt.Binseg
        algo = cls(model=model, min_size=min_size, jump=1).fit(signal)
        if n_bkps is not None and method == "binseg":
            bk = algo.predict(n_bkps=n_bkps)
        else:
            if pen is None:
                sigma = mad_sigma(y)
                pen = pen_scale * max(sigma, 1e-6) ** 2 * math.log(n)
            bk = algo.predict(pen=pen)
    else:
        raise ConfigError(f"change_points: unknown method {method!r} (dynp, pelt, binseg)")
    return [int(k) for k in bk[:-1]]


def biggest_jump(y: Sequence[float], min_size: int = 2) -> int | None:
    """The single best change point (Dynp, one breakpoint), or None for a too-short curve."""
    k = change_points(y, n_bkps=1, method="dynp", min_size=min_size)
    return k[0] if k else None


def abruptness(
    steps: Sequence[float], y: Sequence[float], k: int, min_delta: float = 0.2, max_width_ratio: float = 0.1
) -> dict[str, float | bool]:
    """Size and 10-90% width of the jump at change point k (see module docstring)."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(y, dtype=float)
    if not 0 < k < len(v):
        raise ConfigError(f"abruptness: change point index {k} leaves an empty side (n={len(v)})")
    y_pre = float(v[:k].mean())
    delta = float(v[k:].mean()) - y_pre
    z = (v - y_pre) / delta if delta != 0 else np.zeros_like(v)
    below = np.nonzero(z[:k] < 0.1)[0]
    lo = int(below[-1]) + 1 if len(below) else 0
    above = np.nonzero(z[lo:] >= 0.9)[0]
    hi = lo + int(above[0]) if len(above) else len(v) - 1
    width = float(s[hi] - s[min(lo, hi)])
    t_cp = float(s[k])
    ratio = width / t_cp if t_cp > 0 else float("inf")
    spacing = float(s[k] - s[k - 1])
    return {
        "step": t_cp,
        "delta": delta,
        "width": width,
        "width_ratio": ratio,
        "abrupt": bool(abs(delta) >= min_delta and ratio <= max_width_ratio),
        "spacing": spacing,
        "resolution_limited": bool(abs(delta) >= min_delta and width <= spacing),
    }


def logistic_fit(steps: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Least-squares fit of y = y0 + delta * sigmoid((t - t0) / tau); returns y0, delta, t0, tau, tau/t0."""
    from scipy.optimize import curve_fit

    t = np.asarray(steps, dtype=float)
    v = np.asarray(y, dtype=float)

    def f(t, y0, delta, t0, log_tau):
        return y0 + delta / (1 + np.exp(-(t - t0) / np.exp(log_tau)))

    k = biggest_jump(v) or len(v) // 2
    span = max(t[-1] - t[0], 1e-9)
    p0 = [v[:k].mean(), v[k:].mean() - v[:k].mean(), t[k], math.log(span / 20)]
    try:
        (y0, delta, t0, log_tau), _ = curve_fit(f, t, v, p0=p0, maxfev=20000)
    except RuntimeError:
        return {
            "y0": float("nan"),
            "delta": float("nan"),
            "t0": float("nan"),
            "tau": float("nan"),
            "tau_over_t0": float("nan"),
        }
    tau = float(np.exp(log_tau))
    return {
        "y0": float(y0),
        "delta": float(delta),
        "t0": float(t0),
        "tau": tau,
        "tau_over_t0": tau / float(t0) if t0 > 0 else float("inf"),
    }


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Fit y = b x^a by least squares in log-log; returns a, b, r2 and the number of points."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if len(lx) < 2 or np.ptp(lx) == 0:
        return {"a": float("nan"), "b": float("nan"), "r2": float("nan"), "n": float(len(lx))}
    a, logb = np.polyfit(lx, ly, 1)
    pred = a * lx + logb
    ss_res, ss_tot = float(((ly - pred) ** 2).sum()), float(((ly - ly.mean()) ** 2).sum())
    return {
        "a": float(a),
        "b": float(np.exp(logb)),
        "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        "n": float(len(lx)),
    }

"""Presence classes of crosscoder latents, defined for any number of checkpoints K.

Why: the paper's one-vs-all cuts (a value > 0.7 is "specific", every value >= 0.3 is "shared") cannot
call a latent shared once K >= 4, because one-vs-all values sum to 1 (the ideal shared value is 1/K).
Instead a latent is *present* at checkpoint m when its decoder norm there is material relative to its
own largest one,

    present_m(i) = ||d_{i,m}|| / max_m' ||d_{i,m'}|| >= tau,

and its class is named by the set of checkpoints where it is present (a PROPOSAL; `tau` is a parameter,
default 0.3, and `sensitivity` shows how the counts move with it):

    all K                          -> "shared"
    j..K-1, j >= 1                 -> "emerging at <j>"
    0..j, j <= K-2                 -> "discontinued after <j>"
    a..b with 0 < a <= b < K-1     -> "transient at <a>" (a == b) or "transient <a>-<b>"
    any other set (with gaps)      -> "intermittent <a>+<c>+..."

The same rule classes |IE_m| (RelIE's numerator) with an extra "no effect" class (see `effect_classes`).
Norms should be the *normalised-space* norms (`CrossCoder.normalised_decoder_norms`): there every
checkpoint's input has mean norm sqrt(D), so a checkpoint whose raw activations are 10x larger does not
make its decoder rows 10x larger. The class depends on a ratio to the latent's own maximum, so the
residual differences of the normalised scales (a checkpoint holding more features gets a somewhat lower
s_m, ~10-15% on planted data) move the ratio far less than the distance from a present value (~1) to tau.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ontogeny.errors import ConfigError

SHARED, NONE, NO_EFFECT = "shared", "none", "no effect"
DEFAULT_TAUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def presence(values_FK: np.ndarray, tau: float = 0.3) -> np.ndarray:
    """present [F, K]: |v_m| / max_m' |v_m'| >= tau (rows whose values are all 0 are present nowhere)."""
    if not 0.0 < tau <= 1.0:
        raise ConfigError(f"presence threshold tau must be in (0, 1], got {tau}")
    v = np.abs(np.asarray(values_FK, dtype=np.float64))
    if v.ndim != 2:
        raise ConfigError(f"presence needs values [F, K], got shape {v.shape}")
    top = v.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(top > 0, v / np.where(top > 0, top, 1.0), 0.0)
    return ratio >= tau


def pattern_name(present_K: Sequence[bool], names: Sequence[str]) -> str:
    """Class name of one presence set (see module docstring)."""
    on = [m for m, p in enumerate(present_K) if p]
    k = len(names)
    if len(present_K) != k:
        raise ConfigError(f"{k} checkpoint names for a presence pattern of length {len(present_K)}")
    if not on:
        return NONE
    a, b = on[0], on[-1]
    if len(on) != b - a + 1:
        return "intermittent " + "+".join(names[m] for m in on)
    if a == 0 and b == k - 1:
        return SHARED
    if b == k - 1:
        return f"emerging at {names[a]}"
    if a == 0:
        return f"discontinued after {names[b]}"
    return f"transient at {names[a]}" if a == b else f"transient {names[a]}-{names[b]}"


def presence_classes(values_FK: np.ndarray, names: Sequence[str], tau: float = 0.3) -> np.ndarray:
    """Class name per latent [F] (object array) from its presence pattern."""
    pres = presence(values_FK, tau)
    if pres.shape[1] != len(names):
        raise ConfigError(f"{len(names)} checkpoint names for {pres.shape[1]} columns")
    return np.array([pattern_name(row, names) for row in pres], dtype=object)


def effect_classes(ie_FK: np.ndarray, names: Sequence[str], floor: float, tau: float = 0.3) -> np.ndarray:
    """Presence classes of |IE_m(i)|, with "no effect" where sum_m |IE_m(i)| <= floor.

    Why: a latent with no effect at any checkpoint has no RelIE worth reading (0/0); calling it "shared"
    (as RelIE = 1/M everywhere would suggest) is a phantom. `floor` is a noise floor, e.g. a high quantile
    of the summed |IE| of random directions (`ontogeny.causal.attribution.Effects.noise_floor`).
    """
    ie = np.abs(np.asarray(ie_FK, dtype=np.float64))
    out = presence_classes(ie, names, tau)
    out[ie.sum(axis=1) <= floor] = NO_EFFECT
    return out


def sensitivity(values_FK: np.ndarray, names: Sequence[str], taus: Sequence[float] = DEFAULT_TAUS,
                ) -> list[dict[str, float | str | int]]:
    """Rows {tau, class, latents}: how many latents fall in each presence class at each tau."""
    rows: list[dict[str, float | str | int]] = []
    for tau in taus:
        counts = Counter(presence_classes(values_FK, names, tau).tolist())
        rows += [{"tau": float(tau), "class": c, "latents": int(n)} for c, n in sorted(counts.items())]
    return rows


def class_order(names: Sequence[str]) -> list[str]:
    """Every contiguous class of K checkpoints in a reading order (shared, emerging, discontinued, transient)."""
    k = len(names)
    out = [SHARED]
    out += [f"emerging at {names[j]}" for j in range(1, k)]
    out += [f"discontinued after {names[j]}" for j in range(k - 1)]
    out += [pattern_name([a <= m <= b for m in range(k)], names)
            for a in range(1, k - 1) for b in range(a, k - 1)]
    return out

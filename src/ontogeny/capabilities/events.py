"""Emergence events of capability curves: for each metric over a checkpoint series, the biggest jump
(Dynp, one change point), all jumps (Pelt), the jump's abruptness, and the paper-style threshold step.

Curves are indexed by checkpoint number, not raw step (early checkpoints are log-spaced; spec 4.4).
The emergence step of a jump at index k is steps[k], the first checkpoint of the new regime. The
paper-style step (seed 004, section 2) is the midpoint between the last checkpoint below `threshold` and
the first at or above it that stays there for `persist` checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ontogeny.capabilities.detect import abruptness, biggest_jump, change_points


def threshold_step(
    steps: Sequence[int], y: Sequence[float], threshold: float, persist: int = 1
) -> float | None:
    """Midpoint between the last checkpoint before the crossing and the first one at/above threshold."""
    for i in range(len(y)):
        if all(v >= threshold for v in y[i : i + persist]) and i + persist <= len(y):
            return float(steps[i]) if i == 0 else (steps[i - 1] + steps[i]) / 2
    return None


def metric_events(
    steps: Sequence[int],
    y: Sequence[float],
    min_size: int = 2,
    min_delta: float = 0.2,
    max_width_ratio: float = 0.1,
    pen: float | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """One row of events for one metric curve (see module docstring)."""
    row: dict[str, Any] = {"n_checkpoints": len(y)}
    k = biggest_jump(y, min_size=min_size)
    if k is None:
        row.update(jump_step=None, delta=None, width=None, width_ratio=None, abrupt=None, spacing=None,
                   resolution_limited=None, all_jumps=[])
    else:
        ab = abruptness(steps, y, k, min_delta=min_delta, max_width_ratio=max_width_ratio)
        row.update(
            jump_step=int(steps[k]),
            jump_index=k,
            delta=ab["delta"],
            width=ab["width"],
            width_ratio=ab["width_ratio"],
            abrupt=ab["abrupt"],
            spacing=ab["spacing"],
            resolution_limited=ab["resolution_limited"],
            all_jumps=[int(steps[j]) for j in change_points(y, pen=pen, method="pelt", min_size=min_size)],
        )
    if threshold is not None:
        row["threshold_step"] = threshold_step(steps, y, threshold)
    return row


def capability_events(
    rows: Sequence[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    thresholds: dict[str, float] | None = None,
    **kw,
) -> list[dict[str, Any]]:
    """Events for each numeric metric of capability rows ({step, metric...}), sorted by step."""
    rows = sorted(rows, key=lambda r: r["step"])
    steps = [r["step"] for r in rows]
    names = metrics or [k for k in rows[0] if k != "step" and isinstance(rows[0][k], (int, float))]
    thresholds = thresholds or {}
    return [
        {
            "metric": name,
            **metric_events(steps, [float(r[name]) for r in rows], threshold=thresholds.get(name), **kw),
        }
        for name in names
    ]

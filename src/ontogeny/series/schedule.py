"""Pythia-like checkpoint schedule and learning-rate schedule.

Pythia saves steps 0, 1, 2, 4, ..., 512 and then every 1000 steps (Biderman et al. 2023); here the
log-spaced part runs up to `log_until` and the evenly spaced part every `every` steps up to `n_steps`.
"""

from __future__ import annotations

import math

from ontogeny.errors import ConfigError


def checkpoint_steps(n_steps: int, every: int, log_until: int) -> list[int]:
    """Steps to save: 0, then powers of two up to `log_until`, then multiples of `every`, and `n_steps`."""
    if n_steps < 0 or every < 1 or log_until < 0:
        raise ConfigError(f"bad schedule: n_steps={n_steps}, every={every}, log_until={log_until}")
    steps = {0, n_steps}
    p = 1
    while p <= min(log_until, n_steps):
        steps.add(p)
        p *= 2
    steps.update(range(every, n_steps + 1, every))
    return sorted(steps)


def lr_at(step: int, lr: float, warmup: int, n_steps: int, final_frac: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `final_frac * lr` at `n_steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, n_steps - warmup)
    t = min(1.0, (step - warmup) / span)
    return lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))

"""The descending k search of BatchTopK-kind crosscoders (`KSearch`), run inside their training.

Why it lives apart from `crosscoder.py`: it is a training policy (it reads each step's FVU and sets the
rule's k), like ATM for the trainer, and knows nothing of the crosscoder's weights.
"""

from __future__ import annotations

import torch

from ontogeny.dictionaries.rules import Rule


class KSearch:
    """A descending search for the k of a BatchTopK-kind crosscoder, run inside its training (a PROPOSAL).

    Why: without an L1 term, a k above the number of features truly active per token does not cost
    reconstruction but lets spare slots split features across latents (the fit is not unique), while a k
    below it loses reconstruction quickly. So the smallest k whose FVU stays near the best FVU is the one
    that leaves one latent per feature. The first phase runs at the configured k (the largest tried), then
    k is halved while accepted, then bisected between the smallest accepted and the largest rejected k.
    A phase is read in windows of `k_search_phase_steps / 2` steps (mean training FVU per window) and ends
    once a window improves on the one before by less than `k_search_plateau` (relative) or abs_tol / 5
    (absolute, so that an FVU falling geometrically towards 0 at noise 0 ends too; at least two windows,
    at most 8): a just-lowered k needs steps to re-adapt, and judging it before it has would
    reject a k that is fine. k is accepted when its FVU <= (1 + rel_tol) * best accepted FVU + abs_tol.
    When the search ends (adjacent accepted / rejected k, k = 1, `k_search_max_phases`, or past
    `k_search_max_frac` of the training steps, where an unfinished phase is dropped), the rest of
    training runs at the smallest accepted k, and the inference threshold is learnt afresh at it. Like the
    authors' k annealing (1000 -> k), training starts dense and ends at the final k.
    """

    MAX_WINDOWS = 8

    def __init__(self, cfg):
        self.cfg = cfg
        self.window = max(1, cfg.k_search_phase_steps // 2)
        self.k = min(cfg.k, cfg.d_sae)
        self.ok: int | None = None          # smallest accepted k
        self.bad: int | None = None         # largest rejected k
        self.best = float("inf")
        self.done = False
        self.end_step: int | None = None
        self.trials: list[dict[str, float]] = []
        self._sum, self._n, self._windows = 0.0, 0, []
        self._changed = True

    def apply(self, rule: Rule) -> None:
        """Give the rule the current k (restarting its inference threshold when k changed)."""
        if not self._changed:
            return
        rule.cfg = rule.cfg.model_copy(update={"k": self.k})
        theta = getattr(rule, "theta", None)
        if isinstance(theta, torch.Tensor):
            theta.fill_(-1.0)
        self._changed = False

    def observe(self, fvu: torch.Tensor, step: int, total_steps: int | None = None) -> None:
        """Record a step's FVU; at the end of a window decide whether the phase is over, and on k. Past
        `k_search_max_frac` of `total_steps` the search stops at the smallest accepted k."""
        if self.done:
            return
        self._sum += float(fvu)
        self._n += 1
        if self._n < self.window:
            return
        self._windows.append(self._sum / self._n)
        self._sum, self._n = 0.0, 0
        w = self._windows
        late = total_steps is not None and step + 1 >= self.cfg.k_search_max_frac * total_steps
        if late:                            # out of search budget: keep the smallest k already accepted
            self.done, self.end_step = True, step + 1
            if self.ok is not None and self.ok != self.k:
                self.k, self._changed = self.ok, True
            elif self.ok is None:
                self.ok = self.k
            return
        if len(w) < 2:
            return
        still = w[-2] - w[-1] >= max(self.cfg.k_search_plateau * w[-2], self.cfg.k_search_abs_tol / 5)
        if still and len(w) < self.MAX_WINDOWS:
            return
        fvu_k, self._windows = w[-1], []
        accepted = self.ok is None or fvu_k <= (1 + self.cfg.k_search_rel_tol) * self.best \
            + self.cfg.k_search_abs_tol
        self.trials.append({"k": self.k, "fvu": fvu_k, "accepted": float(accepted), "step": step + 1})
        if accepted:
            self.ok, self.best = self.k, min(self.best, fvu_k)
        else:
            self.bad = self.k
        nxt = self.ok // 2 if self.bad is None else (self.ok + self.bad) // 2
        if nxt < 1 or nxt in (self.ok, self.bad) or len(self.trials) >= self.cfg.k_search_max_phases:
            self.done, self.end_step, nxt = True, step + 1, self.ok
        if nxt != self.k:
            self.k, self._changed = nxt, True

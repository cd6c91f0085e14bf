"""What the generic trainer and a trainable model exchange each step (the trainer contract).

A model the trainer can train provides:
  `training_loss(x, state) -> StepOutput`  (x is any shape with the batch first: [B, D], [B, K, D], ...)
  `n_latents: int`                         (for dead-latent tracking)
and optionally `initialize_from_batch(x)`, `before_optimizer_step()`, `after_optimizer_step()` and
`fold_input_scale(scale)`. A code policy (ATM) is handed to the model through `state.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


class CodePolicy(Protocol):
    """A training-time policy acting on the active codes (ATM): mask them, then observe the step."""

    def mask(self, vals_N: torch.Tensor, cols_N: torch.Tensor, state: TrainState) -> torch.Tensor:
        """Codes after masking (same shape), computed from pre-mask codes of latents `cols_N`."""
        ...

    def observe(self, vals_N: torch.Tensor, cols_N: torch.Tensor, contrib_N: torch.Tensor, n_rows: int,
                state: TrainState) -> None:
        """Update running statistics from pre-mask codes and each entry's reconstruction contribution."""
        ...


@dataclass
class TrainState:
    """Where training stands, as the model sees it."""

    step: int = 0
    total_steps: int | None = None
    sparsity_scale: float = 1.0
    dead_F: torch.Tensor | None = None
    policy: CodePolicy | None = None
    generator: torch.Generator | None = None


@dataclass
class StepOutput:
    """A training step's loss, its numbers (0-d tensors) and how many tokens fired each latent."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    fired_F: torch.Tensor | None = None

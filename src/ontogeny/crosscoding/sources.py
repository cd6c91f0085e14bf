"""Where a crosscode study's activations come from: the run's activation store, or plain files.

Why: RelDec and presence classes need only activations of the same tokens at K checkpoints, so a user
with activations captured elsewhere should not need models, a series or `ontogeny cache`. File layout:

    DIR/step_000128/<site>.safetensors     or   DIR/step_000128/activations.safetensors

each holding the tensor `acts` [tokens, d_in]; row i of every step is the same token, so every step
needs the same token count and width. A mismatch or a missing step is a StoreError naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ontogeny.errors import StoreError
from ontogeny.store.layout import step_dir
from ontogeny.store.run import tensor_hash

ACTS_KEY = "acts"
DEFAULT_FILE = "activations.safetensors"


@dataclass
class CrosscodeInputs:
    """Stacked activations [N, K, D] of one site, their hash, and the token ids [S, T] when known."""

    acts_NKD: torch.Tensor
    tokens_hash: str
    origin: str
    token_ids_ST: torch.Tensor | None = None


def from_store(store, steps: Sequence[int], site: str) -> CrosscodeInputs:
    """Inputs from an `ActivationStore` (its token ids make top-activating contexts possible)."""
    missing = [s for s in steps if s not in store.steps]
    if missing:
        raise StoreError(f"steps {missing} are not in the activation store {store.root} (has {store.steps})")
    return CrosscodeInputs(store.load_stack(list(steps), site), store.tokens_hash, str(store.root), store.token_ids)


def step_file(root: str | Path, step: int, site: str) -> Path:
    """`root/step_XXXXXX/<site>.safetensors` if it exists, else `.../activations.safetensors`."""
    folder = Path(root) / step_dir(step)
    own = folder / f"{site}.safetensors"
    return own if own.exists() else folder / DEFAULT_FILE


def read_acts(path: Path) -> torch.Tensor:
    """The `acts` tensor [N, D] (float32) of one file; StoreError naming the file otherwise."""
    if not path.exists():
        raise StoreError(f"missing activation file {path} (expected {path.parent}/<site>.safetensors or "
                         f"{path.parent}/{DEFAULT_FILE})")
    try:
        with safe_open(str(path), framework="pt") as fh:
            if ACTS_KEY not in fh.keys():
                raise StoreError(f"{path} has no tensor {ACTS_KEY!r} (has {sorted(fh.keys())})")
            acts = fh.get_tensor(ACTS_KEY)
    except (OSError, SafetensorError) as e:
        raise StoreError(f"cannot read activation file {path}: {e}") from None
    if acts.dim() != 2:
        raise StoreError(f"{path}: {ACTS_KEY!r} must be [tokens, d_in], got shape {tuple(acts.shape)}")
    acts = acts.float()
    if not bool(torch.isfinite(acts).all()):
        raise StoreError(f"{path}: activations contain NaN or inf")
    return acts


def from_files(root: str | Path, steps: Sequence[int], site: str) -> CrosscodeInputs:
    """Inputs from a folder of per-step files (module docstring); checks widths and token counts agree."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"activation folder {root} does not exist")
    parts, first = [], None
    for s in steps:
        path = step_file(root, s, site)
        acts = read_acts(path)
        if first is None:
            first = (path, acts.shape)
        elif acts.shape[1] != first[1][1]:
            raise StoreError(f"{path}: d_in {acts.shape[1]} differs from {first[0]}'s {first[1][1]}")
        elif acts.shape[0] != first[1][0]:
            raise StoreError(f"{path}: {acts.shape[0]} tokens, {first[0]} has {first[1][0]}; every step must "
                             "hold the same tokens in the same order")
        parts.append(acts)
    stack = torch.stack(parts, dim=1)
    return CrosscodeInputs(stack, tensor_hash(stack), str(root))

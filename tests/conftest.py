"""Fixtures shared by every area's tests: a tiny random GPT-NeoX checkpoint series on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ontogeny.testing import make_tiny_series

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_series_dir(tmp_path_factory) -> Path:
    """Three random checkpoints (steps 0, 1, 4) of a 2-layer d_model-32 GPT-NeoX, with a tokenizer."""
    return make_tiny_series(tmp_path_factory.mktemp("tiny_series") / "series")

"""Fixtures shared by every area's tests: a tiny random GPT-NeoX checkpoint series on disk, and one
uninterrupted tiny study (the reference that tests/study and tests/reliability compare against)."""

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


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> tuple[Path, dict]:
    """`ontogeny.study.demo.tiny_config` run once, uninterrupted, in this process: (run dir, run_study's result)."""
    from ontogeny.study.demo import tiny_config
    from ontogeny.study.pipeline import run_study

    run_dir = tmp_path_factory.mktemp("study") / "run"
    out = run_study(tiny_config(), run_dir)
    return run_dir, out

"""A tiny study, run once per test session and shared by the study tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ontogeny.study.demo import tiny_config
from ontogeny.study.pipeline import run_study


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("study") / "run"
    out = run_study(tiny_config(), run_dir)
    return run_dir, out

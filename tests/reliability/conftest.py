"""Shared by the reliability tests: the tiny study written as the TOML file a user would pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ontogeny.commands._common import build_config
from ontogeny.config import StudyConfig
from ontogeny.study.demo import tiny_config


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(type(v))


def to_toml(d: dict, prefix: str = "") -> list[str]:
    """A nested config dict as TOML lines (None means "the default": left out)."""
    scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict) and v is not None]
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += to_toml(v, f"{prefix}.{k}" if prefix else k)
    return lines


def write_toml(path: Path, cfg: StudyConfig) -> Path:
    """`cfg` as a study TOML file (its non-default fields), checked to read back as the same config."""
    path.write_text("\n".join(to_toml(cfg.model_dump(mode="json", exclude_defaults=True))) + "\n")
    assert build_config(StudyConfig, path) == cfg
    return path


@pytest.fixture()
def tiny_toml(tmp_path) -> Path:
    """`ontogeny.study.demo.tiny_config` as `tmp_path/tiny.toml`."""
    return write_toml(tmp_path / "tiny.toml", tiny_config())


@pytest.fixture()
def study_toml(tmp_path):
    """`study_toml(cfg, name)`: write a StudyConfig as `tmp_path/<name>` (see `write_toml`)."""
    return lambda cfg, name="study.toml": write_toml(tmp_path / name, cfg)

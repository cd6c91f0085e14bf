"""Activations from files: layout, named errors, nothing written on bad input."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ontogeny.crosscoding.sources import from_files
from ontogeny.errors import StoreError

SITE = "blocks.0.hook_resid_post"


def _write(root, step, acts, name=None, key="acts"):
    d = root / f"step_{step:06d}"
    d.mkdir(parents=True, exist_ok=True)
    save_file({key: acts}, str(d / (name or f"{SITE}.safetensors")))


def test_reads_both_layouts_in_step_order(tmp_path):
    a, b = torch.randn(10, 4), torch.randn(10, 4)
    _write(tmp_path, 5, a)
    _write(tmp_path, 40, b, name="activations.safetensors")
    got = from_files(tmp_path, [5, 40], SITE)
    assert got.acts_NKD.shape == (10, 2, 4)
    torch.testing.assert_close(got.acts_NKD[:, 0], a)
    torch.testing.assert_close(got.acts_NKD[:, 1], b)
    assert got.token_ids_ST is None and len(got.tokens_hash) > 8


@pytest.mark.parametrize("case, match", [("missing", "step_000009"), ("width", "d_in 5"),
                                         ("tokens", "11 tokens"), ("key", "no tensor 'acts'"),
                                         ("shape", "tokens, d_in")])
def test_bad_inputs_are_named(tmp_path, case, match):
    _write(tmp_path, 1, torch.randn(10, 4))
    if case == "width":
        _write(tmp_path, 9, torch.randn(10, 5))
    elif case == "tokens":
        _write(tmp_path, 9, torch.randn(11, 4))
    elif case == "key":
        _write(tmp_path, 9, torch.randn(10, 4), key="x")
    elif case == "shape":
        _write(tmp_path, 9, torch.randn(10, 4, 2))
    with pytest.raises(StoreError, match=match):
        from_files(tmp_path, [1, 9], SITE)

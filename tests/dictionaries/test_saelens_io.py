"""Save/load in the SAELens layout: round trips per rule, a folder written by another tool, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.rules import RULES
from ontogeny.dictionaries.saelens_io import load_dictionary, save_dictionary
from ontogeny.errors import StoreError

torch.set_num_threads(1)


def _trained_like(rule: str) -> Dictionary:
    m = Dictionary(DictionaryConfig(rule=rule, d_in=8, d_sae=20, k=3, threshold_start_step=0), seed=2)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        if rule == "batchtopk":
            m.rule.theta.fill_(0.25)
    return m.eval()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_round_trip_gives_identical_outputs(rule, tmp_path):
    m = _trained_like(rule)
    out = save_dictionary(m, tmp_path / "d", {"checkpoint_step": 128, "site": "blocks.1.hook_resid_post"},
                          inputs={"acts": "abc"})
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu",
                                   "jumprelu": "jumprelu"}[rule]
    assert cfg["metadata"]["checkpoint_step"] == 128 and cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert cfg["metadata"]["provenance"]["inputs"] == {"acts": "abc"}
    back = load_dictionary(out)
    assert back.cfg.rule == rule
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(back.encode(x), m.encode(x))
        assert torch.equal(back(x), m(x))
    if rule == "batchtopk":  # inference is a per-latent threshold, as SAELens's JumpReLU reads it
        assert torch.equal(back.threshold_F, torch.full((20,), 0.25))


def test_loads_a_folder_written_by_another_tool(tmp_path):
    """A JumpReLU SAE laid out as SAELens writes it, with extra keys we do not know, encodes as SAELens would."""
    g = torch.Generator().manual_seed(0)
    W_enc, W_dec = torch.randn(6, 9, generator=g), torch.randn(9, 6, generator=g)
    b_enc, b_dec, thr = torch.randn(9, generator=g), torch.randn(6, generator=g), torch.rand(9, generator=g)
    folder = tmp_path / "foreign"
    folder.mkdir()
    save_file({"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec, "threshold": thr},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": "jumprelu", "d_in": 6, "d_sae": 9, "dtype": "float32", "device": "cuda",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.5.4", "model_name": "pythia-70m", "hook_name": "blocks.3.hook_resid_post",
                     "context_size": 128, "prepend_bos": True, "neuronpedia_id": None}}))
    d = load_dictionary(folder)
    x = torch.randn(30, 6, generator=g)
    hidden = (x - b_dec) @ W_enc + b_enc
    expect_codes = torch.relu(hidden) * (hidden > thr)
    with torch.no_grad():
        assert torch.allclose(d.encode(x), expect_codes, atol=1e-6)
        assert torch.allclose(d(x), expect_codes @ W_dec + b_dec, atol=1e-5)
    assert d.metadata["hook_name"] == "blocks.3.hook_resid_post"


def test_bad_folders_raise_naming_the_file(tmp_path):
    with pytest.raises(StoreError, match="cfg.json"):
        load_dictionary(tmp_path)
    m = _trained_like("topk")
    save_dictionary(m, tmp_path / "d")
    from safetensors.torch import load_file
    w = load_file(str(tmp_path / "d" / "sae_weights.safetensors"))
    w["W_dec"] = w["W_dec"][:5]
    save_file(w, str(tmp_path / "d" / "sae_weights.safetensors"))
    with pytest.raises(StoreError, match="W_dec has shape"):
        load_dictionary(tmp_path / "d")

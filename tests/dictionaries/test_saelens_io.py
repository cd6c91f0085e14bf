"""Save/load in the SAELens layout: round trips per rule, folders written by SAELens (laid out here, and by
sae-lens itself where the peer venv of `make bench-peers` exists), sparsify folders, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary
from ontogeny.dictionaries.rules import RULES, Rule
from ontogeny.dictionaries.saelens_io import load_dictionary, save_dictionary
from ontogeny.errors import StoreError

torch.set_num_threads(1)
PEER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-peers" / "bin" / "python"


def _trained_like(rule: str, small: dict, theta: float | None = 0.25) -> Dictionary:
    m = Dictionary(DictionaryConfig(rule=rule, d_in=12, d_sae=40, threshold_start_step=0, **small), seed=2)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        if theta is not None and hasattr(m.rule, "theta"):
            m.rule.theta.fill_(theta)
    return m.eval()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_round_trip_gives_identical_outputs(rule, tmp_path, rule_params):
    m = _trained_like(rule, rule_params[rule]["small"])
    out = save_dictionary(m, tmp_path / "d", {"checkpoint_step": 128, "site": "blocks.1.hook_resid_post"},
                          inputs={"acts": "abc"})
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == rule_params[rule]["saelens"]
    assert cfg["metadata"]["checkpoint_step"] == 128 and cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert cfg["metadata"]["provenance"]["inputs"] == {"acts": "abc"}
    back = load_dictionary(out)
    assert back.cfg == m.cfg
    x = torch.randn(50, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(back.encode(x), m.encode(x))
        assert torch.equal(back(x), m(x))
    if hasattr(m.rule, "theta"):  # inference is a per-latent threshold, as SAELens's JumpReLU reads it
        assert torch.equal(back.threshold_F, torch.full((40,), 0.25))


@pytest.mark.parametrize("rule", [r for r in sorted(RULES)  # rules that keep state beside their tensors
                                  if RULES[r].saelens_metadata is not Rule.saelens_metadata])
def test_round_trip_before_a_threshold_is_learnt(rule, tmp_path, rule_params):
    """A batch top-k dictionary saved before its EMA started still encodes by batch top-k when loaded."""
    m = _trained_like(rule, rule_params[rule]["small"], theta=None)
    assert m.threshold_F is None
    back = load_dictionary(save_dictionary(m, tmp_path / "d"))
    assert back.threshold_F is None
    x = torch.randn(50, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = m.encode(x)
        assert torch.equal(back.encode(x), codes)
    assert float((codes != 0).sum(1).float().mean()) == m.cfg.k  # batch top-k, not ReLU


def _saelens_topk_folder(folder: Path, W_enc, W_dec, b_enc, b_dec, rescale: bool, k: int = 3) -> Path:
    folder.mkdir()
    save_file({"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": "topk", "d_in": W_enc.shape[0], "d_sae": W_enc.shape[1], "k": k, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
        "rescale_acts_by_decoder_norm": rescale, "metadata": {"hook_name": "blocks.0.hook_resid_post"}}))
    return folder


def test_saelens_topk_with_rescale_by_decoder_norm_encodes_as_saelens(tmp_path):
    """SAELens's rule: pre * ||d_i||, top-k of ReLU, decode with codes / ||d_i||; rows of norm 0.5-2."""
    g = torch.Generator().manual_seed(1)
    W_enc, b_enc, b_dec = torch.randn(6, 10, generator=g), torch.randn(10, generator=g), torch.randn(6, generator=g)
    W_dec = torch.randn(10, 6, generator=g)
    n = torch.linspace(0.5, 2.0, 10)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * n[:, None]
    d = load_dictionary(_saelens_topk_folder(tmp_path / "r", W_enc, W_dec, b_enc, b_dec, rescale=True))
    x = torch.randn(40, 6, generator=g)
    hidden = ((x - b_dec) @ W_enc + b_enc) * n
    top = hidden.topk(3, dim=-1)
    codes = torch.zeros_like(hidden).scatter(-1, top.indices, torch.relu(top.values))
    with torch.no_grad():
        torch.testing.assert_close(d.encode(x), codes, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d(x), (codes / n) @ W_dec + b_dec, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d.W_dec_FD.norm(dim=1), torch.ones(10))
    # the same folder without the flag selects by raw pre-activations: different codes
    plain = load_dictionary(_saelens_topk_folder(tmp_path / "p", W_enc, W_dec, b_enc, b_dec, rescale=False))
    with torch.no_grad():
        assert not torch.equal((plain.encode(x) != 0), (codes != 0))


def test_rescale_is_the_identity_when_decoder_rows_are_unit_norm(tmp_path):
    g = torch.Generator().manual_seed(2)
    W_enc, b_enc, b_dec = torch.randn(6, 10, generator=g), torch.randn(10, generator=g), torch.randn(6, generator=g)
    W_dec = torch.randn(10, 6, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    d = load_dictionary(_saelens_topk_folder(tmp_path / "u", W_enc, W_dec, b_enc, b_dec, rescale=True))
    assert torch.equal(d.W_enc_DF, W_enc) and torch.equal(d.W_dec_FD, W_dec) and torch.equal(d.b_enc_F, b_enc)


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


def _sparsify_folder(folder: Path, d_in=6, F=12, k=2, cfg_extra=None, tensors_extra=None, seed=0) -> Path:
    """A folder laid out as EleutherAI sparsify's `save_to_disk` writes it."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir()
    W_dec = torch.randn(F, d_in, generator=g)
    t = {"encoder.weight": torch.randn(F, d_in, generator=g), "encoder.bias": torch.randn(F, generator=g),
         "W_dec": W_dec / W_dec.norm(dim=1, keepdim=True), "b_dec": torch.randn(d_in, generator=g),
         **(tensors_extra or {})}
    save_file(t, str(folder / "sae.safetensors"))
    cfg = {"activation": "topk", "expansion_factor": 2, "normalize_decoder": True, "num_latents": 0, "k": k,
           "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": d_in, **(cfg_extra or {})}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def test_loads_sparsify_layout(tmp_path):
    """codes = TopK_k(ReLU((x - b_dec) W^T + b)) with sparsify's tensor names; num_latents 0 -> expansion."""
    folder = _sparsify_folder(tmp_path / "layers.3")
    t = load_file(str(folder / "sae.safetensors"))
    d = load_dictionary(folder)
    assert (d.cfg.rule, d.cfg.d_sae, d.cfg.k) == ("topk", 12, 2)
    x = torch.randn(25, 6, generator=torch.Generator().manual_seed(3))
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    top = pre.topk(2, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    with torch.no_grad():
        torch.testing.assert_close(d.encode(x), codes)
        torch.testing.assert_close(d(x), codes @ t["W_dec"] + t["b_dec"])
    assert d.metadata["source"] == "sparsify"


@pytest.mark.parametrize("bad, match", [
    ({"cfg_extra": {"transcode": True}}, "cfg.json: sparsify transcode"),
    ({"cfg_extra": {"activation": "groupmax"}}, "cfg.json: sparsify activation"),
    ({"tensors_extra": {"W_skip": torch.zeros(6, 6)}}, "sae.safetensors holds a skip"),
    ({"cfg_extra": {"num_latents": 10}}, "sae.safetensors: encoder.weight has shape"),
])
def test_bad_sparsify_folders_name_the_file(tmp_path, bad, match):
    with pytest.raises(StoreError, match=match):
        load_dictionary(_sparsify_folder(tmp_path / "s", **bad))


def test_bad_folders_raise_naming_the_file(tmp_path, rule_params):
    with pytest.raises(StoreError, match="cfg.json"):
        load_dictionary(tmp_path)
    m = _trained_like("topk", rule_params["topk"]["small"])
    save_dictionary(m, tmp_path / "d")
    w = load_file(str(tmp_path / "d" / "sae_weights.safetensors"))
    w["W_dec"] = w["W_dec"][:5]
    save_file(w, str(tmp_path / "d" / "sae_weights.safetensors"))
    with pytest.raises(StoreError, match="W_dec has shape"):
        load_dictionary(tmp_path / "d")
    j = _trained_like("jumprelu", rule_params["jumprelu"]["small"])
    save_dictionary(j, tmp_path / "j")
    cfg = json.loads((tmp_path / "j" / "cfg.json").read_text())
    (tmp_path / "j" / "cfg.json").write_text(json.dumps({**cfg, "rescale_acts_by_decoder_norm": True}))
    with pytest.raises(StoreError, match="cfg.json: rescale_acts_by_decoder_norm"):
        load_dictionary(tmp_path / "j")
    (tmp_path / "j" / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    with pytest.raises(StoreError, match="cfg.json: architecture 'gated'"):
        load_dictionary(tmp_path / "j")


PEER_SCRIPT = r"""
import sys, torch
from safetensors.torch import save_file
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
out = sys.argv[1]
torch.manual_seed(0)
sae = TopKSAE(TopKSAEConfig(d_in=8, d_sae=16, k=3, rescale_acts_by_decoder_norm=True))
with torch.no_grad():
    for p in sae.parameters():
        p.copy_(torch.randn_like(p))
    sae.W_dec.mul_(torch.linspace(0.5, 2.0, 16)[:, None] / sae.W_dec.norm(dim=1, keepdim=True))
sae.save_model(out + "/sae")
x = torch.randn(20, 8)
with torch.no_grad():
    codes = sae.encode(x)
    save_file({"x": x, "codes": codes, "recon": sae.decode(codes)}, out + "/expect.safetensors")
"""


@pytest.mark.skipif(not PEER_PYTHON.exists(), reason="no .venv-peers (make bench-peers creates it)")
def test_loads_a_topk_folder_saved_by_sae_lens_itself(tmp_path):
    """sae-lens's own TopKSAE.save_model, rescale_acts_by_decoder_norm on, rows not unit: same codes."""
    run = subprocess.run([str(PEER_PYTHON), "-c", PEER_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    if run.returncode != 0 and "No module named 'sae_lens'" in run.stderr:
        pytest.skip("sae-lens is not installed in .venv-peers")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())["rescale_acts_by_decoder_norm"] is True
    ref = load_file(str(tmp_path / "expect.safetensors"))
    d = load_dictionary(tmp_path / "sae")
    with torch.no_grad():
        torch.testing.assert_close(d.encode(ref["x"]), ref["codes"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d(ref["x"]), ref["recon"], rtol=1e-5, atol=1e-5)

import pytest
import torch

from ontogeny.errors import SiteError
from ontogeny.series.load import load_series
from ontogeny.series.sites import capture, parse_site, patched


@pytest.fixture(scope="module")
def model(tiny_series_dir):
    return load_series(tiny_series_dir).model(4)


def test_parse_site_rejects_unknown_and_out_of_range():
    assert parse_site("blocks.3.attn.hook_z").layer == 3
    with pytest.raises(SiteError, match="blocks.0.hook_nope"):
        parse_site("blocks.0.hook_nope")
    with pytest.raises(SiteError, match="2 layers"):
        parse_site("blocks.5.hook_resid_post", n_layers=2)


def test_capture_shapes_and_residual_identities(model):
    ids = torch.randint(0, 300, (2, 10))
    sites = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.0.hook_attn_out",
             "blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre", "blocks.1.attn.hook_z", "blocks.1.attn.hook_pattern"]
    c = capture(model, ids, sites)
    assert c["blocks.0.hook_resid_post"].shape == (2, 10, 32)
    assert c["blocks.1.attn.hook_z"].shape == (2, 10, 4, 8)
    assert c["blocks.1.attn.hook_pattern"].shape == (2, 4, 10, 10)
    # parallel residual (Pythia): resid_post = resid_pre + attn_out + mlp_out
    torch.testing.assert_close(c["blocks.0.hook_resid_post"],
                               c["blocks.0.hook_resid_pre"] + c["blocks.0.hook_attn_out"] + c["blocks.0.hook_mlp_out"])
    torch.testing.assert_close(c["blocks.0.hook_resid_post"], c["blocks.1.hook_resid_pre"])
    pattern = c["blocks.1.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 4, 10))
    assert torch.triu(pattern[0, 0], diagonal=1).abs().max() == 0  # causal
    # the embedding is resid_pre of layer 0
    torch.testing.assert_close(c["blocks.0.hook_resid_pre"], model.gpt_neox.embed_in(ids))


def test_hook_z_recomputes_attn_out(model):
    ids = torch.randint(0, 300, (1, 8))
    c = capture(model, ids, ["blocks.1.attn.hook_z", "blocks.1.hook_attn_out"])
    z = c["blocks.1.attn.hook_z"].flatten(-2)
    torch.testing.assert_close(model.gpt_neox.layers[1].attention.dense(z), c["blocks.1.hook_attn_out"])


def test_patch_identity_is_noop_and_zeroing_matches_manual(model):
    ids = torch.randint(0, 300, (2, 8))
    with torch.no_grad():
        base = model(ids).logits
        with patched(model, {"blocks.1.hook_resid_post": lambda x: x}):
            same = model(ids).logits
        torch.testing.assert_close(base, same)
        with patched(model, {"blocks.1.hook_resid_post": torch.zeros_like}):
            zeroed = model(ids).logits
        expected = model.get_output_embeddings()(model.gpt_neox.final_layer_norm(torch.zeros(2, 8, 32)))
        torch.testing.assert_close(zeroed, expected)
    # hooks are removed afterwards
    torch.testing.assert_close(model(ids).logits, base)


def test_capture_stops_early_without_changing_values(model):
    ids = torch.randint(0, 300, (2, 8))
    early = capture(model, ids, ["blocks.0.hook_resid_post"], stop_early=True)
    full = capture(model, ids, ["blocks.0.hook_resid_post"], stop_early=False)
    torch.testing.assert_close(early["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"])

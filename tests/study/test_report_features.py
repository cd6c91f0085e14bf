"""Feature-page data and the Neuronpedia export of the tiny study, against brute force on its artifacts."""

from __future__ import annotations

import json

import pytest
import torch

from ontogeny.dictionaries.saelens_io import load_dictionary
from ontogeny.report.export import export_dictionary
from ontogeny.series.load import load_series
from ontogeny.store import layout
from ontogeny.store.activations import ActivationStore
from ontogeny.store.tables import read_table


@pytest.fixture(scope="module")
def page_data(tiny_study):
    run_dir = tiny_study[0]
    index = json.loads((run_dir / "features" / "index.json").read_text())
    with_page = [r for r in index["lineages"] if r["page"]]
    carriers = [r for r in with_page if r["is_carrier"]] or with_page
    lid = carriers[0]["lineage_id"]
    return run_dir, index, json.loads((run_dir / "features" / f"lineage_{lid:06d}.json").read_text())


def test_every_lineage_is_in_the_browser_and_every_carrier_has_a_page(page_data, tiny_study):
    run_dir, index, _ = page_data
    lineages = read_table(layout.table_path(run_dir, "lineages"))
    assert sorted(r["lineage_id"] for r in index["lineages"]) == sorted(r["lineage_id"] for r in lineages)
    carriers = {r["lineage_id"] for r in lineages if r["is_carrier"]}
    assert carriers <= {r["lineage_id"] for r in index["lineages"] if r["page"]}
    for r in index["lineages"]:
        assert r["page"] == (run_dir / "features" / f"lineage_{r['lineage_id']:06d}.json").exists()


def test_snapshots_match_a_brute_force_encoding(page_data):
    run_dir, index, data = page_data
    site = data["lineage"]["site"]
    store = ActivationStore(layout.activations_dir(run_dir))
    series = load_series(layout.series_dir(run_dir))
    firing = {(r["step"], r["feature"]): r["firing_frac"] for r in read_table(layout.table_path(run_dir, "features"))
              if r["site"] == site}
    assert len(data["snapshots"]) >= 2
    for snap in data["snapshots"]:
        d = load_dictionary(layout.dictionary_dir(run_dir, snap["step"], site))
        with torch.no_grad():
            a_N = d.encode(store.load(snap["step"], site))[:, snap["feature"]]
        assert snap["max_act"] == pytest.approx(float(a_N.max()), rel=1e-5)
        assert snap["contexts"][0]["max"] == pytest.approx(float(a_N.max()), rel=1e-5)
        assert snap["histogram"]["firing_frac"] == pytest.approx(float((a_N > 0).float().mean()))
        assert snap["histogram"]["firing_frac"] == pytest.approx(firing[(snap["step"], snap["feature"])], abs=0.01)
        c = snap["contexts"][0]
        T = store.token_ids.shape[1]
        assert c["values"][c["target"]] == pytest.approx(float(a_N[c["seq"] * T + c["pos"]]), abs=1e-3)
        W_U = series.model(snap["step"]).get_output_embeddings().weight.detach()
        logits = W_U @ d.W_dec_FD[snap["feature"]].detach()
        assert snap["logits"]["promoted"][0][1] == pytest.approx(float(logits.max()), abs=1e-3)
        assert snap["logits"]["suppressed"][0][1] == pytest.approx(float(logits.min()), abs=1e-3)
    assert [r["step"] for r in data["life"]] == index["steps"]
    assert "nan" not in json.dumps(data).lower().replace("nan_", "")


def test_neuronpedia_export_agrees_with_the_feature_page(page_data, tmp_path):
    run_dir, _, data = page_data
    snap = data["snapshots"][-1]
    site = data["lineage"]["site"]
    out = export_dictionary(run_dir, snap["step"], site, tmp_path / "np", n_top=5, chunk_rows=100)
    batch = json.loads((tmp_path / "np" / "neuronpedia" / "batch-0.json").read_text())
    feat = next(f for f in batch["features"] if f["feature_index"] == snap["feature"])
    assert set(batch) == {"model_id", "layer", "sae_set", "features"} and out["n_features"] >= len(batch["features"])
    assert max(feat["activations"][0]["values"]) == pytest.approx(snap["max_act"], abs=1e-3)
    assert len(feat["activations"][0]["tokens"]) == len(feat["activations"][0]["values"])
    assert feat["frac_nonzero"] == pytest.approx(snap["histogram"]["firing_frac"])
    assert sum(feat["freq_hist_data_bar_heights"]) == pytest.approx(
        snap["histogram"]["firing_frac"] * snap["histogram"]["n_tokens"])
    assert feat["pos_str"][0] == snap["logits"]["promoted"][0][0]
    again = load_dictionary(tmp_path / "np")  # the SAELens folder loads back to the same dictionary
    orig = load_dictionary(layout.dictionary_dir(run_dir, snap["step"], site))
    assert torch.equal(again.W_dec_FD, orig.W_dec_FD)

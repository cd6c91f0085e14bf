"""Tables and figures of a planted analysis: Parquet round trip, provenance, counts that match the truth."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from ontogeny.lifehistory import figures
from ontogeny.lifehistory.tables import lineage_rows, summary, survival_rows, write_tables


def test_tables_round_trip_and_agree_with_planted_truth(tmp_path, planted, analysed):
    lh, cfg = analysed
    stamp = {"config": cfg.model_dump(mode="json"), "inputs": {"planted": "seed0"}}
    paths = write_tables(lh, tmp_path / "tables", stamp, cfg.match)
    assert set(paths) == {"features", "matches", "events", "turnover", "lineages", "scaffold", "hierarchy",
                          "recruitment", "survival", "predictions"}
    lineages = pq.read_table(paths["lineages"])
    assert json.loads(lineages.schema.metadata[b"ontogeny.provenance"])["inputs"] == {"planted": "seed0"}
    assert lineages.to_pylist() == lineage_rows(lh)
    events = pq.read_table(paths["events"]).to_pylist()
    got = {(r["site"], r["transition"], r["event"], r["feature_from"] if r["feature_from"] is not None else -1,
            r["feature_to"] if r["feature_to"] is not None else -1) for r in events}
    assert got == planted.events
    scaffold = pq.read_table(paths["scaffold"]).to_pylist()
    assert {(r["site"], r["feature"]) for r in scaffold} == planted.carriers
    carriers = [r for r in lineages.to_pylist() if r["is_carrier"]]
    assert all(r["birth_step"] == 0 and r["censored"] and r["all_stable"] for r in carriers)
    features = pq.read_table(paths["features"]).to_pylist()
    n_alive_final = sum(1 for r in features if r["checkpoint"] == len(planted.steps) - 1)
    assert n_alive_final == lh.recruitment[-1]["n_alive"]
    s = summary(lh)
    assert s["n_carriers"] == len(planted.carriers) and s["recruitment_final"] == lh.recruitment[-1]["recruitment"]
    json.dumps(s)  # the summary is plain JSON


def test_figures_are_written_from_rows(tmp_path, analysed):
    lh, _ = analysed
    abl = [{"population": "carriers", "kind": "joint", "delta_ce": 0.5},
           *({"population": f"control_{i:04d}", "kind": "joint", "delta_ce": 0.01 * i} for i in range(20))]
    figs = {"river": figures.river(lineage_rows(lh), lh.inputs.steps),
            "turnover": figures.turnover([r.__dict__ for r in lh.turnover], lh.cutoff),
            "survival": figures.survival(survival_rows(lh)), "ablation": figures.ablation(abl)}
    out = figures.write_figures(figs, tmp_path)
    for name in figs:
        assert out[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "plotly-graph-div" in out[f"{name}_html"].read_text()
        assert json.loads((tmp_path / f"lifehistory_{name}.json").read_text())["data"]

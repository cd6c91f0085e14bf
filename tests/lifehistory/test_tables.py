"""Tables, summary and figures of a planted analysis: Parquet round trip, provenance, nulls beside numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from ontogeny.lifehistory import figures
from ontogeny.lifehistory.tables import (
    lineage_rows,
    precedence_rows,
    summary,
    summary_tables,
    survival_rows,
    write_tables,
)
from ontogeny.lifehistory.turnover import null_band


def test_tables_round_trip_and_agree_with_planted_truth(tmp_path, planted, analysed):
    lh, cfg = analysed
    stamp = {"config": cfg.model_dump(mode="json"), "inputs": {"planted": "seed0"}}
    paths = write_tables(lh, tmp_path / "tables", stamp, cfg.match)
    assert set(paths) == {"features", "matches", "events", "turnover", "turnover_phases", "turnover_null",
                          "lineages", "scaffold", "carrier_curve", "hierarchy", "hierarchy_sensitivity",
                          "recruitment", "survival", "predictions", "prediction_features", "precedence"}
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
    assert all(r["birth_step"] == 0 and r["censored"] and r["all_stable"] and r["is_persistent"] for r in carriers)
    features = pq.read_table(paths["features"]).to_pylist()
    n_alive_final = sum(1 for r in features if r["checkpoint"] == len(planted.steps) - 1)
    assert n_alive_final == lh.recruitment[-1]["n_alive"]
    phases = pq.read_table(paths["turnover_phases"]).to_pylist()
    assert {(r["window"], r["site"]) for r in phases} == {(w, s) for w in ("from_start", "after_warmup")
                                                          for s in [*planted.sites, "all"]}


def test_summary_puts_every_headline_beside_its_null_and_has_no_nan(analysed):
    lh, _ = analysed
    s = summary(lh)
    text = json.dumps(s, allow_nan=False)  # plain JSON, no NaN or infinity
    for key in ("turnover_ratio", "recruitment", "prediction_auc", "prediction_accuracy"):
        assert s[key] is not None, key
    for key, null in (("turnover_ratio", "turnover_ratio_null_constant"), ("turnover_ratio", "turnover_ratio_null_logspan"),
                      ("recruitment", "recruitment_null"), ("prediction_auc", "prediction_auc_null"),
                      ("prediction_accuracy", "prediction_accuracy_null"),
                      ("precedence_function_first", "precedence_function_first_null")):
        assert null in s, null
    assert s["n_carriers"] == 6 and s["n_splits"] == 60 and s["n_merges"] == 60 and s["notes"] == []
    assert s["recruitment"] > s["recruitment_null_p95"] and s["recruitment_p_value"] < 0.05
    assert "nan" not in text.lower()
    rows = summary_tables(s)[0][1]
    assert all("not measured" not in str(r["value"]) for r in rows[:7])


def test_figures_are_plotly_json_with_log_steps(tmp_path, analysed):
    lh, _ = analysed
    steps = lh.inputs.steps
    abl = [{"population": "carriers", "kind": "joint", "delta_ce": 0.5},
           *({"population": f"control_{i:04d}", "kind": "joint", "delta_ce": 0.01 * i} for i in range(20))]
    figs = {"river": figures.river(lineage_rows(lh), steps),
            "turnover": figures.turnover([{"site": "all", **r} for r in null_band(lh.turnover, steps)], (0, 100)),
            "survival": figures.survival(survival_rows(lh)), "ablation": figures.ablation(abl),
            "carriers": figures.carriers(lh.carrier_curve), "sensitivity": figures.sensitivity(lh.sensitivity),
            "precedence": figures.precedence(precedence_rows(lh))}
    out = figures.write_figures(figs, tmp_path)
    for name in figs:
        fig = json.loads(out[name].read_text())
        assert out[name].name == f"lifehistory_{name}.json" and fig["data"], name
    turnover = json.loads(out["turnover"].read_text())
    assert turnover["layout"]["xaxis"]["type"] == "log"
    assert {t.get("name") for t in turnover["data"]} >= {"spacing nulls, 95% band", "observed (all)"}


def test_no_matplotlib_and_no_report_import_in_the_package():
    pkg = Path(figures.__file__).parent
    for f in pkg.glob("*.py"):
        text = f.read_text()
        assert "matplotlib" not in text and "ontogeny.report" not in text and "ontogeny.study" not in text, f.name

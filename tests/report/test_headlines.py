"""Headline rows of the per-checkpoint dictionaries: ranges with their reference points, words for gaps."""

from __future__ import annotations

from ontogeny.report.headlines import dictionary_headlines


def test_dictionary_headlines_give_ranges_beside_their_references():
    rows = dictionary_headlines({"dictionaries": 24, "steps": list(range(12)), "fvu_min": 0.05, "fvu_max": 0.125,
                                 "ce_recovered_min": 0.9, "ce_recovered_max": 0.9, "l0_min": 16.0,
                                 "l0_max": 16.0, "dead_frac_min": 0.0, "dead_frac_max": 0.25,
                                 "training_tokens_min": 1_048_576})
    by = {label: (value, meaning) for _, label, value, meaning in rows}
    assert by["dictionaries: held-out FVU"][0] == "0.05 … 0.125"
    assert "24 dictionaries at 12 checkpoints" in by["dictionaries: held-out FVU"][1]
    assert "≥ 1,048,576 tokens" in by["dictionaries: held-out FVU"][1]
    assert "1 = predicting every activation by its mean" in by["dictionaries: held-out FVU"][1]
    assert by["dictionaries: CE loss recovered (spliced)"][0] == "0.9"  # one value, not a range
    assert "0 = the site zero-ablated" in by["dictionaries: CE loss recovered (spliced)"][1]
    assert by["dictionaries: L0 / dead fraction"][0] == "16 / 0 … 0.25"


def test_dictionary_headlines_say_missing_values_in_words():
    rows = dictionary_headlines({"dictionaries": 2, "steps": [0, 1], "fvu_min": None, "fvu_max": None})
    text = " ".join(v + m for _, _, v, m in rows)
    assert "not measured" in text and "nan" not in text.lower()
    assert "training tokens not recorded" in text
    assert dictionary_headlines({}) == []


def test_abrupt_text_names_the_grid_limit_only_where_it_decides():
    from ontogeny.report.headlines import abrupt_text

    assert abrupt_text({"abrupt": True, "resolution_limited": True}) == "abrupt: yes"
    assert abrupt_text({"abrupt": False, "resolution_limited": False}) == "abrupt: no"
    limited = abrupt_text({"abrupt": False, "resolution_limited": True, "width": 50.0, "width_ratio": 0.1429,
                           "spacing": 50.0})
    assert limited.startswith("abrupt: no by the width rule") and "one checkpoint interval (50 steps)" in limited


def _llc_rows(steps=(0, 64, 600), means=(6.5, 25.8, 51.9)):
    return [{"step": s, "component": "full", "n_params": 1000, "llc_mean": m, "llc_std": 0.02 * m * (i + 1),
             "llc_half_diff": -0.01 * m, "n_beta": 30.0, "burnin_draws": 5 + i, "converged": i < 2}
            for i, (s, m) in enumerate(zip(steps, means))]


_SECTION = {"n_seqs": 128, "ctx": 64, "sgld": {"lr": 1e-3, "n_beta": 30.0, "gamma": 300.0, "num_chains": 2,
                                               "num_draws": 30, "batch_size": 8, "num_burnin_steps": 0,
                                               "num_steps_bw_draws": 1, "detect_burnin": True,
                                               "init_loss": "paired", "noise_level": 1.0,
                                               "convergence_tol": 0.1}}


def test_llc_headline_stands_beside_d_over_2_and_the_convergence_figures():
    from ontogeny.report.headlines import llc_headlines

    rows = _llc_rows()
    llc = {"steps": [0, 64, 600], "llc": [r["llc_mean"] for r in rows]}
    curve, conv = llc_headlines(llc, rows, _SECTION)
    assert curve[2] == "6.5, 25.8, 51.9"
    assert "d/2 = 500" in curve[3] and "1,000 sampled parameters" in curve[3]
    assert "nβ 30, ε 0.001, γ 300, 2 chains × 30 draws" in curve[3] and "dropped: 5–7 draws" in curve[3]
    assert conv[2] == "2 of 3 converged"
    # the largest relative spread is the last step's (6% of λ̂), the half difference 1% everywhere
    assert "between-chain std 6.0% of λ̂ (step 600)" in conv[3] and "half difference 1.0% of λ̂" in conv[3]
    assert "tolerance 10.0% of λ̂" in conv[3]


def test_llc_headline_says_missing_values_in_words(tmp_path):
    import json

    from ontogeny.report.headlines import sectioned_headlines
    from ontogeny.store import layout

    rows = [{"step": 0, "component": "full", "llc_mean": 3.0, "llc_std": None, "llc_half_diff": float("nan")}]
    mdir = layout.manifest_dir(tmp_path)
    mdir.mkdir(parents=True)
    (mdir / "llc.json").write_text(json.dumps({"unit": "llc", "result": {"steps": [0], "llc": [3.0]}}))
    (mdir / "llc__step_000000.json").write_text(json.dumps({"unit": "llc/step_000000", "result": {"rows": rows}}))
    got = [r for r in sectioned_headlines(tmp_path) if r[0] == "llc"]
    assert [r[1] for r in got] == ["LLC through training", "LLC convergence"]  # found through the manifest
    text = " ".join(v + " " + m for _, _, v, m in got)
    assert "nan" not in text.lower() and "None" not in text
    assert "d/2 is not recorded" in text and "between-chain std not measured" in text
    assert "sampler settings not recorded" in text

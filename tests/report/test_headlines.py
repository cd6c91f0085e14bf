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

"""The study page's helpers: log step axes, missing numbers in words, config as rows, table PNGs."""

from __future__ import annotations

import json
import math

import plotly.graph_objects as go

from ontogeny.report.headlines import fmt
from ontogeny.report.html import _config_rows, _log_step_axes
from ontogeny.report.render import to_matplotlib


def fig_dict(x, title="checkpoint step"):
    f = go.Figure(go.Scatter(x=x, y=list(range(len(x)))))
    f.update_xaxes(title=title)
    return json.loads(f.to_json())


def test_log_axis_only_where_steps_span_decades_and_are_positive():
    assert _log_step_axes(fig_dict([1, 10, 100, 1000]))["layout"]["xaxis"]["type"] == "log"
    assert "type" not in _log_step_axes(fig_dict([0, 10, 100, 1000]))["layout"]["xaxis"]  # step 0 would vanish
    assert "type" not in _log_step_axes(fig_dict([10, 20, 40]))["layout"]["xaxis"]
    assert "type" not in _log_step_axes(fig_dict([1, 10, 1000], title="loss"))["layout"]["xaxis"]


def test_missing_values_are_words():
    assert fmt(None) == "not measured" and fmt(math.nan) == "not measured" and fmt(math.inf) == "infinite"
    assert fmt([1.0, None]) == "1, not measured" and fmt([]) == "none" and fmt(True) == "yes"
    rows = dict(_config_rows({"a": {"b": None, "c": [1, 2], "d": "x"}}))
    assert rows == {"a.b": "none", "a.c": "1, 2", "a.d": "x"}


def test_table_trace_is_drawn_as_a_table():
    f = go.Figure(go.Table(header={"values": ["class", "contexts"]},
                           cells={"values": [["shared", "emerging"], ["a\nb", "x" * 200]]}))
    ax = to_matplotlib(json.loads(f.to_json())).axes[0]
    cells = ax.tables[0].get_celld()
    texts = {c.get_text().get_text() for c in cells.values()}
    assert {"class", "contexts", "shared", "emerging", "a↵b"} <= texts
    assert max(len(t) for t in texts) <= 60  # long cells shortened

"""The one figure renderer (plotly JSON -> matplotlib PNG) against hand-built figures."""

from __future__ import annotations

import io
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from matplotlib.image import imread
from plotly.subplots import make_subplots

from ontogeny.report.render import decode_array, mpl_color, render_png, to_matplotlib


def as_json(fig) -> dict:
    return json.loads(fig.to_json())  # what write_figure puts on disk (typed arrays included)


def test_typed_arrays_decode_to_the_values_plotly_encoded():
    d = as_json(go.Figure(go.Heatmap(z=np.arange(6.0).reshape(2, 3), x=np.array([1, 10, 100]))))
    tr = d["data"][0]
    assert isinstance(tr["x"], dict) and "bdata" in tr["x"]  # plotly >= 6 writes base64, not lists
    np.testing.assert_array_equal(decode_array(tr["x"]), [1, 10, 100])
    np.testing.assert_array_equal(decode_array(tr["z"]), np.arange(6.0).reshape(2, 3))


def test_log_axes_lines_legend_and_subplots():
    steps = np.array([1, 2, 4, 8, 16, 128, 1024])
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "score"])
    fig.add_trace(go.Scatter(x=steps, y=1 / steps, mode="lines", name="train"), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=2 / steps, mode="lines+markers", name="eval"), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=np.log(steps), mode="markers", name="score"), 1, 2)
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title="two panels")
    mfig = to_matplotlib(as_json(fig))
    left, right = sorted(mfig.axes, key=lambda a: a.get_position().x0)
    assert left.get_xscale() == "log" and left.get_yscale() == "log"
    assert right.get_xscale() == "linear"
    assert len(left.get_lines()) == 2 and len(right.get_lines()) == 0 and len(right.collections) == 1
    np.testing.assert_allclose(left.get_lines()[1].get_ydata(), 2 / steps)
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["train", "eval"]
    assert left.get_position().x1 < right.get_position().x0  # domains side by side, not overlapping
    texts = {t.get_text() for t in mfig.texts} | {mfig._suptitle.get_text()}
    assert {"loss", "score", "two panels"} <= texts


def test_bars_heatmap_histogram_and_stacked_areas():
    bar = to_matplotlib(as_json(go.Figure([go.Bar(x=["a", "b", "c"], y=[1, 2, 3], name="one"),
                                           go.Bar(x=["a", "b", "c"], y=[3, 2, 1], name="two")])))
    ax = bar.axes[0]
    heights = sorted(round(p.get_height()) for p in ax.patches)
    assert heights == [1, 1, 2, 2, 3, 3] and [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    heat = to_matplotlib(as_json(go.Figure(go.Heatmap(z=[[0, 1], [2, 3]], colorscale="RdBu", zmid=1.5))))
    img = heat.axes[0].images[0]
    np.testing.assert_array_equal(img.get_array(), [[0, 1], [2, 3]])
    assert len(heat.axes) == 2  # the heatmap and its colour bar
    rng = np.random.default_rng(0)
    hist = to_matplotlib(as_json(go.Figure(go.Histogram(x=rng.normal(size=500), nbinsx=25))))
    assert len(hist.axes[0].patches) == 25 and sum(p.get_height() for p in hist.axes[0].patches) == 500
    area = go.Figure([go.Scatter(x=[0, 1, 2], y=[1, 1, 1], stackgroup="s", name="a"),
                      go.Scatter(x=[0, 1, 2], y=[2, 2, 2], stackgroup="s", name="b")])
    top = to_matplotlib(as_json(area)).axes[0].collections[1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(3.0)  # the second layer sits on the first


def test_png_pixels_and_an_unsupported_trace_is_named(tmp_path):
    fig = go.Figure(go.Scatter(x=[1, 10, 100], y=[3, 1, 2], mode="lines", line={"color": "rgb(255,0,0)"}))
    fig.update_xaxes(type="log")
    png = render_png(as_json(fig), tmp_path / "f.png")
    px = imread(io.BytesIO(png.read_bytes()))
    assert px.shape[0] > 300 and px.shape[1] > 500
    red = (px[..., 0] > 0.9) & (px[..., 1] < 0.2) & (px[..., 2] < 0.2)
    assert red.sum() > 100  # the line is drawn in the trace's colour
    assert mpl_color("rgba(0,0,255,0.5)") == (0.0, 0.0, 1.0, 0.5)
    odd = to_matplotlib(as_json(go.Figure(go.Pie(values=[1, 2]))))
    assert any("pie" in t.get_text() for t in odd.texts)
    with pytest.raises(ValueError, match="bad.json"):
        (tmp_path / "bad.json").write_text("{not json")
        render_png(tmp_path / "bad.json", tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()

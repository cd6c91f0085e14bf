"""The one figure renderer: a PNG copy of a plotly figure's JSON, drawn with matplotlib.

Why: analyses write figure *data* (plotly's JSON schema, `ontogeny.store.figures.write_figure`) and
never draw; the report shows it interactively with plotly.js and this module makes the static copy.
kaleido (plotly's own exporter) needs a Chrome download, which an offline machine cannot do.

Covered: scatter/scattergl (lines, markers, stacked areas via `stackgroup`, `fill`), bar (vertical,
horizontal, grouped/stacked), heatmap (named or listed colour scales, `zmid`), histogram, table; subplots
placed by their axis `domain`s; log axes; `tickvals`/`ticktext`; titles, axis titles, legends,
paper-referenced annotations (subplot titles) and line shapes. Arrays may be plain lists or plotly's
typed-array encoding (`{"dtype": "f8", "bdata": base64, "shape": ...}`) written by plotly >= 6.
Anything else (a trace type not listed) is named in a note on the figure instead of dropped silently.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ontogeny.store.run import atomic_path

PLOTLY_COLORWAY = ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880",
                   "#FF97FF", "#FECB52"]
# plotly colour-scale names -> matplotlib colormap names
CMAPS = {"viridis": "viridis", "rdbu": "RdBu", "rdbu_r": "RdBu_r", "blues": "Blues", "reds": "Reds",
         "greys": "Greys", "plasma": "plasma", "magma": "magma", "inferno": "inferno", "cividis": "cividis",
         "hot": "hot", "ylgnbu": "YlGnBu", "ylorrd": "YlOrRd", "greens": "Greens", "picnic": "seismic",
         "balance": "RdBu_r", "rdylbu": "RdYlBu", "spectral": "Spectral", "portland": "coolwarm"}
SUPPORTED = {"scatter", "scattergl", "bar", "heatmap", "histogram", "table"}


def decode_array(v: Any) -> Any:
    """A plotly array value as a numpy array (typed-array dicts decoded), other values unchanged."""
    if isinstance(v, dict) and "bdata" in v and "dtype" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            dims = [int(s) for s in str(shape).replace("(", "").replace(")", "").split(",") if s.strip()]
            arr = arr.reshape(dims)
        return arr
    if isinstance(v, list):
        if v and isinstance(v[0], (list, dict)):
            return [decode_array(x) for x in v]
        return np.asarray(v, dtype=object) if any(isinstance(x, str) for x in v) else np.asarray(
            [np.nan if x is None else x for x in v], dtype=float)
    return v


def _text(t: Any) -> str:
    """A plotly title (str or {"text": ...}) as plain text: <br> becomes a newline, other tags drop."""
    if isinstance(t, dict):
        t = t.get("text", "")
    if not t:
        return ""
    t = re.sub(r"<br\s*/?>", "\n", str(t))
    return re.sub(r"<[^>]+>", "", t)


def _axis_key(ref: str, letter: str) -> str:
    """Trace axis reference ('x', 'x2') -> layout key ('xaxis', 'xaxis2')."""
    suffix = ref[1:] if ref and len(ref) > 1 else ""
    return f"{letter}axis{suffix}"


def mpl_color(c: Any) -> Any:
    """A plotly colour ('#rrggbb', a name, 'rgb(r,g,b)', 'rgba(r,g,b,a)') as matplotlib takes it."""
    if isinstance(c, str):
        m = re.fullmatch(r"\s*rgba?\(([^)]*)\)\s*", c)
        if m:
            parts = [float(p) for p in m.group(1).split(",")]
            rgb = [min(max(p / 255, 0.0), 1.0) for p in parts[:3]]
            return (*rgb, parts[3]) if len(parts) > 3 else tuple(rgb)
    return c


def _cmap(scale: Any):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    if isinstance(scale, str):
        name = scale.lower()
        rev = name.endswith("_r")
        base = CMAPS.get(name, CMAPS.get(name.removesuffix("_r"), "viridis"))
        return plt.get_cmap(base + ("_r" if rev and not base.endswith("_r") else ""))
    if isinstance(scale, list) and scale:
        return mcolors.LinearSegmentedColormap.from_list("plotly", [(float(p), mpl_color(c)) for p, c in scale])
    return plt.get_cmap("viridis")


def _color(trace: dict, i: int, colorway: list[str]) -> str:
    for part in ("line", "marker"):
        c = (trace.get(part) or {}).get("color")
        if isinstance(c, str):
            return mpl_color(c)
    return mpl_color(colorway[i % len(colorway)])


def _categorical(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == object


def to_matplotlib(fig_json: dict[str, Any]):
    """A matplotlib Figure drawn from a plotly figure dict (see module docstring for what is covered)."""
    from matplotlib.figure import Figure

    layout = fig_json.get("layout") or {}
    traces = fig_json.get("data") or []
    colorway = ((layout.get("template") or {}).get("layout") or {}).get("colorway") or layout.get(
        "colorway") or PLOTLY_COLORWAY
    w_px, h_px = float(layout.get("width") or 760), float(layout.get("height") or 460)
    fig = Figure(figsize=(w_px / 100, h_px / 100), dpi=100)
    title = _text(layout.get("title"))
    top = 0.86 if title else 0.93
    if title:
        fig.suptitle(title, fontsize=11)

    pairs: dict[tuple[str, str], Any] = {}

    def axes_for(trace: dict):
        xr, yr = trace.get("xaxis", "x"), trace.get("yaxis", "y")
        if (xr, yr) in pairs:
            return pairs[(xr, yr)]
        xl, yl = layout.get(_axis_key(xr, "x")) or {}, layout.get(_axis_key(yr, "y")) or {}
        x0, x1 = xl.get("domain") or [0, 1]
        y0, y1 = yl.get("domain") or [0, 1]
        left, right, bottom = 0.09, 0.97, 0.11
        rect = [left + x0 * (right - left), bottom + y0 * (top - bottom),
                (x1 - x0) * (right - left), (y1 - y0) * (top - bottom)]
        # leave a gutter between subplots for tick labels
        gx = 0.05 if x0 > 0 else 0
        gy = 0.06 if y1 < 1 else 0
        rect = [rect[0] + gx, rect[1], max(rect[2] - gx - (0.01 if x1 < 1 else 0), 0.05),
                max(rect[3] - gy, 0.05)]
        ax = fig.add_axes(rect)
        for lay, setter, name in ((xl, ax.set_xscale, "x"), (yl, ax.set_yscale, "y")):
            if lay.get("type") == "log":
                setter("log")
            t = _text(lay.get("title"))
            (ax.set_xlabel if name == "x" else ax.set_ylabel)(t, fontsize=9)
            if lay.get("tickvals") is not None:
                vals = list(decode_array(lay["tickvals"]))
                (ax.set_xticks if name == "x" else ax.set_yticks)(vals)
                if lay.get("ticktext") is not None:
                    (ax.set_xticklabels if name == "x" else ax.set_yticklabels)(
                        [str(s) for s in lay["ticktext"]])
            rng = lay.get("range")
            if rng and lay.get("type") not in ("log", "category") and all(isinstance(r, (int, float)) for r in rng):
                (ax.set_xlim if name == "x" else ax.set_ylim)(*rng)
            if lay.get("autorange") == "reversed":
                (ax.invert_xaxis if name == "x" else ax.invert_yaxis)()
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.25)
        ax._plotly_stack = {}  # stackgroup -> running sum
        ax._plotly_bars = []
        pairs[(xr, yr)] = ax
        return ax

    unsupported: list[str] = []
    for i, tr in enumerate(traces):
        kind = tr.get("type", "scatter")
        if kind not in SUPPORTED:
            unsupported.append(kind)
            continue
        if tr.get("visible") is False:
            continue
        ax = axes_for(tr)
        color = _color(tr, i, colorway)
        label = tr.get("name") if tr.get("showlegend", True) is not False else None
        x, y = decode_array(tr.get("x")), decode_array(tr.get("y"))
        if kind in ("scatter", "scattergl"):
            _scatter(ax, tr, x, y, color, label)
        elif kind == "bar":
            ax._plotly_bars.append((tr, x, y, color, label))
        elif kind == "heatmap":
            _heatmap(fig, ax, tr)
        elif kind == "table":
            _table(ax, tr)
        elif kind == "histogram":
            data = x if x is not None else y
            data = np.asarray(data, dtype=float)
            data = data[np.isfinite(data)]
            nb = tr.get("nbinsx") or tr.get("nbinsy") or "auto"
            ax.hist(data, bins=nb, color=color, alpha=0.75 if len(traces) > 1 else 1.0, label=label,
                    orientation="horizontal" if x is None else "vertical")
    for ax in pairs.values():
        if ax._plotly_bars:
            _bars(ax, ax._plotly_bars, layout.get("barmode", "group"))
        handles, labels = ax.get_legend_handles_labels()
        named = [lab for lab in labels if lab and not lab.startswith("_")]
        if named and (len(named) > 1 or layout.get("showlegend")) and layout.get("showlegend", True) is not False:
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    _annotations(fig, layout, top)
    _shapes(layout, pairs)
    if unsupported:
        fig.text(0.01, 0.01, f"not drawn in this copy: {', '.join(sorted(set(unsupported)))} "
                 "(see the interactive report)", fontsize=7, color="#a00")
    if not pairs:
        fig.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=12, color="#666")
    return fig


def _scatter(ax, tr: dict, x, y, color: str, label: str | None) -> None:
    mode = tr.get("mode") or ("lines" if (y is not None and len(y) > 20) else "lines+markers")
    if y is None:
        return
    if x is None:
        x = np.arange(len(y))
    if _categorical(x):
        x = np.asarray([str(v) for v in x], dtype=object)
    y = np.asarray(y, dtype=float) if not _categorical(y) else y
    group = tr.get("stackgroup")
    if group is not None and not _categorical(y):
        base = ax._plotly_stack.get(group, np.zeros(len(y)))
        top = base + np.nan_to_num(y)
        ax.fill_between(x, base, top, color=color, alpha=0.6, label=label, linewidth=0.5)
        ax._plotly_stack[group] = top
        return
    if tr.get("fill") in ("tozeroy", "tonexty"):
        ax.fill_between(x, 0, y, color=color, alpha=0.25)
    dash = (tr.get("line") or {}).get("dash")
    ls = {"dash": "--", "dot": ":", "dashdot": "-."}.get(dash, "-")
    marker = "o" if "markers" in mode else None
    msize = (tr.get("marker") or {}).get("size")
    ms = float(msize) / 2 if isinstance(msize, (int, float)) else 4
    if "lines" in mode:
        ax.plot(x, y, ls, color=color, marker=marker, markersize=ms, label=label, linewidth=1.4)
    else:
        mc = (tr.get("marker") or {}).get("color")
        if isinstance(mc, (list, dict)):
            c = np.asarray(decode_array(mc))
            if c.dtype != object:
                ax.scatter(x, y, c=c, s=ms ** 2 * 2, cmap=_cmap((tr.get("marker") or {}).get("colorscale")),
                           label=label)
                return
        ax.scatter(x, y, color=color, s=ms ** 2 * 2, label=label)


def _bars(ax, bars: list, barmode: str) -> None:
    horizontal = bars[0][0].get("orientation") == "h"
    cats: list[str] = []
    for tr, x, y, _, _ in bars:
        pos = y if horizontal else x
        if pos is None:
            pos = np.arange(len(x if horizontal else y))
        for v in pos:
            s = str(v)
            if s not in cats:
                cats.append(s)
    numeric = all(not _categorical(y if horizontal else x) for _, x, y, _, _ in bars)
    n = len(bars)
    width = 0.8 / (n if barmode == "group" else 1)
    stack = np.zeros(len(cats))
    for j, (tr, x, y, color, label) in enumerate(bars):
        pos, val = (y, x) if horizontal else (x, y)
        if pos is None:
            pos = np.arange(len(val))
        val = np.nan_to_num(np.asarray(val, dtype=float))
        idx = np.asarray([cats.index(str(v)) for v in pos])
        if numeric and n == 1:
            at = np.asarray(pos, dtype=float)
            w = 0.8 * (np.min(np.diff(np.sort(at))) if len(at) > 1 else 1.0)
            bottom = None
        else:
            at = idx + (j - (n - 1) / 2) * width if barmode == "group" else idx.astype(float)
            w = width
            bottom = stack[idx] if barmode in ("stack", "relative") else None
        if horizontal:
            ax.barh(at, val, height=w, left=bottom, color=color, label=label)
        else:
            ax.bar(at, val, width=w, bottom=bottom, color=color, label=label)
        if barmode in ("stack", "relative"):
            stack[idx] += val
    if not (numeric and n == 1):
        ticks = np.arange(len(cats))
        if horizontal:
            ax.set_yticks(ticks)
            ax.set_yticklabels(cats, fontsize=7)
        else:
            ax.set_xticks(ticks)
            ax.set_xticklabels(cats, fontsize=7, rotation=45 if len(cats) > 8 else 0, ha="right"
                               if len(cats) > 8 else "center")


def _heatmap(fig, ax, tr: dict) -> None:
    from matplotlib.colors import TwoSlopeNorm

    z = decode_array(tr.get("z"))
    z = np.asarray(z if not isinstance(z, list) else np.stack([np.asarray(r, dtype=float) for r in z]), dtype=float)
    norm = None
    if tr.get("zmid") is not None and np.isfinite(z).any():
        lo, hi = np.nanmin(z), np.nanmax(z)
        mid = float(tr["zmid"])
        if lo < mid < hi:
            norm = TwoSlopeNorm(vcenter=mid, vmin=lo, vmax=hi)
    im = ax.imshow(np.ma.masked_invalid(z), aspect="auto", origin="lower", cmap=_cmap(tr.get("colorscale")),
                   norm=norm, interpolation="nearest",
                   vmin=None if norm else tr.get("zmin"), vmax=None if norm else tr.get("zmax"))
    for name, vals in (("x", tr.get("x")), ("y", tr.get("y"))):
        if vals is None:
            continue
        vals = decode_array(vals)
        n = z.shape[1] if name == "x" else z.shape[0]
        step = max(1, n // 12)
        ticks = list(range(0, n, step))
        labels = [str(vals[i]) for i in ticks if i < len(vals)]
        (ax.set_xticks if name == "x" else ax.set_yticks)(ticks[:len(labels)])
        (ax.set_xticklabels if name == "x" else ax.set_yticklabels)(labels, fontsize=7)
    ax.grid(False)
    if tr.get("showscale", True) is not False:
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01)


def _table(ax, tr: dict, max_rows: int = 25, max_chars: int = 60) -> None:
    """A plotly table (columns of cells under a header) as a matplotlib table, long cells shortened."""
    cols = [list(decode_array(c)) if not isinstance(c, list) else c for c in (tr.get("cells") or {}).get("values", [])]
    header = [_text(h) for h in (tr.get("header") or {}).get("values", [])]
    n = max((len(c) for c in cols), default=0)

    def cell(v: Any) -> str:
        t = _text(str(v)).replace("\n", "↵")
        return t if len(t) <= max_chars else t[:max_chars - 1] + "…"

    rows = [[cell(c[i]) if i < len(c) else "" for c in cols] for i in range(min(n, max_rows))]
    ax.axis("off")
    if rows:
        tab = ax.table(cellText=rows, colLabels=header or None, loc="upper center", cellLoc="left")
        tab.auto_set_font_size(False)
        tab.set_fontsize(7)
    if n > max_rows:
        ax.text(0.5, 0.0, f"{n - max_rows} more rows in the interactive report", ha="center", fontsize=7,
                transform=ax.transAxes)


def _annotations(fig, layout: dict, top: float) -> None:
    for a in layout.get("annotations") or []:
        if a.get("xref") == "paper" and a.get("yref") == "paper" and a.get("text"):
            x = 0.09 + float(a.get("x", 0.5)) * 0.88
            y = 0.11 + float(a.get("y", 1.0)) * (top - 0.11)
            fig.text(x, min(y, 0.97), _text(a["text"]), ha="center", va="bottom", fontsize=8)


def _shapes(layout: dict, pairs: dict) -> None:
    for s in layout.get("shapes") or []:
        if s.get("type") != "line":
            continue
        xr = (s.get("xref") or "x").replace("paper", "x")
        yr = (s.get("yref") or "y").replace("paper", "y")
        ax = pairs.get((xr, yr)) or next(iter(pairs.values()), None)
        if ax is None:
            continue
        color = mpl_color((s.get("line") or {}).get("color", "#888"))
        if s.get("x0") == s.get("x1") and s.get("x0") is not None:
            ax.axvline(s["x0"], color=color, linestyle="--", linewidth=1)
        elif s.get("y0") == s.get("y1") and s.get("y0") is not None:
            ax.axhline(s["y0"], color=color, linestyle="--", linewidth=1)


def render_png(fig_json: str | Path | dict[str, Any], png_path: str | Path, dpi: int = 110) -> Path:
    """Draw a plotly figure (a dict or a path to its JSON) to `png_path` atomically; returns the path."""
    if not isinstance(fig_json, dict):
        src = Path(fig_json)
        try:
            fig_json = json.loads(src.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read figure JSON {src}: {e}") from e
    fig = to_matplotlib(fig_json)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return png_path

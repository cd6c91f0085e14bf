"""One way to save a figure: plotly JSON (for the report), standalone HTML (offline) and a PNG copy.

Analyses draw each figure twice, once with plotly (interactive, for the HTML report) and once with
matplotlib (the PNG copy: kaleido would need a Chrome download, which an offline machine cannot do).
"""

from __future__ import annotations

from pathlib import Path

from ontogeny.store.run import atomic_path


def save_figure(out_dir: str | Path, name: str, fig_plotly=None, fig_mpl=None, dpi: int = 110) -> dict[str, Path]:
    """Write `<name>.json` + `<name>.html` (plotly) and `<name>.png` (matplotlib), each atomically.

    The HTML pages of a folder share one `plotly.min.js` beside them (works offline, and a folder of
    twenty figures holds plotly.js once rather than twenty times).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if fig_plotly is not None:
        bundle = out_dir / "plotly.min.js"
        if not bundle.exists():
            from plotly.offline import get_plotlyjs

            with atomic_path(bundle) as tmp:
                tmp.write_text(get_plotlyjs())
        with atomic_path(out_dir / f"{name}.json") as tmp:
            tmp.write_text(fig_plotly.to_json())
        paths["json"] = out_dir / f"{name}.json"
        with atomic_path(out_dir / f"{name}.html") as tmp:
            fig_plotly.write_html(str(tmp), include_plotlyjs="directory", full_html=True)
        paths["html"] = out_dir / f"{name}.html"
    if fig_mpl is not None:
        import matplotlib.pyplot as plt

        with atomic_path(out_dir / f"{name}.png") as tmp:
            fig_mpl.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig_mpl)
        paths["png"] = out_dir / f"{name}.png"
    return paths

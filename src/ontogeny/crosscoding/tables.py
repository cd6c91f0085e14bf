"""Flat rows for the crosscode tables: ratio families (one-vs-all, pairwise, classes) as columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ontogeny.crosscoding.presence import presence, presence_classes
from ontogeny.crosscoding.reldec import checkpoint_pairs, class_names, pairwise, relative, taxonomy


def pair_name(names: Sequence[str], pair: tuple[int, int]) -> str:
    return f"{names[pair[0]]}_{names[pair[1]]}"


def ratio_columns(prefix: str, values_FK: np.ndarray, names: Sequence[str], low: float, high: float,
                  tau: float) -> dict[str, np.ndarray]:
    """Columns of one ratio family over |values| [F, K]:

    `<p>_<s>` one-vs-all (1/K where a row is all 0), `<p>_<s>_<t>` pairwise with `<p>_class_<s>_<t>`,
    `<p>_paper_class` (the paper's 0.3/0.7 classes: pairwise for K=2, its one-vs-all taxonomy for K>=3),
    `<p>_present_<s>` (value / row max >= tau) and `<p>_class`, the presence class (any K).
    """
    cols: dict[str, np.ndarray] = {}
    rel = relative(values_FK)
    for m, n in enumerate(names):
        cols[f"{prefix}_{n}"] = rel[:, m]
    pairs = checkpoint_pairs(len(names))
    pw = pairwise(values_FK, pairs)
    for p, pair in enumerate(pairs):
        tag = pair_name(names, pair)
        cols[f"{prefix}_{tag}"] = pw[:, p]
        cols[f"{prefix}_class_{tag}"] = class_names(pw[:, p], low, high)
    if len(names) == 2:
        cols[f"{prefix}_paper_class"] = cols[f"{prefix}_class_{pair_name(names, (0, 1))}"]
    else:
        cols[f"{prefix}_paper_class"] = taxonomy(rel, names, low, high)
    pres = presence(values_FK, tau)
    for m, n in enumerate(names):
        cols[f"{prefix}_present_{n}"] = pres[:, m]
    cols[f"{prefix}_class"] = presence_classes(values_FK, names, tau)
    return cols


def to_rows(index: Mapping[str, Any], cols: Mapping[str, np.ndarray], n: int) -> list[dict[str, Any]]:
    """Zip equal-length columns (and constant index values) into row dicts."""
    return [{**index, **{k: v[i].item() if isinstance(v[i], np.generic) else v[i] for k, v in cols.items()}}
            for i in range(n)]

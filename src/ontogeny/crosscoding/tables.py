"""Flat rows for the crosscode tables and an atomic, provenance-stamped Parquet writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ontogeny.crosscoding.reldec import checkpoint_pairs, class_names, pairwise, relative, taxonomy


def pair_name(names: Sequence[str], pair: tuple[int, int]) -> str:
    return f"{names[pair[0]]}_{names[pair[1]]}"


def ratio_columns(prefix: str, values_FK: np.ndarray, names: Sequence[str], low: float, high: float,
                  empty: float | None) -> dict[str, np.ndarray]:
    """Columns of one ratio family: one-vs-all per checkpoint, pairwise with classes, 3+-way taxonomy."""
    cols: dict[str, np.ndarray] = {}
    rel = relative(values_FK, empty=empty)
    for m, n in enumerate(names):
        cols[f"{prefix}_{n}"] = rel[:, m]
    pairs = checkpoint_pairs(len(names))
    pw = pairwise(values_FK, pairs)
    for p, pair in enumerate(pairs):
        tag = pair_name(names, pair)
        cols[f"{prefix}_{tag}"] = pw[:, p]
        cols[f"{prefix}_class_{tag}"] = class_names(pw[:, p], low, high)
    if len(names) == 2:
        cols[f"{prefix}_class"] = cols[f"{prefix}_class_{pair_name(names, (0, 1))}"]
    else:
        cols[f"{prefix}_class"] = taxonomy(rel, names, low, high)
    return cols


def to_rows(index: Mapping[str, Any], cols: Mapping[str, np.ndarray], n: int) -> list[dict[str, Any]]:
    """Zip equal-length columns (and constant index values) into row dicts."""
    return [{**index, **{k: v[i].item() if isinstance(v[i], np.generic) else v[i] for k, v in cols.items()}}
            for i in range(n)]

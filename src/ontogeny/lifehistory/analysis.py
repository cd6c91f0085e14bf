"""The life-history analysis of one checkpoint series, on plain tensors: codes and decoders per site.

matching -> lineages -> turnover (with spacing nulls) -> hierarchy, carriers, recruitment (with a
null) -> carrier prediction (with a permutation null) -> function vs direction. Inputs are per-site
lists (one entry per checkpoint) of codes_NF on one shared token set and W_dec_FD; nothing here reads
files, so planted ground truth drives the tests and any loader can feed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.lifehistory.lineage import Lineage, build_lineages, kaplan_meier, lifespan, settling
from ontogeny.lifehistory.match import Match, match_checkpoints
from ontogeny.lifehistory.precedence import Precedence, precedence
from ontogeny.lifehistory.predict import Prediction, predict_carriers
from ontogeny.lifehistory.scaffold import (
    Carrier,
    Hierarchy,
    carrier_curve,
    hierarchy,
    persistent,
    recruitment,
    recruitment_null,
    select_carriers,
    sensitivity,
)
from ontogeny.lifehistory.turnover import WINDOWS, TurnoverRow, early_cutoff, phase_summary, turnover_table

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class LifeHistoryInputs:
    """Per-site, per-checkpoint feature activations on one token set, and optional decoders.

    seq_len: tokens per sequence of the token set (rows are sequences laid end to end), for the
    hierarchy's ±window; None treats the rows as one sequence.
    """

    steps: list[int]
    sites: list[str]
    codes: Mapping[str, Sequence[torch.Tensor]]            # site -> [K] codes_NF
    W_dec: Mapping[str, Sequence[torch.Tensor]] | None = None  # site -> [K] W_dec_FD
    token_ids_N: torch.Tensor | None = None
    special_N: torch.Tensor | None = None                  # tokens counted as BOS/punctuation
    seq_len: int | None = None

    def validate(self) -> None:
        K = len(self.steps)
        if K < 2:
            raise ConfigError(f"a life history needs at least 2 checkpoints, got steps={self.steps}")
        for site in self.sites:
            if site not in self.codes or len(self.codes[site]) != K:
                raise ConfigError(f"site {site!r}: need codes at all {K} checkpoints")
            n = {c.shape[0] for c in self.codes[site]}
            if len(n) != 1:
                raise ConfigError(f"site {site!r}: codes cover different token counts {sorted(n)}")
            if self.W_dec is not None and len(self.W_dec[site]) != K:
                raise ConfigError(f"site {site!r}: need W_dec at all {K} checkpoints")
        ns = {self.codes[s][0].shape[0] for s in self.sites}
        if len(ns) != 1:
            raise ConfigError(f"sites cover different token counts {sorted(ns)}")


@dataclass
class LifeHistory:
    """Everything the analysis finds (tables and the summary are built from this)."""

    inputs: LifeHistoryInputs
    cfg: LifeHistoryConfig
    matches: dict[str, list[Match]]
    lineages: list[Lineage]
    settle: dict[int, tuple[int | None, int | None]]
    turnover: list[TurnoverRow]
    phase: dict[str, dict[str, dict[str, Any]]]          # window -> site -> phase_summary
    cutoff: float
    hierarchies: dict[int, Hierarchy]
    persistent_ids: list[int]
    carriers: list[Carrier]
    scaffold_final: set[tuple[str, int]]
    recruitment: list[dict[str, Any]]
    recruited_step: dict[int, int]
    recruitment_null: np.ndarray
    carrier_curve: list[dict]
    sensitivity: list[dict]
    prediction: Prediction | None
    prediction_error: str | None
    precedence: list[Precedence]
    survival: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def analyse(inputs: LifeHistoryInputs, cfg: LifeHistoryConfig, progress: Progress | None = None) -> LifeHistory:
    """Run every life-history stage on the inputs; deterministic given cfg.seed."""
    inputs.validate()
    steps, sites, K = inputs.steps, inputs.sites, len(inputs.steps)
    tick = progress or (lambda stage, done, total: None)
    matches: dict[str, list[Match]] = {}
    total = len(sites) * (K - 1)
    for si, site in enumerate(sites):
        W = inputs.W_dec[site] if inputs.W_dec is not None else [None] * K
        matches[site] = []
        for t in range(K - 1):
            matches[site].append(match_checkpoints(inputs.codes[site][t], inputs.codes[site][t + 1], W[t], W[t + 1],
                                                   cfg.match, seed=cfg.seed + 1000 * si + t))
            tick("matching", si * (K - 1) + t + 1, total)
    lineages: list[Lineage] = []
    settle: dict[int, tuple[int | None, int | None]] = {}
    prec: list[Precedence] = []
    for site in sites:
        lin = build_lineages(site, matches[site], first_id=len(lineages))
        lineages.extend(lin)
        W = inputs.W_dec[site] if inputs.W_dec is not None else None
        settle.update(settling(lin, inputs.codes[site], W, steps, cfg.match))
        prec.extend(precedence(lin, inputs.codes[site], W, steps, cfg.precedence))
    turnover = turnover_table(steps, {s: [m.counts() for m in matches[s]] for s in sites}, cfg.phase)
    phase = {w: {s: phase_summary(turnover, steps, cfg.phase, s, w) for s in [*sites, "all"]} for w in WINDOWS}
    cutoff = early_cutoff(steps, cfg.phase)

    alive = {k: {s: (matches[s][k].alive_a if k < K - 1 else matches[s][-1].alive_b) for s in sites}
             for k in range(K)}
    hierarchies: dict[int, Hierarchy] = {}
    for k in range(K):
        hierarchies[k] = hierarchy({s: inputs.codes[s][k] for s in sites}, alive[k], sites, cfg.match, cfg.scaffold,
                                   inputs.seq_len)
        tick("hierarchy", k + 1, K)
    pers = persistent(lineages, steps, cutoff)
    final = hierarchies[K - 1]
    carriers = select_carriers(pers, final, steps, cfg.scaffold)
    by_id = {lin.lineage_id: lin for lin in lineages}
    carrier_lins = [by_id[c.lineage_id] for c in carriers]
    node_lineage = {(lin.site, k, lin.feature_at(k)): lin.lineage_id for lin in lineages
                    for k in range(lin.birth_index, lin.end_index + 1)}
    rec_rows, recruited_step = [], {}
    scaffold_final: set[tuple[str, int]] = set()
    for k in range(K):
        h = hierarchies[k]
        frac, src, reached = recruitment(carrier_lins, h, k)
        rec_rows.append({"checkpoint": k, "step": steps[k], "recruitment": frac, "n_carriers": len(src),
                         "n_recruited": len(reached), "n_alive": len(h.nodes), "n_edges": h.n_edges})
        for node in reached:
            site, f = h.nodes[node]
            recruited_step.setdefault(node_lineage[(site, k, f)], steps[k])
        if k == K - 1:
            scaffold_final = {h.nodes[n] for n in src | reached}
    null = recruitment_null(pers, len(carriers), final, K - 1, cfg.scaffold.n_null, cfg.seed + 7)
    curve = carrier_curve(pers, final, cfg.scaffold, K - 1, len(carriers))
    sens = sensitivity({s: inputs.codes[s][K - 1] for s in sites}, alive[K - 1], sites, pers, steps, cfg.match,
                       cfg.scaffold, inputs.seq_len)

    prediction, err = None, None
    try:
        prediction = predict_carriers(lineages, {c.lineage_id for c in carriers}, inputs.codes, steps, sites,
                                      hierarchies, cutoff, cfg.match, cfg.predict, cfg.seed,
                                      inputs.token_ids_N, inputs.special_N)
    except ConfigError as e:  # too few carriers for cross-validation: report in words, do not fail the study
        err = f"not measured: {e}"
    survival = {}
    carrier_ids = {c.lineage_id for c in carriers}
    for name, group in (("all", lineages), ("carriers", [lin for lin in lineages if lin.lineage_id in carrier_ids]),
                        ("others", [lin for lin in lineages if lin.lineage_id not in carrier_ids])):
        d_o = [lifespan(lin, steps, "checkpoints") for lin in group]
        survival[name] = kaplan_meier([d for d, _ in d_o], [o for _, o in d_o])
    return LifeHistory(inputs, cfg, matches, lineages, settle, turnover, phase, cutoff, hierarchies,
                       [lin.lineage_id for lin in pers], carriers, scaffold_final, rec_rows, recruited_step, null,
                       curve, sens, prediction, err, prec, survival)

"""The life-history analysis of one checkpoint series, on plain tensors: codes and decoders per site.

matching -> lineages -> turnover -> hierarchy and carrier scaffold -> recruitment -> carrier prediction.
Inputs are per-site lists (one entry per checkpoint) of codes_NF on one shared token set and W_dec_FD;
nothing here reads files, so planted ground truth drives the tests and any loader can feed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ontogeny.errors import ConfigError
from ontogeny.lifehistory.config import LifeHistoryConfig
from ontogeny.lifehistory.lineage import Lineage, build_lineages, kaplan_meier, lifespan, settling
from ontogeny.lifehistory.match import Match, match_checkpoints
from ontogeny.lifehistory.predict import Prediction, predict_carriers
from ontogeny.lifehistory.scaffold import (
    Carrier,
    Hierarchy,
    candidates,
    hierarchy,
    recruitment,
    select_carriers,
)
from ontogeny.lifehistory.turnover import TurnoverRow, early_cutoff, phase_ratio, turnover_table

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class LifeHistoryInputs:
    """Per-site, per-checkpoint feature activations on one token set, and optional decoders."""

    steps: list[int]
    sites: list[str]
    codes: Mapping[str, Sequence[torch.Tensor]]            # site -> [K] codes_NF
    W_dec: Mapping[str, Sequence[torch.Tensor]] | None = None  # site -> [K] W_dec_FD
    token_ids_N: torch.Tensor | None = None
    special_N: torch.Tensor | None = None                  # tokens counted as BOS/punctuation

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
    """Everything the analysis finds (tables are built from this)."""

    inputs: LifeHistoryInputs
    matches: dict[str, list[Match]]
    lineages: list[Lineage]
    settle: dict[int, tuple[int | None, int | None]]
    turnover: list[TurnoverRow]
    phase: dict[str, dict[str, float]]
    cutoff: float
    hierarchies: dict[int, Hierarchy]
    carriers: list[Carrier]
    scaffold_final: set[tuple[str, int]]
    recruitment: list[dict[str, float]]
    recruited_step: dict[int, int]
    prediction: Prediction | None
    prediction_error: str | None
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
    for site in sites:
        lin = build_lineages(site, matches[site], first_id=len(lineages))
        lineages.extend(lin)
        settle.update(settling(lin, inputs.codes[site], inputs.W_dec[site] if inputs.W_dec is not None else None,
                               steps, cfg.match))
    turnover = turnover_table(steps, {s: [m.counts() for m in matches[s]] for s in sites}, cfg.phase)
    phase = {s: phase_ratio(turnover, s) for s in [*sites, "all"]}
    cutoff = early_cutoff(steps, cfg.phase)

    hierarchies: dict[int, Hierarchy] = {}
    for k in range(K):
        alive_k = {s: (matches[s][k].alive_a if k < K - 1 else matches[s][-1].alive_b) for s in sites}
        hierarchies[k] = hierarchy({s: inputs.codes[s][k] for s in sites}, alive_k, sites, cfg.match, cfg.scaffold)
        tick("hierarchy", k + 1, K)
    carriers = select_carriers(candidates(lineages, steps, cutoff), hierarchies[K - 1], steps, cfg.scaffold)
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
                         "n_recruited": len(reached), "n_alive": len(h.nodes)})
        for node in reached:
            site, f = h.nodes[node]
            recruited_step.setdefault(node_lineage[(site, k, f)], steps[k])
        if k == K - 1:
            scaffold_final = {h.nodes[n] for n in src | reached}

    prediction, err = None, None
    try:
        prediction = predict_carriers(lineages, {c.lineage_id for c in carriers}, inputs.codes, steps, sites,
                                      hierarchies, cutoff, cfg.match, cfg.predict, cfg.seed,
                                      inputs.token_ids_N, inputs.special_N)
    except ConfigError as e:  # too few carriers for cross-validation: report, do not fail the study
        err = str(e)
    survival = {}
    carrier_ids = {c.lineage_id for c in carriers}
    for name, group in (("all", lineages), ("carriers", [lin for lin in lineages if lin.lineage_id in carrier_ids]),
                        ("others", [lin for lin in lineages if lin.lineage_id not in carrier_ids])):
        d_o = [lifespan(lin, steps, "checkpoints") for lin in group]
        survival[name] = kaplan_meier([d for d, _ in d_o], [o for _, o in d_o])
    return LifeHistory(inputs, matches, lineages, settle, turnover, phase, cutoff, hierarchies, carriers,
                       scaffold_final, rec_rows, recruited_step, prediction, err, survival)

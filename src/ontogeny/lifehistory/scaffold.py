"""The carrier scaffold: early, stable, surviving lineages that organise a co-activation hierarchy.

PROPOSAL (spec A6/A8; the paper's definitions are not public). Hierarchy at checkpoint k: an edge
p -> c between alive features of any sites with layer(p) <= layer(c) when c's firing mostly lies
inside p's: P(p fires | c fires) >= tau_in and P(c fires | p fires) <= tau_out (same token), with at
least min_cofire joint firings. Candidates: lineages born by the early-phase cut-off, alive at the last
checkpoint, stable at every transition. Carriers: the top n_carriers candidates by reach (number of
descendants in the final hierarchy) with reach >= min_reach. Scaffold = carriers + descendants;
recruitment(k) = |scaffold at k| / |alive features at k| (the paper's 64% is its final value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order

from ontogeny.lifehistory.config import MatchConfig, ScaffoldConfig
from ontogeny.lifehistory.lineage import Lineage
from ontogeny.lifehistory.match import to_csr

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")


def site_layer(site: str, order: int) -> int:
    """Layer index of a site name (`blocks.3.hook_resid_post` -> 3); its order in the list otherwise."""
    m = _LAYER_RE.match(site)
    return int(m.group(1)) if m else order


@dataclass
class Hierarchy:
    """Co-activation hierarchy at one checkpoint over the alive features of all sites."""

    nodes: list[tuple[str, int]]          # (site, feature)
    adjacency: csr_matrix                 # [n, n], 1 where parent -> child
    p_in: np.ndarray                      # P(parent | child) per edge, in adjacency's nnz order
    p_out: np.ndarray                     # P(child | parent)
    firing_frac: np.ndarray               # per node
    _index: dict[tuple[str, int], int] | None = field(default=None, repr=False)

    def index(self) -> dict[tuple[str, int], int]:
        """Node number of each (site, feature)."""
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.nodes)}
        return self._index

    def descendants(self, sources: Sequence[int]) -> set[int]:
        """Nodes reachable from any source (sources excluded unless reachable from another)."""
        out: set[int] = set()
        for s in sources:
            reached = breadth_first_order(self.adjacency, s, directed=True, return_predecessors=False)
            out.update(int(x) for x in reached if x != s)
        return out

    def edges(self) -> list[tuple[int, int, float, float]]:
        coo = self.adjacency.tocoo()
        return [(int(p), int(c), float(a), float(b)) for p, c, a, b in zip(coo.row, coo.col, self.p_in, self.p_out)]


def hierarchy(codes_k: Mapping[str, torch.Tensor], alive_k: Mapping[str, np.ndarray], sites: Sequence[str],
              mcfg: MatchConfig, scfg: ScaffoldConfig) -> Hierarchy:
    """Build the co-activation hierarchy over the alive features of every site at one checkpoint."""
    nodes, cols, layers = [], [], []
    for order, site in enumerate(sites):
        feats = np.flatnonzero(alive_k[site])
        nodes.extend((site, int(f)) for f in feats)
        cols.append((codes_k[site][:, torch.as_tensor(feats, dtype=torch.long)].abs() > mcfg.fire_eps).float())
        layers.extend([site_layer(site, order)] * len(feats))
    B_NF = torch.cat(cols, dim=1) if cols else torch.zeros(0, 0)
    n_tokens = max(1, B_NF.shape[0])
    B = to_csr(B_NF)                                 # firings are sparse: a sparse product is exact and fast
    co = (B.T @ B).toarray()                         # co[p, c] = joint firings
    n = np.diag(co).copy()
    safe = np.where(n > 0, n, 1.0)
    p_par_given_child = co / safe[None, :]          # [p, c] = P(p | c)
    p_child_given_par = co / safe[:, None]          # [p, c] = P(c | p)
    lay = np.asarray(layers)
    mask = (p_par_given_child >= scfg.tau_in) & (p_child_given_par <= scfg.tau_out) & \
        (co >= scfg.min_cofire) & (lay[:, None] <= lay[None, :])
    np.fill_diagonal(mask, False)
    adj = csr_matrix(mask.astype(np.int8))
    adj.sort_indices()
    coo = adj.tocoo()
    return Hierarchy(nodes, adj, p_par_given_child[coo.row, coo.col], p_child_given_par[coo.row, coo.col],
                     n / n_tokens)


@dataclass
class Carrier:
    """A chosen carrier: its rank, lineage, final feature and how much of the hierarchy it reaches."""

    rank: int
    lineage_id: int
    site: str
    feature: int
    reach: int
    out_degree: int
    firing_frac: float
    birth_step: int


def candidates(lineages: Sequence[Lineage], steps: Sequence[int], cutoff: float) -> list[Lineage]:
    """Lineages born by the early cut-off, alive at the last checkpoint, stable at every transition."""
    last = len(steps) - 1
    return [lin for lin in lineages if steps[lin.birth_index] <= cutoff and lin.end_index == last
            and lin.fate == "censored" and lin.all_stable]


def select_carriers(cands: Sequence[Lineage], final: Hierarchy, steps: Sequence[int],
                    cfg: ScaffoldConfig) -> list[Carrier]:
    """Rank candidates by reach (or out-degree) in the final hierarchy and keep the top n_carriers."""
    idx = final.index()
    out_deg = np.asarray(final.adjacency.sum(1)).ravel()
    scored = []
    for lin in cands:
        node = idx.get((lin.site, lin.features[-1]))
        if node is None:
            continue
        reach = len(final.descendants([node]))
        key = reach if cfg.rank_by == "reach" else int(out_deg[node])
        if key < cfg.min_reach:
            continue
        scored.append((-key, -int(out_deg[node]), -float(final.firing_frac[node]), lin.lineage_id, lin, node, reach))
    scored.sort(key=lambda s: s[:4])
    return [Carrier(r + 1, lin.lineage_id, lin.site, lin.features[-1], reach, int(out_deg[node]),
                    float(final.firing_frac[node]), int(steps[lin.birth_index]))
            for r, (_, _, _, _, lin, node, reach) in enumerate(scored[:cfg.n_carriers])]


def recruitment(carrier_lineages: Sequence[Lineage], h: Hierarchy, k: int) -> tuple[float, set[int], set[int]]:
    """Share of alive features in the scaffold at checkpoint k, with the carrier and recruited nodes."""
    idx = h.index()
    sources = [idx[(lin.site, lin.feature_at(k))] for lin in carrier_lineages
               if lin.feature_at(k) >= 0 and (lin.site, lin.feature_at(k)) in idx]
    reached = h.descendants(sources) - set(sources)
    frac = (len(sources) + len(reached)) / len(h.nodes) if h.nodes else 0.0
    return frac, set(sources), reached

"""The carrier scaffold: persistent lineages that organise a co-activation hierarchy, and recruitment.

PROPOSAL (spec A6/A8; the paper's definitions are not public).

Hierarchy at checkpoint k, over the alive features of all sites. A feature is *active* on a token when
its code exceeds max(fire_eps, active_threshold x its largest code on the token set). Edge p -> c when
layer(p) <= layer(c), P(p active near c | c active) >= tau_in, P(c active near p | p active) <= tau_out
(p is the more general feature) and they are active together on >= min_cofire tokens. "Near" is the
same token for features of one layer and within ±window tokens of the same sequence across layers
(information moves between positions through attention, so a layer-1 feature may be organised by a
layer-0 feature one token back).

Persistent lineages: born by the early window's end, alive at the last checkpoint, stable at every
transition. Carriers: persistent lineages ranked by reach (descendants in the final hierarchy) with
reach >= min_reach, kept up to and including the knee of the ranked reach curve (`knee`; all of them
when the curve has none), at most n_carriers; or the top n_carriers (selection = "fixed"). Scaffold = carriers + their descendants.

Recruitment at checkpoint k = |non-carrier features reachable from a carrier| / |alive non-carrier
features| (carriers are not counted as recruited). Null: the same count of random persistent lineages
in the carriers' place (n_null draws): if carriers organise no more than any persistent lineage does,
recruitment sits inside the null.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse import csr_matrix

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
    p_in: np.ndarray                      # P(parent near child | child) per edge, in adjacency's nnz order
    p_out: np.ndarray                     # P(child near parent | parent)
    firing_frac: np.ndarray               # per node: share of tokens where it is active
    _index: dict[tuple[str, int], int] | None = field(default=None, repr=False)

    @property
    def n_edges(self) -> int:
        return int(self.adjacency.nnz)

    def index(self) -> dict[tuple[str, int], int]:
        """Node number of each (site, feature)."""
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.nodes)}
        return self._index

    def descendants(self, sources: Sequence[int]) -> set[int]:
        """Nodes reachable from any source (a source counts only if reachable from another)."""
        ptr, idx = self.adjacency.indptr, self.adjacency.indices
        seen = np.zeros(len(self.nodes), dtype=bool)
        stack = list(sources)
        while stack:  # depth-first over the CSR rows; a source is marked only when an edge reaches it
            u = stack.pop()
            for v in idx[ptr[u]:ptr[u + 1]]:
                if not seen[v]:
                    seen[v] = True
                    stack.append(int(v))
        return set(np.flatnonzero(seen).tolist())

    def edges(self) -> list[tuple[int, int, float, float]]:
        coo = self.adjacency.tocoo()
        return [(int(p), int(c), float(a), float(b)) for p, c, a, b in zip(coo.row, coo.col, self.p_in, self.p_out)]


@dataclass
class CoFiring:
    """Joint activity counts behind a hierarchy (one active_threshold, one window): [n, n] each."""

    nodes: list[tuple[str, int]]
    layers: np.ndarray
    n_active: np.ndarray       # per node
    joint_in: np.ndarray       # [p, c]: tokens where c is active and p is active near it
    joint_out: np.ndarray      # [p, c]: tokens where p is active and c is active near it
    n_tokens: int


def active_mask(codes_NF: torch.Tensor, fire_eps: float, active_threshold: float) -> torch.Tensor:
    """Active: |a| > max(fire_eps, active_threshold x max_n |a|), per feature."""
    a = codes_NF.abs()
    thr = torch.clamp(active_threshold * a.max(0).values, min=fire_eps)
    return a > thr


def _dilate(B_NF: torch.Tensor, w: int, seq_len: int | None) -> torch.Tensor:
    """Active anywhere within ±w tokens of each token, inside its own sequence of seq_len tokens."""
    if w == 0:
        return B_NF
    N, F = B_NF.shape
    T = seq_len or N
    S = -(-N // T)
    x = torch.zeros(S * T, F)
    x[:N] = B_NF.float()
    x = x.reshape(S, T, F).permute(0, 2, 1)                     # [S, F, T]
    d = torch.nn.functional.max_pool1d(x, kernel_size=2 * w + 1, stride=1, padding=w)
    return d.permute(0, 2, 1).reshape(S * T, F)[:N] > 0


def cofiring(codes_k: Mapping[str, torch.Tensor], alive_k: Mapping[str, np.ndarray], sites: Sequence[str],
             mcfg: MatchConfig, active_threshold: float, window: int, seq_len: int | None) -> CoFiring:
    """Joint activity of every pair of alive features at one checkpoint (same token within a layer,
    ±window across layers)."""
    nodes, cols, layers = [], [], []
    for order, site in enumerate(sites):
        feats = np.flatnonzero(alive_k[site])
        nodes.extend((site, int(f)) for f in feats)
        cols.append(active_mask(codes_k[site][:, torch.as_tensor(feats, dtype=torch.long)], mcfg.fire_eps,
                                active_threshold))
        layers.extend([site_layer(site, order)] * len(feats))
    B_NF = torch.cat(cols, dim=1) if cols else torch.zeros(0, 0, dtype=torch.bool)
    lay = np.asarray(layers, dtype=int)
    B = to_csr(B_NF.float())                                    # activity is sparse: exact sparse products
    same = (B.T @ B).toarray()
    n = np.diag(same).copy()
    joint_in, joint_out = same.copy(), same.copy()
    if window > 0 and len(set(layers)) > 1:
        Dn = to_csr(_dilate(B_NF, window, seq_len).float())
        near = (Dn.T @ B).toarray()                             # [p, c]: c active, p active within ±w
        cross = lay[:, None] != lay[None, :]
        joint_in = np.where(cross, near, same)
        joint_out = np.where(cross, near.T, same)               # [p, c]: p active, c active within ±w
    return CoFiring(nodes, lay, n, joint_in, joint_out, max(1, B_NF.shape[0]))


def edges_from(cf: CoFiring, tau_in: float, tau_out: float, min_cofire: int) -> Hierarchy:
    """The hierarchy that thresholds tau_in / tau_out / min_cofire give on these joint counts."""
    safe = np.where(cf.n_active > 0, cf.n_active, 1.0)
    p_in = cf.joint_in / safe[None, :]                          # [p, c] = P(p near c | c)
    p_out = cf.joint_out / safe[:, None]                        # [p, c] = P(c near p | p)
    mask = (p_in >= tau_in) & (p_out <= tau_out) & (cf.joint_in >= min_cofire) & \
        (cf.layers[:, None] <= cf.layers[None, :])
    np.fill_diagonal(mask, False)
    adj = csr_matrix(mask.astype(np.int8))
    adj.sort_indices()
    coo = adj.tocoo()
    return Hierarchy(cf.nodes, adj, p_in[coo.row, coo.col], p_out[coo.row, coo.col], cf.n_active / cf.n_tokens)


def hierarchy(codes_k: Mapping[str, torch.Tensor], alive_k: Mapping[str, np.ndarray], sites: Sequence[str],
              mcfg: MatchConfig, scfg: ScaffoldConfig, seq_len: int | None = None) -> Hierarchy:
    """The co-activation hierarchy over the alive features of every site at one checkpoint."""
    cf = cofiring(codes_k, alive_k, sites, mcfg, scfg.active_threshold, scfg.window, seq_len)
    return edges_from(cf, scfg.tau_in, scfg.tau_out, scfg.min_cofire)


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


def persistent(lineages: Sequence[Lineage], steps: Sequence[int], cutoff: float) -> list[Lineage]:
    """Lineages born by the early window's end, alive at the last checkpoint, stable at every transition."""
    last = len(steps) - 1
    return [lin for lin in lineages if steps[lin.birth_index] <= cutoff and lin.end_index == last
            and lin.fate == "censored" and lin.all_stable]


candidates = persistent  # the former name


def knee(values_desc: Sequence[float]) -> int:
    """How many leading values a non-increasing curve keeps up to and including its knee (Kneedle-like).

    Normalise to x in [0, 1] (rank) and y in [0, 1] (value); the knee is the point farthest from the
    chord joining (0, 1) and (1, 0), above it (a plateau, then a drop) or below it (a fast decay, then
    a tail): k = argmax |y_k - (1 - x_k)|, and values 0..k are kept. A flat or straight curve has no
    knee: every value is kept. Satopää et al. 2011 ("Finding a kneedle in a haystack").
    """
    v = np.asarray(values_desc, dtype=float)
    if len(v) <= 2 or v[0] == v[-1]:
        return len(v)
    x = np.arange(len(v)) / (len(v) - 1)
    y = (v - v[-1]) / (v[0] - v[-1])
    d = np.abs(y - (1 - x))
    k = int(np.argmax(d))
    return len(v) if d[k] <= 1e-9 else k + 1


def rank_persistent(pers: Sequence[Lineage], final: Hierarchy, cfg: ScaffoldConfig) -> list[tuple[Lineage, int, int, int]]:
    """(lineage, node, reach, out_degree) of every persistent lineage in the final hierarchy, best first."""
    idx = final.index()
    out_deg = np.asarray(final.adjacency.sum(1)).ravel()
    scored = []
    for lin in pers:
        node = idx.get((lin.site, lin.features[-1]))
        if node is None:
            continue
        reach = len(final.descendants([node]))
        key = reach if cfg.rank_by == "reach" else int(out_deg[node])
        scored.append(((-key, -int(out_deg[node]), -float(final.firing_frac[node]), lin.lineage_id),
                       (lin, node, reach, int(out_deg[node]))))
    scored.sort(key=lambda s: s[0])
    return [s[1] for s in scored]


def select_carriers(pers: Sequence[Lineage], final: Hierarchy, steps: Sequence[int],
                    cfg: ScaffoldConfig) -> list[Carrier]:
    """Rank persistent lineages by reach (or out-degree); keep those up to the knee (or the top n_carriers)."""
    ranked = rank_persistent(pers, final, cfg)
    key = (lambda r: r[2]) if cfg.rank_by == "reach" else (lambda r: r[3])
    eligible = [r for r in ranked if key(r) >= cfg.min_reach]
    n = len(eligible) if cfg.selection == "fixed" else knee([key(r) for r in eligible])
    return [Carrier(i + 1, lin.lineage_id, lin.site, lin.features[-1], reach, deg, float(final.firing_frac[node]),
                    int(steps[lin.birth_index]))
            for i, (lin, node, reach, deg) in enumerate(eligible[:min(n, cfg.n_carriers)])]


def recruitment(carrier_lineages: Sequence[Lineage], h: Hierarchy, k: int) -> tuple[float, set[int], set[int]]:
    """(share of alive non-carriers reachable from a carrier at checkpoint k, carrier nodes, recruited nodes)."""
    idx = h.index()
    sources = [idx[(lin.site, lin.feature_at(k))] for lin in carrier_lineages
               if lin.feature_at(k) >= 0 and (lin.site, lin.feature_at(k)) in idx]
    reached = h.descendants(sources) - set(sources)
    others = len(h.nodes) - len(set(sources))
    return (len(reached) / others if others else 0.0), set(sources), reached


def recruitment_null(pers: Sequence[Lineage], n_carriers: int, final: Hierarchy, k: int, n_draws: int,
                     seed: int) -> np.ndarray:
    """Final recruitment of n_draws random sets of n_carriers persistent lineages (the carriers' null)."""
    if n_carriers == 0 or not pers or n_draws == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    size = min(n_carriers, len(pers))
    return np.array([recruitment([pers[i] for i in rng.choice(len(pers), size=size, replace=False)], final, k)[0]
                     for _ in range(n_draws)])


def carrier_curve(pers: Sequence[Lineage], final: Hierarchy, cfg: ScaffoldConfig, k: int,
                  chosen: int) -> list[dict]:
    """Sensitivity of the scaffold to the carrier count: final recruitment when the top n are carriers."""
    ranked = rank_persistent(pers, final, cfg)
    rows, reached, src = [], set(), set()
    for n, (lin, node, reach, deg) in enumerate(ranked, start=1):
        src.add(node)
        reached |= final.descendants([node])
        others = len(final.nodes) - len(src)
        rows.append({"n_carriers": n, "lineage_id": lin.lineage_id, "reach": reach, "out_degree": deg,
                     "recruitment_final": len(reached - src) / others if others else 0.0, "chosen": n <= chosen})
    return rows


def sensitivity(codes_k: Mapping[str, torch.Tensor], alive_k: Mapping[str, np.ndarray], sites: Sequence[str],
                pers: Sequence[Lineage], steps: Sequence[int], mcfg: MatchConfig, cfg: ScaffoldConfig,
                seq_len: int | None) -> list[dict]:
    """Final hierarchy over the grid tau_in x active_threshold: edges, carriers found, their recruitment."""
    rows = []
    K = len(steps) - 1
    for act in sorted(set(cfg.sensitivity_active) | {cfg.active_threshold}):
        cf = cofiring(codes_k, alive_k, sites, mcfg, act, cfg.window, seq_len)
        for tau in sorted(set(cfg.sensitivity_tau_in) | {cfg.tau_in}):
            h = edges_from(cf, tau, cfg.tau_out, cfg.min_cofire)
            sub = cfg.model_copy(update={"tau_in": tau, "active_threshold": act})
            cars = select_carriers(pers, h, steps, sub)
            by_id = {lin.lineage_id: lin for lin in pers}
            rec = recruitment([by_id[c.lineage_id] for c in cars], h, K)[0] if cars else 0.0
            rows.append({"tau_in": tau, "active_threshold": act, "n_edges": h.n_edges, "n_carriers": len(cars),
                         "recruitment_final": rec,
                         "is_default": tau == cfg.tau_in and act == cfg.active_threshold})
    return rows

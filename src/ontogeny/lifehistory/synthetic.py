"""Planted life histories: dictionaries over a checkpoint series with known births, deaths, transforms,
splits, merges, a stable carrier core and a co-activation hierarchy, for tests and the docs.

Each site holds "atoms" (ground-truth features): a token support, a decoder direction and an alive
interval of checkpoints. Codes at checkpoint k place every alive atom in a random slot of a width-F
dictionary (x_n * 1[n in support], x_n a per-token intensity shared across checkpoints, so an unchanged
atom correlates at r = 1 with itself). A transform keeps `transform_keep` of the support (r ~ keep);
a split gives children 60% / 40% of the parent's tokens (r ~ 0.77 / 0.63), a merge is the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ontogeny.errors import ConfigError


@dataclass
class Atom:
    """One ground-truth feature: where it fires, its direction and the checkpoints it is alive."""

    uid: int
    support: np.ndarray        # token indices
    direction: np.ndarray      # [D]
    start: int                 # first checkpoint index alive
    end: int                   # last checkpoint index alive (inclusive)
    origin: str = "initial"    # initial | born | stable | transformed | split | merge-target
    parent: int = -1           # uid of the predecessor (transform / split / merge), -1 if none
    carrier_of: int = -1       # uid of the carrier whose support contains this atom's, -1 if none
    lineage: int = -1


@dataclass
class PlantedSeries:
    """Codes and decoders per site and checkpoint, plus the truth they were planted from."""

    steps: list[int]
    sites: list[str]
    codes: dict[str, list[torch.Tensor]]          # site -> [K] codes_NF
    W_dec: dict[str, list[torch.Tensor]]          # site -> [K] W_dec_FD
    slots: dict[str, list[dict[int, int]]]        # site -> [K] {atom uid: slot}
    atoms: dict[str, list[Atom]]
    events: set[tuple[str, int, str, int, int]] = field(default_factory=set)  # (site, t, kind, i, j)
    carriers: set[tuple[str, int]] = field(default_factory=set)              # (site, final slot)
    scaffold_final: set[tuple[str, int]] = field(default_factory=set)        # carriers + descendants

    def event_counts(self, site: str, t: int) -> dict[str, int]:
        out = {k: 0 for k in ("stable", "transformed", "died", "born", "split", "merge")}
        for s, tt, kind, _, _ in self.events:
            if s == site and tt == t:
                out[kind] += 1
        return out


def planted_series(steps: list[int] | None = None, sites: tuple[str, ...] = ("blocks.0.hook_resid_post",
                   "blocks.1.hook_resid_post"), n_tokens: int = 4000, width: int = 96, d_model: int = 32,
                   n_carriers: int = 3, n_children: int = 3, n_core: int = 6, n_initial: int = 20,
                   carrier_frac: float = 0.06, atom_frac: float = 0.03,
                   early_events: int = 3, late_events: int = 1, n_early: int | None = None,
                   noise: float = 0.0, transform_keep: float = 0.35, seed: int = 0) -> PlantedSeries:
    """Build a planted series; `early_events` of each kind per early transition, `late_events` later.

    Early transitions are the first `n_early` (default: those ending at step <= 1% of the last step).
    `noise` adds multiplicative intensity noise and spurious firings on that share of tokens.
    """
    steps = steps or [0, 1, 2, 4, 8, 16, 32, 64, 100, 1000, 2000, 4000, 6000, 8000, 10000]
    K = len(steps)
    if n_early is None:
        n_early = sum(1 for t in range(K - 1) if steps[t + 1] <= 0.01 * steps[-1])
    rng = np.random.default_rng(seed)
    out = PlantedSeries(steps=list(steps), sites=list(sites), codes={}, W_dec={}, slots={}, atoms={})
    uid = [0]

    def new_atom(support, direction, start, end, **kw) -> Atom:
        uid[0] += 1
        return Atom(uid[0], np.sort(support), direction / np.linalg.norm(direction), start, end, **kw)

    free = np.arange(n_tokens)
    carrier_blocks: list[tuple[str, Atom]] = []
    for site in sites:
        atoms: list[Atom] = []
        for _ in range(n_carriers):  # carriers: disjoint supports, alive and unchanged throughout
            sup = rng.choice(free, size=int(carrier_frac * n_tokens), replace=False)
            free = np.setdiff1d(free, sup)
            a = new_atom(sup, rng.normal(size=d_model), 0, K - 1)
            atoms.append(a)
            carrier_blocks.append((site, a))
        out.atoms[site] = atoms
    if len(free) < n_tokens // 2:
        raise ConfigError("carriers cover more than half the tokens: lower n_carriers or carrier_frac")

    def random_support():
        return rng.choice(free, size=int(atom_frac * n_tokens), replace=False)

    # Children: disjoint quarters of a carrier's support, at the carrier's site or the next one, born at
    # a random checkpoint and alive to the end (so recruitment into the scaffold grows over training).
    if n_children > 4:
        raise ConfigError(f"n_children={n_children}: at most 4 (children are quarters of a carrier)")
    for site, car in carrier_blocks:
        quarters = np.array_split(rng.permutation(car.support), 4)
        si = sites.index(site)
        for c in range(n_children):
            child_site = sites[min(len(sites) - 1, si + (c % 2))]
            start = int(rng.integers(0, K - 1))
            out.atoms[child_site].append(new_atom(quarters[c], rng.normal(size=d_model), start, K - 1,
                                                  origin="initial" if start == 0 else "born",
                                                  carrier_of=car.uid))
    for site in sites:
        atoms = out.atoms[site]
        for _ in range(n_core):  # stable decoys: alive throughout, nothing nested in them
            atoms.append(new_atom(random_support(), rng.normal(size=d_model), 0, K - 1))
        pool = [new_atom(random_support(), rng.normal(size=d_model), 0, K - 1) for _ in range(n_initial)]
        atoms.extend(pool)
        for t in range(K - 1):  # events on transition t -> t+1, drawn from the mutable pool
            n_ev = early_events if t < n_early else late_events
            live = [a for a in pool if a.start <= t and a.end == K - 1]
            rng.shuffle(live)
            if len(live) < 5 * n_ev:
                raise ConfigError(f"n_initial={n_initial} too small for {n_ev} events of each kind")
            full = [a for a in live if len(a.support) >= int(atom_frac * n_tokens)]
            splitters = full[:n_ev]
            rest = [a for a in live if a not in splitters]
            deaths, transforms, merging = rest[:n_ev], rest[n_ev:2 * n_ev], rest[2 * n_ev:4 * n_ev]
            if len(splitters) < n_ev or len(merging) < 2 * n_ev:
                raise ConfigError(f"n_initial={n_initial} too small for {n_ev} events of each kind")
            new = []
            for a in deaths:
                a.end = t
            for _ in range(n_ev):
                new.append(new_atom(random_support(), rng.normal(size=d_model), t + 1, K - 1, origin="born"))
            for a in transforms:  # keep part of the support, move the rest
                a.end = t
                keep = rng.choice(a.support, size=int(round(transform_keep * len(a.support))), replace=False)
                moved = rng.choice(np.setdiff1d(free, a.support), size=len(a.support) - len(keep), replace=False)
                new.append(new_atom(np.concatenate([keep, moved]), a.direction + 0.8 * rng.normal(size=d_model)
                                    / np.sqrt(d_model), t + 1, K - 1, origin="transformed", parent=a.uid))
            for a in splitters:  # 60% continues the lineage, 40% splits off
                a.end = t
                perm = rng.permutation(a.support)
                cut = int(round(0.6 * len(perm)))
                for part, origin in ((perm[:cut], "stable"), (perm[cut:], "split")):
                    new.append(new_atom(part, a.direction + 0.3 * rng.normal(size=d_model) / np.sqrt(d_model),
                                        t + 1, K - 1, origin=origin, parent=a.uid))
            for a, b in zip(merging[0::2], merging[1::2]):  # the bigger continues and absorbs part of the other
                a.end = t; b.end = t
                big, small = (a, b) if len(a.support) >= len(b.support) else (b, a)
                part = rng.choice(small.support, size=min(len(small.support), int(len(big.support) * 2 / 3)),
                                  replace=False)
                m = new_atom(np.union1d(big.support, part), big.direction, t + 1, K - 1,
                             origin="merge-target", parent=big.uid)
                m.carrier_of = -2 - small.uid  # remember the absorbed atom
                new.append(m)
            atoms.extend(new); pool.extend(new)
    _materialise(out, n_tokens, width, d_model, noise, rng)
    _truth(out)
    return out


def _materialise(out: PlantedSeries, n_tokens: int, width: int, d_model: int, noise: float,
                 rng: np.random.Generator) -> None:
    K = len(out.steps)
    for site in out.sites:
        x_N = rng.uniform(0.5, 1.5, size=n_tokens)
        out.codes[site], out.W_dec[site], out.slots[site] = [], [], []
        for k in range(K):
            alive = [a for a in out.atoms[site] if a.start <= k <= a.end]
            if len(alive) > width:
                raise ConfigError(f"{len(alive)} atoms alive at checkpoint {k} of {site}; raise width={width}")
            slot_of = dict(zip([a.uid for a in alive], rng.permutation(width)[:len(alive)].tolist()))
            codes = np.zeros((n_tokens, width), dtype=np.float32)
            W = rng.normal(size=(width, d_model)).astype(np.float32)
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            for a in alive:
                col = np.zeros(n_tokens)
                col[a.support] = x_N[a.support]
                if noise > 0:
                    col[a.support] *= np.exp(noise * rng.normal(size=len(a.support)))
                    extra = rng.random(n_tokens) < noise * 0.02
                    col[extra] += rng.uniform(0.5, 1.5, size=int(extra.sum()))
                codes[:, slot_of[a.uid]] = col
                W[slot_of[a.uid]] = a.direction
            out.codes[site].append(torch.from_numpy(codes))
            out.W_dec[site].append(torch.from_numpy(W))
            out.slots[site].append(slot_of)


def _truth(out: PlantedSeries) -> None:
    K = len(out.steps)
    for site in out.sites:
        atoms = {a.uid: a for a in out.atoms[site]}
        slots = out.slots[site]
        for t in range(K - 1):
            for a in atoms.values():
                if a.start <= t and a.end > t:
                    out.events.add((site, t, "stable", slots[t][a.uid], slots[t + 1][a.uid]))
                if a.start == t + 1 and a.origin != "initial":
                    p = atoms.get(a.parent)
                    if a.origin == "born":
                        out.events.add((site, t, "born", -1, slots[t + 1][a.uid]))
                    elif a.origin == "transformed":
                        out.events.add((site, t, "transformed", slots[t][p.uid], slots[t + 1][a.uid]))
                    elif a.origin in ("stable", "merge-target"):
                        out.events.add((site, t, "stable", slots[t][p.uid], slots[t + 1][a.uid]))
                    elif a.origin == "split":
                        out.events.add((site, t, "split", slots[t][p.uid], slots[t + 1][a.uid]))
                    if a.origin == "merge-target":
                        small = atoms[-(a.carrier_of + 2)]
                        out.events.add((site, t, "merge", slots[t][small.uid], slots[t + 1][a.uid]))
                if a.end == t:
                    has_successor = any(b.parent == a.uid and b.start == t + 1 for b in atoms.values()) or \
                        any(b.carrier_of == -2 - a.uid for b in atoms.values())
                    if not has_successor:
                        out.events.add((site, t, "died", slots[t][a.uid], -1))
    final = K - 1
    all_atoms = {a.uid: (s, a) for s in out.sites for a in out.atoms[s]}
    for s in out.sites:
        for a in out.atoms[s]:
            children = [b for _, b in all_atoms.values() if b.carrier_of == a.uid]
            if children:
                out.carriers.add((s, out.slots[s][final][a.uid]))
                out.scaffold_final.add((s, out.slots[s][final][a.uid]))
                for b in children:
                    bs = all_atoms[b.uid][0]
                    if b.end == final:
                        out.scaffold_final.add((bs, out.slots[bs][final][b.uid]))

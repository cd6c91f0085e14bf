"""Planted life histories generated through the real encoder path, for tests, benchmarks and the docs.

Why: a test of matching, lineages, splits or the scaffold is only worth something if the codes it reads
come out of a dictionary's encoder, with the interference and thresholding that implies, and if the
truth was planted independently of the code under test.

Each site holds "atoms" (ground-truth features): a token support, a unit direction in R^D and an alive
interval of checkpoints. At checkpoint k the activations are x_n = Σ_{alive a} c_a(n) d_a + σ ε_n with
c_a(n) = s_n 1[n ∈ support_a] (s_n a per-token intensity shared across checkpoints, so an unchanged
atom correlates at r ≈ 1 with itself; times exp(noise ε) per atom and token, plus spurious firings on a
share 0.02 noise of tokens) and σ = 0.02 noise. The checkpoint's `Dictionary` (ReLU rule) has the alive
atoms' directions as decoder rows in random slots and the rows of their pseudo-inverse as encoder
columns (b_enc = -threshold); unused slots never fire. The codes are `Dictionary.encode(x)`.

Planted events per transition: births, deaths, transforms (keep `transform_keep` of the support, the
rest moves), splits (two children share the parent's support: the continuation keeps 85% of it, the
split child fires on another 60% of it, their directions near the parent's) and merges (the larger
atom continues onto its own support plus 80% of the smaller one's; direction their sum).
Carriers: atoms alive and unchanged throughout whose support contains the supports of `n_children`
atoms (quarters of it, born over training, at the carrier's site or the next one): a planted hierarchy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    absorbed: int = -1         # merge-target: uid of the atom it absorbed


@dataclass
class PlantedSeries:
    """Activations, dictionaries and their codes per site and checkpoint, plus the truth planted."""

    steps: list[int]
    sites: list[str]
    codes: dict[str, list[torch.Tensor]]          # site -> [K] codes_NF (Dictionary.encode of acts)
    W_dec: dict[str, list[torch.Tensor]]          # site -> [K] W_dec_FD
    acts: dict[str, list[torch.Tensor]]           # site -> [K] acts_ND
    dictionaries: dict[str, list]                 # site -> [K] Dictionary
    slots: dict[str, list[dict[int, int]]]        # site -> [K] {atom uid: slot}
    atoms: dict[str, list[Atom]]
    seq_len: int = 50
    events: set[tuple[str, int, str, int, int]] = field(default_factory=set)  # (site, t, kind, i, j)
    carriers: set[tuple[str, int]] = field(default_factory=set)              # (site, final slot)
    scaffold_final: set[tuple[str, int]] = field(default_factory=set)        # carriers + descendants

    def event_counts(self, site: str, t: int) -> dict[str, int]:
        out = {k: 0 for k in ("stable", "transformed", "died", "born", "split", "merge")}
        for s, tt, kind, _, _ in self.events:
            if s == site and tt == t:
                out[kind] += 1
        return out

    def token_ids(self) -> torch.Tensor:
        """Token ids [S, T] for a run directory: any ids, shaped into sequences of seq_len."""
        n = self.codes[self.sites[0]][0].shape[0]
        return (torch.arange(n) % 97).reshape(n // self.seq_len, self.seq_len)


DEFAULT_STEPS = [0, 1, 2, 4, 8, 16, 32, 64, 100, 1000, 2000, 4000, 6000, 8000, 10000]


def planted_series(steps: list[int] | None = None, sites: tuple[str, ...] = ("blocks.0.hook_resid_post",
                   "blocks.1.hook_resid_post"), n_tokens: int = 4000, width: int = 96, d_model: int = 80,
                   n_carriers: int = 3, n_children: int = 3, n_core: int = 6, n_initial: int = 36,
                   carrier_frac: float = 0.06, atom_frac: float = 0.03,
                   early_events: int = 3, late_events: int = 1, n_early: int | None = None,
                   noise: float = 0.0, transform_keep: float = 0.35, threshold: float = 0.1,
                   seq_len: int = 50, seed: int = 0) -> PlantedSeries:
    """Build a planted series; `early_events` of each kind per early transition, `late_events` later.

    Early transitions are the first `n_early` (default: those ending at step <= 1% of the last step).
    `noise` in [0, 0.5]: intensity noise, spurious firings and Gaussian activation noise (module doc).
    """
    steps = list(steps or DEFAULT_STEPS)
    K = len(steps)
    if not 0 <= noise <= 0.5:
        raise ConfigError(f"noise={noise}: use 0 <= noise <= 0.5")
    if n_tokens % seq_len:
        raise ConfigError(f"n_tokens={n_tokens} must be a multiple of seq_len={seq_len}")
    if n_early is None:
        n_early = sum(1 for t in range(K - 1) if steps[t + 1] <= 0.01 * steps[-1])
    rng = np.random.default_rng(seed)
    out = PlantedSeries(steps=steps, sites=list(sites), codes={}, W_dec={}, acts={}, dictionaries={}, slots={},
                        atoms={}, seq_len=seq_len)
    uid = [0]

    def new_atom(support, direction, start, end, **kw) -> Atom:
        uid[0] += 1
        return Atom(uid[0], np.sort(support), direction / np.linalg.norm(direction), start, end, **kw)

    def near(direction, spread):
        return direction + spread * rng.normal(size=d_model) / np.sqrt(d_model)

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
            full = [a for a in live if a.origin in ("initial", "born") and len(a.support) == int(atom_frac * n_tokens)]
            splitters = full[:n_ev]
            rest = [a for a in live if a not in splitters]
            # a split child and its sibling overlap and point alike: one of them dying would be a merge
            # into the other, so neither dies nor merges while both are alive (they may transform or split)
            siblings = {a.parent for a in live if a.origin == "split"}
            lone = [a for a in rest if not (a.origin in ("stable", "split") and a.parent in siblings)]
            transforms = [a for a in rest if a not in lone][:n_ev]
            transforms += [a for a in lone if a not in transforms][:n_ev - len(transforms)]
            lone = [a for a in lone if a not in transforms]
            deaths, merging = lone[:n_ev], lone[n_ev:3 * n_ev]
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
                new.append(new_atom(np.concatenate([keep, moved]), near(a.direction, 0.8), t + 1, K - 1,
                                    origin="transformed", parent=a.uid))
            for a in splitters:  # two children sharing the parent's support; the larger continues it
                a.end = t
                n = len(a.support)
                cont = rng.choice(a.support, size=int(round(0.85 * n)), replace=False)
                child = rng.choice(a.support, size=int(round(0.6 * n)), replace=False)
                new.append(new_atom(cont, near(a.direction, 0.3), t + 1, K - 1, origin="stable", parent=a.uid))
                new.append(new_atom(child, near(a.direction, 0.5), t + 1, K - 1, origin="split", parent=a.uid))
            for a, b in zip(merging[0::2], merging[1::2]):  # the larger continues and absorbs most of the other
                a.end = t; b.end = t
                big, small = (a, b) if len(a.support) >= len(b.support) else (b, a)
                part = rng.choice(small.support, size=int(round(0.8 * len(small.support))), replace=False)
                new.append(new_atom(np.union1d(big.support, part), big.direction + small.direction, t + 1,
                                    K - 1, origin="merge-target", parent=big.uid, absorbed=small.uid))
            atoms.extend(new); pool.extend(new)
    _materialise(out, n_tokens, width, d_model, noise, threshold, rng)
    _truth(out)
    return out


def _dictionary(W_FD: np.ndarray, alive_slots: list[int], threshold: float):
    """A ReLU `Dictionary` whose alive slots decode to the atoms and encode by their pseudo-inverse."""
    from ontogeny.dictionaries.config import DictionaryConfig
    from ontogeny.dictionaries.model import Dictionary

    F, D = W_FD.shape
    d = Dictionary(DictionaryConfig(rule="relu", d_in=D, d_sae=F), seed=0)
    W_enc = W_FD.T.copy()
    b_enc = np.full(F, -1e3)  # unused slots never fire
    if alive_slots:
        W_enc[:, alive_slots] = np.linalg.pinv(W_FD[alive_slots])
        b_enc[alive_slots] = -threshold
    with torch.no_grad():
        d.W_dec_FD.copy_(torch.from_numpy(W_FD).float())
        d.W_enc_DF.copy_(torch.from_numpy(W_enc).float())
        d.b_enc_F.copy_(torch.from_numpy(b_enc).float())
        d.b_dec_D.zero_()
    return d.eval()


def _materialise(out: PlantedSeries, n_tokens: int, width: int, d_model: int, noise: float, threshold: float,
                 rng: np.random.Generator) -> None:
    K = len(out.steps)
    for site in out.sites:
        s_N = rng.uniform(0.5, 1.5, size=n_tokens)
        for name in ("codes", "W_dec", "acts", "dictionaries", "slots"):
            getattr(out, name)[site] = []
        for k in range(K):
            alive = [a for a in out.atoms[site] if a.start <= k <= a.end]
            if len(alive) > min(width, d_model):
                raise ConfigError(f"{len(alive)} atoms alive at checkpoint {k} of {site}; raise width={width} "
                                  f"and d_model={d_model}")
            slot_of = dict(zip([a.uid for a in alive], rng.permutation(width)[:len(alive)].tolist()))
            W = rng.normal(size=(width, d_model))
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            acts = np.zeros((n_tokens, d_model))
            for a in alive:
                col = np.zeros(n_tokens)
                col[a.support] = s_N[a.support]
                if noise > 0:
                    col[a.support] *= np.exp(noise * rng.normal(size=len(a.support)))
                    extra = rng.random(n_tokens) < noise * 0.02
                    col[extra] += rng.uniform(0.5, 1.5, size=int(extra.sum()))
                acts += col[:, None] * a.direction[None, :]
                W[slot_of[a.uid]] = a.direction
            if noise > 0:
                acts += 0.02 * noise * rng.normal(size=acts.shape)
            d = _dictionary(W, [slot_of[a.uid] for a in alive], threshold)
            acts_ND = torch.from_numpy(acts).float()
            with torch.no_grad():
                out.codes[site].append(d.encode(acts_ND))
            out.acts[site].append(acts_ND)
            out.W_dec[site].append(d.W_dec_FD.detach().clone())
            out.dictionaries[site].append(d)
            out.slots[site].append(slot_of)


def _truth(out: PlantedSeries) -> None:
    K = len(out.steps)
    for site in out.sites:
        atoms = {a.uid: a for a in out.atoms[site]}
        slots = out.slots[site]
        absorbed = {a.absorbed for a in atoms.values() if a.absorbed >= 0}
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
                        out.events.add((site, t, "merge", slots[t][a.absorbed], slots[t + 1][a.uid]))
                if a.end == t and a.uid not in absorbed and \
                        not any(b.parent == a.uid and b.start == t + 1 for b in atoms.values()):
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


def write_planted_run(ps: PlantedSeries, run_dir: str | Path) -> Path:
    """Write a planted series as a run directory: activation store + SAELens-layout dictionaries.

    No series/ folder (there is no model), so run `ontogeny lifehistory --no-ablate` on it.
    """
    from ontogeny.dictionaries.saelens_io import save_dictionary
    from ontogeny.store.activations import ActivationStore, write_store_meta, write_unit
    from ontogeny.store.layout import activations_dir, dictionary_dir

    run_dir = Path(run_dir)
    root = activations_dir(run_dir)
    widths = {s: int(ps.acts[s][0].shape[1]) for s in ps.sites}
    write_store_meta(root, ps.token_ids(), ps.sites, widths, ps.steps, config={"planted": True})
    store = ActivationStore(root)
    for site in ps.sites:
        for k, step in enumerate(ps.steps):
            write_unit(store, step, site, ps.acts[site][k])
            save_dictionary(ps.dictionaries[site][k], dictionary_dir(run_dir, step, site), {"step": step, "site": site})
    return run_dir

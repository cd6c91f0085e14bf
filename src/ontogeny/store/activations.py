"""The activation store: activations of chosen sites × checkpoints on one fixed set of token ids.

Layout under `root`:
  tokens.safetensors              token_ids [S, T] (the same ids for every checkpoint)
  store.json                      sites, widths, steps, tokens hash, provenance
  step_000128/<site>/shard_0000.safetensors   acts [rows, D], metadata: step, site, tokens hash

Rows are tokens in order (sequence-major), so row i of every (step, site) is the same token: that is
what lets analyses pair features across checkpoints. Each (step, site) folder is written atomically.
This module only reads and writes tensors; capture (running checkpoints) is `ontogeny.series.capture`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ontogeny.errors import SiteError, StoreError
from ontogeny.store.layout import STORE_META, TOKENS_FILE, UNIT_DONE, activation_unit_dir
from ontogeny.store.run import atomic_path, provenance, tensor_hash, write_json

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ActivationStore:
    """Read access to a store folder (see module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta = self.root / STORE_META
        if not meta.exists():
            raise StoreError(f"no activation store at {self.root} (missing store.json)")
        self.meta: dict[str, Any] = json.loads(meta.read_text())
        self._token_ids: torch.Tensor | None = None

    @property
    def sites(self) -> list[str]:
        return list(self.meta["sites"])

    @property
    def steps(self) -> list[int]:
        """Steps whose every site is complete on disk."""
        return [s for s in self.meta["steps"] if all(self.has(s, site) for site in self.sites)]

    @property
    def tokens_hash(self) -> str:
        return self.meta["tokens_hash"]

    @property
    def token_ids(self) -> torch.Tensor:
        """Token ids [S, T] shared by every checkpoint."""
        if self._token_ids is None:
            self._token_ids = _read(self.root / TOKENS_FILE, "token_ids")
            if tensor_hash(self._token_ids) != self.tokens_hash:
                raise StoreError(f"{self.root / TOKENS_FILE} does not match the hash in store.json")
        return self._token_ids

    def width(self, site: str) -> int:
        return int(self.meta["widths"][site])

    def has(self, step: int, site: str) -> bool:
        return (activation_unit_dir(self.root, step, site) / UNIT_DONE).exists()

    def load(self, step: int, site: str) -> torch.Tensor:
        """Activations [N, D] (float32) of one site at one step, N = S*T rows in token order."""
        if site not in self.meta["sites"]:
            raise SiteError(f"site {site!r} is not in the store at {self.root} (sites: {self.sites})")
        folder = activation_unit_dir(self.root, step, site)
        if not (folder / UNIT_DONE).exists():
            raise StoreError(f"no activations for step {step}, site {site} in {self.root} "
                             f"(steps complete: {self.steps})")
        shards = sorted(folder.glob("shard_*.safetensors"))
        parts = []
        for f in shards:
            acts, meta = _read(f, "acts", with_meta=True)
            if meta.get("tokens_hash") != self.tokens_hash:
                raise StoreError(f"{f} was captured on different token ids from the store's")
            parts.append(acts)
        acts_ND = torch.cat(parts).float()
        n_expected = self.token_ids.numel()
        if acts_ND.shape != (n_expected, self.width(site)):
            raise StoreError(f"{folder}: shape {tuple(acts_ND.shape)}, expected ({n_expected}, {self.width(site)})")
        if not torch.isfinite(acts_ND).all():
            raise StoreError(f"{folder}: activations contain NaN or inf")
        return acts_ND

    def load_stack(self, steps: Sequence[int], site: str) -> torch.Tensor:
        """Activations [N, K, D] of one site at K steps (the same tokens in every row)."""
        return torch.stack([self.load(s, site) for s in steps], dim=1)

    def batches(self, step: int, site: str, batch_size: int, seed: int = 0,
                n_epochs: int = 1) -> Iterator[torch.Tensor]:
        """Shuffled batches [B, D] over the rows of one (step, site), `n_epochs` times."""
        acts_ND = self.load(step, site)
        yield from shuffled_batches(acts_ND, batch_size, seed, n_epochs)


def shuffled_batches(acts_N: torch.Tensor, batch_size: int, seed: int = 0,
                     n_epochs: int = 1) -> Iterator[torch.Tensor]:
    """Shuffled row batches of a tensor (last partial batch dropped), deterministic given the seed."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    n = acts_N.shape[0]
    for _ in range(n_epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            yield acts_N[perm[i:i + batch_size]]


def _read(path: Path, key: str, with_meta: bool = False):
    try:
        with safe_open(str(path), framework="pt") as fh:
            t = fh.get_tensor(key)
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise StoreError(f"cannot read {path}: {e}") from e
    return (t, meta) if with_meta else t


def write_store_meta(root: str | Path, token_ids_ST: torch.Tensor, sites: Sequence[str],
                     widths: dict[str, int], steps: Sequence[int], config: Any = None,
                     inputs: dict[str, str] | None = None, merge: bool = True) -> None:
    """Create or check a store's tokens and metadata.

    With `merge` (extending a store, as `ontogeny cache` does) an existing store must hold the same
    tokens and keeps its other sites and steps. Without it (a study, whose manifest decides what is
    current) the index is rewritten to exactly these tokens, sites and steps.
    """
    root = Path(root)
    h = tensor_hash(token_ids_ST)
    meta_path = root / STORE_META
    if meta_path.exists() and merge:
        old = json.loads(meta_path.read_text())
        if old["tokens_hash"] != h:
            raise StoreError(f"store {root} holds activations of other token ids; use a new folder")
        sites = list(dict.fromkeys([*old["sites"], *sites]))
        widths = {**old["widths"], **widths}
        steps = sorted(set(old["steps"]) | set(steps))
    elif not (meta_path.exists() and json.loads(meta_path.read_text())["tokens_hash"] == h):
        root.mkdir(parents=True, exist_ok=True)
        with atomic_path(root / TOKENS_FILE) as tmp:
            save_file({"token_ids": token_ids_ST.contiguous()}, str(tmp))
    write_json(meta_path, {"sites": list(sites), "widths": widths, "steps": sorted(steps), "tokens_hash": h,
                           "n_seqs": token_ids_ST.shape[0], "ctx": token_ids_ST.shape[1],
                           **provenance(config, inputs)})


def write_unit(store: ActivationStore, step: int, site: str, acts_ND: torch.Tensor, shard_rows: int = 1 << 20) -> None:
    """Write one (step, site) unit of activations [N, D] atomically, in shards of `shard_rows` rows."""
    final = activation_unit_dir(store.root, step, site)
    meta = {"step": str(step), "site": site, "tokens_hash": store.tokens_hash}
    with atomic_path(final) as tmp:
        tmp.mkdir()
        for k, i in enumerate(range(0, acts_ND.shape[0], shard_rows)):
            save_file({"acts": acts_ND[i:i + shard_rows].contiguous()}, str(tmp / f"shard_{k:04d}.safetensors"),
                      metadata=meta)
        (tmp / UNIT_DONE).write_text(json.dumps({**meta, "rows": acts_ND.shape[0],
                                                   "width": acts_ND.shape[1], "hash": tensor_hash(acts_ND)}))


_write_unit = write_unit  # the former private name, still used by tests of other packages

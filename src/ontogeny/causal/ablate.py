"""Feature ablation through spliced dictionaries: joint cross-layer, count-matched controls, single features.

At each site the activation x is replaced by x' = x - (x̂(a) - x̂(a with features S removed)), i.e.
the dictionary's reconstruction without S plus the dictionary's error term x - x̂(a), so nothing but S
changes (spec A7, after Marks et al. 2025's error nodes). Removal is zero- or mean-ablation of the
codes. All sites are patched in one forward pass ("joint cross-layer"). Effects: Δ next-token
cross-entropy and KL(clean || ablated) per token. Controls: populations with the same count per site,
drawn from eligible features in the same firing-frequency quantile bins; the carriers' effect is
reported as a z-score, percentile and ratio against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ontogeny.errors import ConfigError
from ontogeny.series.sites import hooks, patched


class Codec(Protocol):
    """What ablation needs of a dictionary: encode [B, D] -> codes [B, F] and decode back."""

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor: ...

    def decode(self, codes_BF: torch.Tensor) -> torch.Tensor: ...


def _flat(act: torch.Tensor) -> torch.Tensor:
    """[B, T, D] -> [B*T, D]; [B, T, H, d_head] (attn.hook_z) -> [B*T, H*d_head]."""
    return act.reshape(act.shape[0] * act.shape[1], -1)


def ablation_patch(codec: Codec, features: torch.Tensor, mode: str = "zero",
                   mean_F: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A site patch removing `features` from the codes while keeping the dictionary's error term."""
    if mode not in ("zero", "mean"):
        raise ConfigError(f"unknown ablation mode {mode!r}: use 'zero' or 'mean'")
    if mode == "mean" and mean_F is None:
        raise ConfigError("mean ablation needs the features' mean codes (mean_F)")
    idx = torch.as_tensor(features, dtype=torch.long)

    def fn(act: torch.Tensor) -> torch.Tensor:
        x = _flat(act).float()
        codes = codec.encode(x)
        kept = codes.clone()
        kept[:, idx] = 0.0 if mode == "zero" else mean_F[idx].to(kept.dtype)
        x_new = x - codec.decode(codes) + codec.decode(kept)
        return x_new.reshape(act.shape).to(act.dtype)
    return fn


@dataclass
class Effect:
    """Change of next-token loss and divergence from the clean model, per token."""

    delta_ce: float
    kl: float


class AblationRunner:
    """Runs a model on fixed token batches: clean loss, firing counts, then any ablation's effect."""

    def __init__(self, model: nn.Module, input_ids_BT: torch.Tensor, codecs: Mapping[str, Codec],
                 batch_size: int = 16, fire_eps: float = 1e-6):
        if input_ids_BT.dim() != 2 or input_ids_BT.shape[1] < 2:
            raise ConfigError(f"ablation needs token ids [B, T>=2], got shape {tuple(input_ids_BT.shape)}")
        self.model, self.codecs = model.eval(), dict(codecs)
        self.batches = list(input_ids_BT.split(batch_size))
        self.fire_eps = fire_eps
        self.clean_logp: list[torch.Tensor] = []
        self.n_tokens = 0
        self.firings: dict[str, torch.Tensor] = {}
        self.code_sum: dict[str, torch.Tensor] = {}
        ce = 0.0
        with torch.no_grad():
            for ids in self.batches:
                with hooks(self.model, {s: self._counter(s) for s in self.codecs}):
                    logits = self.model(input_ids=ids).logits[:, :-1].float()
                logp = F.log_softmax(logits, -1)
                self.clean_logp.append(logp)
                ce += _nll_sum(logp, ids)
                self.n_tokens += ids[:, 1:].numel()
        self.clean_ce = ce / self.n_tokens
        n_rows = sum(b.numel() for b in self.batches)
        self.mean_codes = {s: v / n_rows for s, v in self.code_sum.items()}

    def _counter(self, site: str):
        def count(act: torch.Tensor) -> None:
            codes = self.codecs[site].encode(_flat(act).float())
            fires = (codes.abs() > self.fire_eps).sum(0)
            self.firings[site] = self.firings.get(site, 0) + fires
            self.code_sum[site] = self.code_sum.get(site, 0) + codes.sum(0)
        return count

    def effect(self, features: Mapping[str, Sequence[int] | torch.Tensor], mode: str = "zero") -> Effect:
        """Δ cross-entropy and KL when `features` ({site: indices}) are removed at all sites at once."""
        unknown = set(features) - set(self.codecs)
        if unknown:
            raise ConfigError(f"no dictionary for sites {sorted(unknown)} (have {sorted(self.codecs)})")
        patches = {s: ablation_patch(self.codecs[s], torch.as_tensor(list(f), dtype=torch.long), mode,
                                     self.mean_codes.get(s)) for s, f in features.items() if len(f)}
        ce, kl = 0.0, 0.0
        with torch.no_grad(), patched(self.model, patches):
            for ids, clean in zip(self.batches, self.clean_logp):
                logp = F.log_softmax(self.model(input_ids=ids).logits[:, :-1].float(), -1)
                ce += _nll_sum(logp, ids)
                kl += float((clean.exp() * (clean - logp)).sum())
        return Effect(ce / self.n_tokens - self.clean_ce, kl / self.n_tokens)


def _nll_sum(logp_BTV: torch.Tensor, ids_BT: torch.Tensor) -> float:
    return float(-logp_BTV.gather(-1, ids_BT[:, 1:, None]).sum())


def frequency_bins(freq: np.ndarray, pool: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantile bin (0..n_bins-1) of every feature's firing frequency, edges from the pool's quantiles."""
    if len(pool) == 0:
        return np.zeros(len(freq), dtype=int)
    edges = np.quantile(freq[pool], np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.searchsorted(edges, freq, side="right")


def matched_controls(freq: Mapping[str, np.ndarray], targets: Mapping[str, Sequence[int]],
                     eligible: Mapping[str, np.ndarray], n_controls: int, n_bins: int = 10,
                     seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random populations with the targets' count per site and firing-frequency bins.

    Each target feature is replaced by an eligible feature of the same site from its frequency bin
    (nearest bins when a bin runs out); eligible is a boolean mask per site (e.g. alive, non-scaffold).
    """
    rng = np.random.default_rng(seed)
    out: list[dict[str, np.ndarray]] = [{} for _ in range(n_controls)]
    for site, tgt in targets.items():
        tgt = np.asarray(list(tgt), dtype=int)
        pool = np.flatnonzero(np.asarray(eligible[site]) & ~np.isin(np.arange(len(freq[site])), tgt))
        if len(pool) < len(tgt):
            raise ConfigError(f"site {site!r}: {len(pool)} eligible control features for {len(tgt)} targets")
        bins = frequency_bins(np.asarray(freq[site], dtype=float), pool, n_bins)
        by_bin = {b: pool[bins[pool] == b] for b in range(n_bins)}
        for c in range(n_controls):
            taken: list[int] = []
            for b_t in bins[tgt]:
                for b in sorted(range(n_bins), key=lambda b: (abs(b - b_t), b)):
                    avail = np.setdiff1d(by_bin[b], taken)
                    if len(avail):
                        taken.append(int(rng.choice(avail)))
                        break
            out[c][site] = np.asarray(taken, dtype=int)
    return out


def compare(value: float, controls: Sequence[float]) -> dict[str, float]:
    """Where `value` sits in the control distribution: z-score, percentile (share below) and ratio."""
    c = np.asarray(controls, dtype=float)
    sd = float(c.std(ddof=1)) if len(c) > 1 else 0.0
    mean = float(c.mean()) if len(c) else float("nan")
    return {"value": value, "control_mean": mean, "control_sd": sd,
            "z": (value - mean) / sd if sd > 0 else float("nan"),
            "percentile": 100.0 * (float((c < value).mean()) + 0.5 * float((c == value).mean())) if len(c)
            else float("nan"),
            "ratio": value / mean if mean else float("nan")}


def iter_single(features: Mapping[str, Sequence[int]]) -> Iterator[tuple[str, int]]:
    """(site, feature) pairs of a population, in site then feature order."""
    for site in features:
        for f in features[site]:
            yield site, int(f)

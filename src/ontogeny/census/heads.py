"""The head census: what every attention head of every checkpoint does, and whether copying needs it.

Why: capabilities, susceptibilities and emergence all name heads ("the induction head L1H3"); they must
name them from one measurement, made on inputs whose answer is known and at periods and offsets the
series never trained on, so a positional or shifted circuit shows as what it is.

Probe inputs (Olsson et al. 2022's repeated random tokens): [prefix of `offset` random tokens, r, r],
r a span of P tokens drawn uniformly from every non-special token, fixed by the seed, the same for
every checkpoint. Per (checkpoint, layer, head, P, offset) the census scores previous-token,
duplicate-token, prefix-matching and induction (i-P+1) attention and the best back-distance / shift
(`ontogeny.census.scores`), and the causal check: the increase of the second-copy loss when the head's
output (its slice of `attn.hook_z`) is set to zero. Per (checkpoint, P, offset) it records the copy
losses: mean next-token loss on the first copy's targets 2..P and on the second copy's targets 2..P
(each copy's first token is unpredictable), and `copy_gain` = first - second (nats).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.census import scores
from ontogeny.errors import ConfigError

HEAD_METRICS = ("prev_token", "duplicate_token", "prefix_matching", "induction", "best_offset_score",
                "ablation_copy_increase")


class CensusConfig(BaseModel):
    """Probe periods/offsets, sample size and the thresholds that name a head."""

    model_config = ConfigDict(extra="forbid")

    periods: tuple[int, ...] = Field((11, 20, 32), description="span periods P of the [prefix, r, r] "
                                     "probes; choose periods the series never trained on")
    offsets: tuple[int, ...] = Field((0, 9), description="random-prefix lengths before the span; a "
                                     "(P, offset) pair whose offset+2P exceeds the context is skipped")
    n_seqs: int = Field(32, ge=1, description="probe sequences per (period, offset)")
    seed: int = Field(0, description="seed of the probe tokens (the same for every checkpoint)")
    ablate: bool = Field(True, description="measure each head's zero-ablation copy-loss increase")
    ablate_checkpoints: int | None = Field(
        4, ge=1, description="in a census over a series, measure the ablation at this many checkpoints "
        "only (the last and evenly spaced earlier ones; the attention scores are measured at every "
        "checkpoint); None: at every checkpoint. Ablation costs one forward pass per head and probe")
    prev_token_threshold: float = Field(0.3, ge=0.0, le=1.0,
                                        description="previous-token score that names a previous-token head")
    induction_threshold: float = Field(0.3, ge=0.0, le=1.0,
                                       description="induction score that names an induction head")

    def probes(self, context: int) -> list[tuple[int, int]]:
        """The (period, offset) pairs that fit in `context` tokens; ConfigError when none does."""
        pairs = [(p, o) for p in self.periods for o in self.offsets if o + 2 * p <= context]
        if not pairs:
            raise ConfigError(f"census: no (period, offset) of periods={self.periods}, "
                              f"offsets={self.offsets} fits twice in the model's context of {context} tokens")
        return pairs


def probe_tokens(pool: torch.Tensor, n_seqs: int, period: int, offset: int, seed: int) -> torch.Tensor:
    """[n_seqs, offset + 2*period]: `offset` random tokens, then a random span r, then r again."""
    g = torch.Generator().manual_seed(seed * 100_003 + period * 101 + offset)
    pick = torch.randint(0, len(pool), (n_seqs, offset + period), generator=g)
    prefix_BO, span_BP = pool[pick[:, :offset]], pool[pick[:, offset:]]
    return torch.cat([prefix_BO, span_BP, span_BP], dim=1)


def _n_layers_heads(model) -> tuple[int, int]:
    return int(model.config.num_hidden_layers), int(model.config.num_attention_heads)


def _context(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def _copy_nll(logits_BTV: torch.Tensor, tokens_BT: torch.Tensor, period: int, offset: int,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token next-token loss on the first copy's and the second copy's predictable targets."""
    nll_BT = F.cross_entropy(logits_BTV[:, :-1].float().transpose(1, 2), tokens_BT[:, 1:], reduction="none")
    # nll_BT[:, t] predicts token t+1: first copy targets offset+1 .. offset+P-1, second offset+P+1 ..
    first = nll_BT[:, offset: offset + period - 1]
    second = nll_BT[:, offset + period: offset + 2 * period - 1]
    return first, second


@torch.no_grad()
def forward_with_patterns(model, tokens_BT: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One forward pass: logits [B, T, V] and each layer's attention pattern [B, H, T, T]."""
    from ontogeny.series.sites import hooks

    n_layers, _ = _n_layers_heads(model)
    pats: dict[int, torch.Tensor] = {}

    def keeper(layer: int):
        def keep(t: torch.Tensor) -> None:
            pats[layer] = t.detach()
        return keep

    with hooks(model, {f"blocks.{L}.attn.hook_pattern": keeper(L) for L in range(n_layers)}):
        logits = model(input_ids=tokens_BT).logits
    return logits, [pats[L] for L in range(n_layers)]


@torch.no_grad()
def ablated_second_copy_loss(model, tokens_BT: torch.Tensor, period: int, offset: int, layer: int,
                             head: int) -> float:
    """Mean second-copy loss with head `head` of `layer` zeroed (its slice of `attn.hook_z`)."""
    from ontogeny.series.sites import patched

    def zero(z_BTHd: torch.Tensor) -> torch.Tensor:
        z = z_BTHd.clone()
        z[:, :, head] = 0.0
        return z

    with patched(model, {f"blocks.{layer}.attn.hook_z": zero}):
        logits = model(input_ids=tokens_BT).logits
    return float(_copy_nll(logits, tokens_BT, period, offset)[1].mean())


@torch.no_grad()
def census_checkpoint(model, pool: torch.Tensor, cfg: CensusConfig, step: int,
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(head rows, copy rows) of one checkpoint; see the module docstring for every column."""
    was_training = model.training
    model.eval()
    n_layers, n_heads = _n_layers_heads(model)
    head_rows: list[dict[str, Any]] = []
    copy_rows: list[dict[str, Any]] = []
    try:
        for period, offset in cfg.probes(_context(model)):
            tokens_BT = probe_tokens(pool, cfg.n_seqs, period, offset, cfg.seed)
            logits, pats = forward_with_patterns(model, tokens_BT)
            first, second = _copy_nll(logits, tokens_BT, period, offset)
            loss_second = float(second.mean())
            pred = logits[:, offset + period: offset + 2 * period - 1].argmax(-1)
            acc = float((pred == tokens_BT[:, offset + period + 1: offset + 2 * period]).float().mean())
            copy_rows.append({"step": step, "period": period, "offset": offset,
                              "loss_first": float(first.mean()), "loss_second": loss_second,
                              "copy_gain": float(first.mean()) - loss_second, "second_copy_acc": acc})
            for layer, pat_BHTT in enumerate(pats):
                prev_H = scores.previous_token_score(pat_BHTT)
                dup_H = scores.duplicate_token_score(pat_BHTT, tokens_BT)
                pm_H = scores.prefix_matching_score(pat_BHTT, tokens_BT)
                ind_H = scores.induction_score(pat_BHTT, period, offset)
                d_H, dscore_H, shift_H = scores.best_offset(pat_BHTT, period, offset)
                for h in range(n_heads):
                    inc = (ablated_second_copy_loss(model, tokens_BT, period, offset, layer, h) - loss_second
                           if cfg.ablate else None)
                    head_rows.append({
                        "step": step, "layer": layer, "head": h, "component": f"l{layer}h{h}",
                        "period": period, "offset": offset, "prev_token": float(prev_H[h]),
                        "duplicate_token": float(dup_H[h]), "prefix_matching": float(pm_H[h]),
                        "induction": float(ind_H[h]), "best_offset": int(d_H[h]),
                        "best_offset_score": float(dscore_H[h]), "best_shift": int(shift_H[h]),
                        "ablation_copy_increase": inc})
    finally:
        model.train(was_training)
    return head_rows, copy_rows


def census_series(series, cfg: CensusConfig | None = None, steps: Sequence[int] | None = None,
                  pool: torch.Tensor | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The census of every checkpoint of a `CheckpointSeries` (or of `steps`): (head rows, copy rows).

    `pool` defaults to every non-special token of the series' tokenizer. The zero-ablation check is
    measured at `ablation_steps(steps, cfg.ablate_checkpoints)` only (None elsewhere), which keeps the
    census of a long series cheap while the last checkpoint always has it.
    """
    from ontogeny.series.tokenizer import ordinary_token_ids

    cfg = cfg or CensusConfig()
    pool = ordinary_token_ids(series.tokenizer) if pool is None else pool
    head_rows: list[dict[str, Any]] = []
    copy_rows: list[dict[str, Any]] = []
    steps = list(steps if steps is not None else series.steps)
    ablate_at = set(ablation_steps(steps, cfg.ablate_checkpoints)) if cfg.ablate else set()
    quiet = cfg.model_copy(update={"ablate": False})
    for step in steps:
        h, c = census_checkpoint(series.model(step), pool, cfg if step in ablate_at else quiet, step)
        head_rows += h
        copy_rows += c
    return head_rows, copy_rows


def ablation_steps(steps: Sequence[int], n: int | None) -> list[int]:
    """The checkpoints of `steps` where the census measures ablations: all when `n` is None, else `n` of
    them evenly spaced by index, the last always included (sorted)."""
    steps = sorted(steps)
    if n is None or n >= len(steps):
        return steps
    picks = {len(steps) - 1 - round(i * (len(steps) - 1) / n) for i in range(n)}
    return [steps[i] for i in sorted(picks)]


def change_point(steps: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    """The single change point of a curve over checkpoints: the split of a two-level step fit.

    Why: the census must say when a head forms; with checkpoints every few hundred steps the honest
    answer is an interval. The split minimises the squared error of fitting one level to the points
    before it and another to the points from it on (one-breakpoint least squares); `from_step` is the
    last checkpoint before the split and `step` the first one after it, `before`/`after` the two levels
    and `jump_share` the share of the total rise (after - before) made across that one interval (1.0: the
    whole change happens between two adjacent checkpoints, i.e. abruptly at this sampling).
    Returns step None when fewer than 3 points are given.
    """
    pts = sorted(zip(steps, values))
    if len(pts) < 3:
        return {"step": None, "from_step": None, "before": None, "after": None, "jump_share": None}
    xs = [p[0] for p in pts]
    ys = [float(p[1]) for p in pts]

    def sse(seg: list[float]) -> float:
        m = sum(seg) / len(seg)
        return sum((v - m) ** 2 for v in seg)

    k = min(range(1, len(ys)), key=lambda k: sse(ys[:k]) + sse(ys[k:]))
    before, after = sum(ys[:k]) / k, sum(ys[k:]) / (len(ys) - k)
    rise = after - before
    share = (ys[k] - ys[k - 1]) / rise if rise else 0.0
    return {"step": xs[k], "from_step": xs[k - 1], "before": before, "after": after, "jump_share": share}


def formation(head_rows: Iterable[dict[str, Any]], metric: str, layer: int | None = None,
              ) -> dict[str, Any]:
    """When the head that is best at `metric` at the last checkpoint (within `layer`) formed: its
    probe-averaged `metric` over checkpoints and the `change_point` of that curve, with the component."""
    means = head_means(head_rows)
    best = best_head(head_rows, metric, layer=layer)
    curve = sorted((r["step"], r[metric]) for r in means
                   if (r["layer"], r["head"]) == (best["layer"], best["head"]) and r[metric] is not None)
    return {"component": best["component"], "metric": metric,
            **change_point([s for s, _ in curve], [v for _, v in curve])}


def copy_gain_formation(copy_rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """`change_point` of the copy gain (mean over the probes) over checkpoints."""
    by_step: dict[int, list[float]] = {}
    for r in copy_rows:
        by_step.setdefault(r["step"], []).append(r["copy_gain"])
    steps = sorted(by_step)
    return change_point(steps, [sum(by_step[s]) / len(by_step[s]) for s in steps])


def head_means(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (step, layer, head): every score averaged over the probes (period, offset).

    `best_offset` / `best_shift` are kept per period as `best_offset_p{P}` (from offset 0 or the smallest
    offset measured): a back-distance that stays put across periods is positional, a shift that stays
    put is a (shifted) content circuit.
    """
    groups: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["step"], r["layer"], r["head"]), []).append(r)
    out = []
    for (step, layer, head), rs in sorted(groups.items()):
        row: dict[str, Any] = {"step": step, "layer": layer, "head": head, "component": rs[0]["component"]}
        for m in HEAD_METRICS:
            vals = [r[m] for r in rs if r[m] is not None]
            row[m] = sum(vals) / len(vals) if vals else None
        for r in sorted(rs, key=lambda r: (r["period"], -r["offset"])):  # smallest offset written last
            row[f"best_offset_p{r['period']}"] = r["best_offset"]
            row[f"best_shift_p{r['period']}"] = r["best_shift"]
        out.append(row)
    return out


def scores_LH(rows: Iterable[dict[str, Any]], metric: str, step: int | None = None) -> torch.Tensor:
    """[layers, heads] of `metric` averaged over probes at `step` (default: the last step in `rows`)."""
    means = head_means(rows)
    if not means:
        raise ConfigError("census rows are empty")
    if metric not in HEAD_METRICS:
        raise ConfigError(f"unknown census metric {metric!r}: expected one of {HEAD_METRICS}")
    step = max(r["step"] for r in means) if step is None else step
    at = [r for r in means if r["step"] == step]
    if not at:
        raise ConfigError(f"census has no rows at step {step}")
    n_layers = max(r["layer"] for r in at) + 1
    n_heads = max(r["head"] for r in at) + 1
    out = torch.zeros(n_layers, n_heads)
    for r in at:
        out[r["layer"], r["head"]] = float("nan") if r[metric] is None else r[metric]
    return out


def best_head(rows: Iterable[dict[str, Any]], metric: str, step: int | None = None,
              layer: int | None = None) -> dict[str, Any]:
    """The (probe-averaged) row of the head with the highest `metric` at `step` (last by default),
    optionally within one layer."""
    means = head_means(rows)
    step = max(r["step"] for r in means) if step is None else step
    cands = [r for r in means if r["step"] == step and (layer is None or r["layer"] == layer)
             and r[metric] is not None]
    if not cands:
        where = f", layer {layer}" if layer is not None else ""
        raise ConfigError(f"census has no {metric} rows at step {step}{where}")
    return max(cands, key=lambda r: r[metric])


def named_heads(rows: Iterable[dict[str, Any]], cfg: CensusConfig, step: int | None = None,
                ) -> dict[str, list[str]]:
    """Heads passing the thresholds at `step`: {"previous_token": [...], "induction": [...]}, components
    ordered by score; an empty list says no head passed (say so in words, never as a number)."""
    means = head_means(rows)
    step = max(r["step"] for r in means) if step is None else step
    at = [r for r in means if r["step"] == step]
    prev = sorted((r for r in at if r["prev_token"] >= cfg.prev_token_threshold),
                  key=lambda r: -r["prev_token"])
    ind = sorted((r for r in at if r["induction"] >= cfg.induction_threshold),
                 key=lambda r: -r["induction"])
    return {"previous_token": [r["component"] for r in prev], "induction": [r["component"] for r in ind]}

"""The registry of capability probes: a new probe is one decorated function.

A probe takes a `ProbeContext` (model, tokenizer, config, a seeded generator, the random-token pool)
and returns its metrics as `{name: float}`. A value under a key ending in `_LH` is a per-head matrix
`[layer][head]` (it becomes rows of the `capability_heads` table). A probe that cannot run on this
tokenizer or config raises `ProbeUnavailable`; its metrics are then absent, and the run says so.

Metrics (standard forms, seed-004 spec section 4.2):
- repetition: a random token segment of length L shown twice; induction_score = mean loss on the first
  copy - mean loss on the second copy (nats; Olsson et al. 2022 use the same contrast), rep_acc = greedy
  accuracy and rep_p = mean p(target) on the second copy; prefix matching per head = mean attention from
  query t of the second copy to key t - L + 1, the token after the earlier occurrence (Olsson et al. 2022);
- digits (paper Fig. 1): "d1 ... d8 d1 ... d7" -> p(d8) and greedy-correct;
- brackets: at each closing position of a random balanced string, the correct closer beats the other two
  closers (accuracy) and by how much (logit of the correct minus the mean of the others);
- pairs: (prompt, correct, incorrect) -> logit difference at the last position (first tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ontogeny.capabilities.config import CapabilityConfig


class ProbeUnavailable(Exception):
    """This probe cannot run here (the tokenizer cannot express it, or it has no inputs)."""


@dataclass
class ProbeContext:
    """What every probe gets: one checkpoint's model, the series' tokenizer, the config and a generator
    seeded once per checkpoint (so every checkpoint sees the same prompts)."""

    model: Any
    tokenizer: Any
    cfg: CapabilityConfig
    gen: torch.Generator
    pool: torch.Tensor  # token ids random prompts are drawn from (no special tokens)


@dataclass(frozen=True)
class Probe:
    name: str
    fn: Callable[[ProbeContext], dict[str, Any]]
    headline: tuple[str, ...] = field(default=())  # metrics drawn as capability curves


PROBES: dict[str, Probe] = {}


def register_probe(name: str, headline: Sequence[str] = ()) -> Callable:
    """Decorator: add `fn(ctx) -> {metric: value}` to `PROBES` under `name`; `headline` names the metrics
    the report draws as curves."""

    def deco(fn: Callable[[ProbeContext], dict[str, Any]]):
        if name in PROBES:
            raise ValueError(f"probe {name!r} is registered twice")
        PROBES[name] = Probe(name, fn, tuple(headline))
        return fn

    return deco


def token_pool(tokenizer, vocab_limit: int | None, vocab_size: int) -> torch.Tensor:
    """Ordinary token ids below `vocab_limit` (all by default), special tokens (PAD, EOS, ...) excluded."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    n = min(vocab_limit or vocab_size, vocab_size)
    pool = torch.tensor([i for i in range(n) if i not in special])
    if len(pool) < 2:
        raise ValueError(f"vocab_limit={vocab_limit} leaves fewer than 2 ordinary tokens")
    return pool


def repeated_tokens(pool: torch.Tensor, n: int, L: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 2L] ids: a random segment of L tokens from `pool`, then the same segment again."""
    seg = pool[torch.randint(0, len(pool), (n, L), generator=gen)]
    return torch.cat([seg, seg], 1)


@torch.no_grad()
def repetition_metrics(model, ids_B2L: torch.Tensor) -> dict[str, Any]:
    """Induction score, second-copy accuracy and p(target), and per-head prefix-matching scores."""
    from ontogeny.series.sites import capture

    L = ids_B2L.shape[1] // 2
    n_layers = int(model.config.num_hidden_layers)
    sites = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    pats = capture(model, ids_B2L, sites, stop_early=False)
    logits = model(input_ids=ids_B2L).logits.float()
    logp = F.log_softmax(logits[:, :-1], -1)
    tgt = ids_B2L[:, 1:]
    lp_BT = logp.gather(-1, tgt[..., None])[..., 0]
    first, second = lp_BT[:, : L - 1], lp_BT[:, L:]  # positions L..2L-2 predict the second copy's 2nd..Lth
    acc = (logp[:, L:].argmax(-1) == tgt[:, L:]).float().mean()
    q = torch.arange(L, 2 * L)
    heads_LH = torch.stack([pats[s][:, :, q, q - L + 1].float().mean((0, 2)) for s in sites])
    return {
        "induction_score": float(second.mean() - first.mean()),
        "rep_loss_first": float(-first.mean()),
        "rep_loss_second": float(-second.mean()),
        "rep_acc": float(acc),
        "rep_p": float(second.exp().mean()),
        "prefix_matching_max": float(heads_LH.max()),
        "prefix_matching_LH": heads_LH.tolist(),
    }


@register_probe("repetition", headline=("induction_score", "rep_acc", "prefix_matching_max"))
def repetition(ctx: ProbeContext) -> dict[str, Any]:
    return repetition_metrics(ctx.model, repeated_tokens(ctx.pool, ctx.cfg.n_prompts, ctx.cfg.rep_len, ctx.gen))


def _first_token(tokenizer, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise ProbeUnavailable(f"text {text!r} encodes to no tokens")
    return ids[0]


@torch.no_grad()
def _last_logits(model, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Logits at the last token of each prompt ([n, V]); prompts run one by one (no padding effects)."""
    out = []
    for p in prompts:
        ids = torch.tensor([tokenizer.encode(p, add_special_tokens=False)])
        out.append(model(input_ids=ids).logits[0, -1].float())
    return torch.stack(out)


def digit_repetition(model, tokenizer, n: int, n_digits: int, gen: torch.Generator) -> dict[str, float]:
    """The paper's Fig. 1 prompt family: n_digits random digits then all but the last again; p(last)."""
    prompts, targets = [], []
    for _ in range(n):
        d = torch.randint(0, 10, (n_digits,), generator=gen).tolist()
        prompts.append(" ".join(str(x) for x in d + d[:-1]))
        targets.append(_first_token(tokenizer, f" {d[-1]}"))
    logits = _last_logits(model, tokenizer, prompts)
    tgt = torch.tensor(targets)
    p = logits.softmax(-1).gather(1, tgt[:, None])[:, 0]
    return {"digit_p": float(p.mean()), "digit_acc": float((logits.argmax(-1) == tgt).float().mean())}


@register_probe("digits", headline=("digit_p",))
def digits(ctx: ProbeContext) -> dict[str, Any]:
    return digit_repetition(ctx.model, ctx.tokenizer, ctx.cfg.n_prompts, ctx.cfg.n_digits, ctx.gen)


def _balanced(n_pairs: int, gen: torch.Generator) -> list[int]:
    """A random balanced string of bracket kinds 0..2 as opener (k) / closer (k + 3) codes."""
    seq, stack, opened = [], [], 0
    while len(seq) < 2 * n_pairs:
        can_open, can_close = opened < n_pairs, bool(stack)
        if can_open and (not can_close or torch.rand(1, generator=gen).item() < 0.5):
            k = int(torch.randint(0, 3, (1,), generator=gen))
            seq.append(k)
            stack.append(k)
            opened += 1
        else:
            seq.append(stack.pop() + 3)
    return seq


@torch.no_grad()
def bracket_matching(model, tokenizer, n: int, n_pairs: int, gen: torch.Generator) -> dict[str, float]:
    """Accuracy and logit difference of the correct closer among ')', ']', '}' at every closing position."""
    tok = None
    for prefix in (" ", ""):  # " (" is one token in GPT-style BPEs; a byte-level toy BPE may only have "("
        enc = [tokenizer.encode(f"{prefix}{c}", add_special_tokens=False) for c in "([{)]}"]
        if all(len(e) == 1 for e in enc) and len({e[0] for e in enc}) == 6:
            tok = [e[0] for e in enc]
            break
    if tok is None:
        raise ProbeUnavailable("the tokenizer has no six distinct single-token brackets")
    closers = torch.tensor(tok[3:])
    correct, diffs = [], []
    for _ in range(n):
        seq = _balanced(n_pairs, gen)
        ids = torch.tensor([[tok[c] for c in seq]])
        logits = model(input_ids=ids).logits[0].float()
        for t in range(1, len(seq)):
            if seq[t] >= 3:
                lc = logits[t - 1, closers]
                j = seq[t] - 3
                correct.append(float(lc.argmax() == j))
                diffs.append(float(lc[j] - (lc.sum() - lc[j]) / 2))
    return {"bracket_acc": sum(correct) / len(correct), "bracket_logit_diff": sum(diffs) / len(diffs)}


@register_probe("brackets", headline=("bracket_acc",))
def brackets(ctx: ProbeContext) -> dict[str, Any]:
    return bracket_matching(ctx.model, ctx.tokenizer, ctx.cfg.n_prompts // 4 or 1, ctx.cfg.bracket_pairs, ctx.gen)


def prompt_pairs(model, tokenizer, pairs) -> dict[str, float]:
    """Mean logit(correct) - logit(incorrect) at the last prompt position, and the share with LD > 0."""
    logits = _last_logits(model, tokenizer, [p.prompt for p in pairs])
    c = torch.tensor([_first_token(tokenizer, p.correct) for p in pairs])
    w = torch.tensor([_first_token(tokenizer, p.incorrect) for p in pairs])
    ld = logits.gather(1, c[:, None])[:, 0] - logits.gather(1, w[:, None])[:, 0]
    return {"pairs_logit_diff": float(ld.mean()), "pairs_acc": float((ld > 0).float().mean())}


@register_probe("pairs", headline=("pairs_logit_diff",))
def pairs(ctx: ProbeContext) -> dict[str, Any]:
    if not ctx.cfg.pairs:
        raise ProbeUnavailable("no prompt pairs configured")
    return prompt_pairs(ctx.model, ctx.tokenizer, ctx.cfg.pairs)

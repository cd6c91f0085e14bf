"""Minimal-pair tasks for the embedded series, and a JSONL loader for a user's own pairs.

A minimal pair is a prefix and two continuations, one correct and one wrong (BLiMP-style). The task
metric of Bayazit et al. 2025 is the logit difference logit(wrong) - logit(correct) at the last prefix
position. Pairs are tokenised as the paper does: both full sentences are tokenised, the longest common
token prefix is the prompt and the first differing token of each is the answer; pairs whose answers
differ in token length or exceed `max_answer_tokens` are dropped.

Built-in tasks fit what the embedded corpus teaches (stdlib code, pydoc prose, repeated spans):
`brackets` (close `(` with `)` not `]`, and `[` with `]`), `quotes` (close a string with its own
quote), `agreement` (is/are, has/have, was/were after a singular or plural subject, with and without
an attractor noun), `copy` (continue a repeated random word span).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ontogeny.errors import ConfigError, StoreError

IDENTS = ("value", "name", "path", "data", "item", "key", "result", "args", "node", "line", "text",
          "index", "count", "size", "obj", "self", "other", "config", "module", "buf")
FUNCS = ("len", "print", "isinstance", "getattr", "join", "append", "format", "open", "range",
         "sorted", "str", "int", "list", "dict", "update", "get", "split", "strip")
NOUNS = (("module", "modules"), ("function", "functions"), ("object", "objects"), ("method", "methods"),
         ("value", "values"), ("argument", "arguments"), ("string", "strings"), ("file", "files"),
         ("class", "classes"), ("attribute", "attributes"), ("statement", "statements"),
         ("name", "names"), ("list", "lists"), ("key", "keys"), ("element", "elements"))
VERBS = (("is", "are"), ("has", "have"), ("was", "were"))
COPY_WORDS = ("the", "of", "and", "to", "is", "in", "a", "for", "be", "that", "are", "with", "as", "an",
              "it", "or", "by", "not", "this", "can", "if", "on", "from", "which", "when", "object",
              "value", "function", "used", "name", "list", "type", "method", "file", "string", "set",
              "new", "return", "called", "module", "number", "default", "class", "data", "argument")
TASKS = ("brackets", "quotes", "agreement", "copy")


@dataclass(frozen=True)
class MinimalPair:
    """A correct and a wrong sentence that differ after a shared prefix."""

    good: str
    bad: str
    task: str = "custom"


@dataclass
class PairBatch:
    """Tokenised pairs: prefix ids (ragged), correct and wrong answer token ids, and their task."""

    prefixes: list[list[int]]
    correct: list[int]
    wrong: list[int]
    tasks: list[str]
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.prefixes)

    def padded(self, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [B, T] right-padded, last [B]: index of each prefix's last token).

        Right padding is safe for a causal model: pad positions come after every real token.
        """
        t = max(len(p) for p in self.prefixes)
        ids_BT = torch.full((len(self), t), pad_id, dtype=torch.long)
        for i, p in enumerate(self.prefixes):
            ids_BT[i, :len(p)] = torch.tensor(p)
        last_B = torch.tensor([len(p) - 1 for p in self.prefixes])
        return ids_BT, last_B

    def select(self, idx: Sequence[int]) -> PairBatch:
        return PairBatch([self.prefixes[i] for i in idx], [self.correct[i] for i in idx],
                         [self.wrong[i] for i in idx], [self.tasks[i] for i in idx])


def tokenize_pairs(tokenizer, pairs: Sequence[MinimalPair], max_answer_tokens: int = 2) -> PairBatch:
    """Split each pair at its longest common token prefix (see module docstring); drop bad pairs."""
    out = PairBatch([], [], [], [])
    for p in pairs:
        g = tokenizer(p.good)["input_ids"]
        b = tokenizer(p.bad)["input_ids"]
        n = 0
        while n < min(len(g), len(b)) and g[n] == b[n]:
            n += 1
        ans_g, ans_b = g[n:], b[n:]
        if (n == 0 or not ans_g or not ans_b or len(ans_g) != len(ans_b)
                or len(ans_g) > max_answer_tokens or ans_g[0] == ans_b[0]):
            out.dropped += 1
            continue
        out.prefixes.append(g[:n])
        out.correct.append(ans_g[0])
        out.wrong.append(ans_b[0])
        out.tasks.append(p.task)
    return out


def _brackets(rng: np.random.Generator) -> MinimalPair:
    f, a, b = rng.choice(FUNCS), rng.choice(IDENTS), rng.choice(IDENTS)
    kind = rng.integers(3)
    if kind == 0:
        return MinimalPair(f"    {a} = {f}({b}, {a})", f"    {a} = {f}({b}, {a}]", "brackets")
    if kind == 1:
        return MinimalPair(f"    {a} = [{b}, {a}]", f"    {a} = [{b}, {a})", "brackets")
    return MinimalPair(f"    if {f}({a}):", f"    if {f}({a}]:", "brackets")


def _quotes(rng: np.random.Generator) -> MinimalPair:
    a, word = rng.choice(IDENTS), rng.choice(COPY_WORDS)
    if rng.integers(2):
        return MinimalPair(f"    {a} = '{word}'\n", f"    {a} = '{word}\"\n", "quotes")
    return MinimalPair(f'    {a} = "{word}"\n', f"    {a} = \"{word}'\n", "quotes")


def _agreement(rng: np.random.Generator) -> MinimalPair:
    sing, plur = NOUNS[rng.integers(len(NOUNS))]
    verb = VERBS[rng.integers(len(VERBS))]
    plural = bool(rng.integers(2))
    subj = plur if plural else sing
    good, bad = (verb[1], verb[0]) if plural else (verb[0], verb[1])
    if rng.integers(2):  # attractor of the other number, as in BLiMP's relational-noun distractors
        other_s, other_p = NOUNS[rng.integers(len(NOUNS))]
        subj = f"{subj} of the {other_s if plural else other_p}"
    return MinimalPair(f"The {subj} {good}", f"The {subj} {bad}", "agreement")


def _copy(rng: np.random.Generator, span: int = 6) -> MinimalPair:
    words = list(rng.choice(COPY_WORDS, size=span, replace=False))
    noise = list(rng.choice(COPY_WORDS, size=3))
    cut = int(rng.integers(2, span))
    wrong = rng.choice([w for w in COPY_WORDS if w not in words])
    head = " " + " ".join(noise + words + words[:cut])
    return MinimalPair(f"{head} {words[cut]}", f"{head} {wrong}", "copy")


_MAKERS = {"brackets": _brackets, "quotes": _quotes, "agreement": _agreement, "copy": _copy}


def make_task(name: str, n: int, seed: int = 0) -> list[MinimalPair]:
    """`n` minimal pairs of a built-in task (see TASKS), deterministic given the seed."""
    if name not in _MAKERS:
        raise ConfigError(f"unknown task {name!r}: choose from {TASKS} or pass a JSONL file")
    rng = np.random.default_rng([seed, TASKS.index(name)])
    return [_MAKERS[name](rng) for _ in range(n)]


def load_pairs(path: str | Path) -> list[MinimalPair]:
    """Pairs from JSONL: {"good", "bad"} (or BLiMP's "sentence_good"/"sentence_bad"), or
    {"prefix", "correct", "wrong"}; an optional "task" names the subtask."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"pairs file {path} does not exist")
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise StoreError(f"{path}:{lineno}: not JSON: {e}") from None
        task = str(row.get("task", path.stem))
        if "prefix" in row:
            try:
                out.append(MinimalPair(row["prefix"] + row["correct"], row["prefix"] + row["wrong"], task))
            except KeyError as e:
                raise StoreError(f"{path}:{lineno}: a 'prefix' row needs 'correct' and 'wrong' ({e})") from None
            continue
        good = row.get("good", row.get("sentence_good"))
        bad = row.get("bad", row.get("sentence_bad"))
        if good is None or bad is None:
            raise StoreError(f"{path}:{lineno}: expected keys good/bad, sentence_good/sentence_bad or "
                             f"prefix/correct/wrong; got {sorted(row)}")
        out.append(MinimalPair(str(good), str(bad), task))
    if not out:
        raise StoreError(f"pairs file {path} holds no pairs")
    return out

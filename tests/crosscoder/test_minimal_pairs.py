"""Minimal-pair tasks: determinism, the contrast each task plants, and the JSONL loader."""

from __future__ import annotations

import json

import pytest

from ontogeny.causal.tasks import TASKS, MinimalPair, load_pairs, make_task
from ontogeny.errors import ConfigError, StoreError


@pytest.mark.parametrize("name", TASKS)
def test_tasks_are_deterministic_minimal_pairs(name):
    a, b = make_task(name, 30, seed=1), make_task(name, 30, seed=1)
    assert a == b and a != make_task(name, 30, seed=2)
    for p in a:
        n = 0
        while p.good[n] == p.bad[n]:
            n += 1
        assert p.good[:n] == p.bad[:n] and p.good != p.bad and p.task == name


def test_task_contrasts():
    for p in make_task("brackets", 40):
        opener = p.good[:len(p.good) - 1] if not p.good.endswith(":") else p.good[:-2]
        assert opener.count("(") + opener.count("[") >= 1
        assert p.good.count("(") == p.good.count(")") and p.good.count("[") == p.good.count("]")
    for p in make_task("agreement", 40):
        verb_good, verb_bad = p.good.split()[-1], p.bad.split()[-1]
        subject = p.good.split()[1]
        plural = subject.endswith("s") and subject not in ("class",)
        assert (verb_good in ("are", "have", "were")) == plural and verb_bad != verb_good, p
    for p in make_task("copy", 40):
        words = p.good.split()
        assert words[-1] in words[:-1]                  # the answer continues the repeat
        assert p.bad.split()[-1] not in words[3:-1]     # the foil is not in the span


def test_load_pairs_formats_and_errors(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"good": "a b", "bad": "a c", "task": "t1"},
        {"sentence_good": "x y", "sentence_bad": "x z"},
        {"prefix": "p", "correct": " q", "wrong": " r"}]) + "\n")
    got = load_pairs(f)
    assert got == [MinimalPair("a b", "a c", "t1"), MinimalPair("x y", "x z", "pairs"),
                   MinimalPair("p q", "p r", "pairs")]
    f.write_text('{"good": "a"}\n')
    with pytest.raises(StoreError, match="pairs.jsonl:1"):
        load_pairs(f)
    with pytest.raises(StoreError, match="does not exist"):
        load_pairs(tmp_path / "none.jsonl")
    with pytest.raises(ConfigError, match="unknown task"):
        make_task("nope", 3)

"""The embedded corpus and its tokenizer: determinism, split hygiene, kinds, planted round trips."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

from ontogeny.errors import ConfigError, SeriesError
from ontogeny.series.corpus import KINDS, CorpusConfig, build_corpus, split_code, synthetic_alphabet
from ontogeny.series.synthetic import SyntheticConfig, synthetic_indices
from ontogeny.series.tokenizer import alphabet_token_ids, load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(0, CorpusConfig.tiny())


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(corpus, vocab_size=512)


def test_corpus_is_deterministic_and_seeded(corpus):
    again = build_corpus(0, CorpusConfig.tiny())
    assert again.hash == corpus.hash
    assert [d.source for d in again.train] == [d.source for d in corpus.train]
    assert build_corpus(1, CorpusConfig.tiny()).hash != corpus.hash


def test_every_kind_present_and_split_disjoint(corpus):
    train_kinds = {d.kind for d in corpus.train}
    assert train_kinds == set(KINDS)
    base = lambda d: d.source.removesuffix("#docstrings")  # noqa: E731 (code + docstrings: one side)
    train_files = {base(d) for d in corpus.train if d.kind != "synthetic"}
    eval_files = {base(d) for d in corpus.eval if d.kind != "synthetic"}
    assert eval_files and not (train_files & eval_files)
    tests = [d for d in corpus.train if d.kind == "tests"]
    assert all("test" in d.source for d in tests)


def test_budgets_bound_each_kind(corpus):
    cfg = CorpusConfig.tiny()
    chars = {k: v["chars"] for k, v in corpus.summary().items()}
    # a budget is passed by at most one file (cut to max_file_chars)
    for kind, budget in (("code", cfg.code_chars), ("tests", cfg.tests_chars)):
        total = chars[f"train/{kind}"] + chars[f"eval/{kind}"]
        assert budget <= total < budget + cfg.max_file_chars


def test_prose_is_the_pydoc_topics():
    from pydoc_data.topics import topics  # the truth, imported independently of the corpus reader

    full = build_corpus(0, CorpusConfig(code_chars=0, tests_chars=0, docstrings_chars=0,
                                        prose_chars=10**9, n_synthetic=0))
    prose = {d.source.split("#")[1]: d.text for d in full.train + full.eval if d.kind == "prose"}
    assert prose == topics


def test_split_code_planted():
    src = ('"""Module doc."""\n'
           "import os  # why os\n"
           "\n"
           "def f(x):\n"
           "    '''Add one.'''\n"
           "    # plain comment\n"
           "    return x + 1  # trailing\n")
    code, notes = split_code(src)
    assert code == "import os  \ndef f(x):\n    return x + 1  \n"
    assert notes.split() == "Module doc. why os Add one. plain comment trailing".split()
    ast.parse(code)  # still Python
    broken = "def (:\n"
    assert split_code(broken) == (broken, "")


def test_synthetic_documents_repeat_a_span(corpus):
    syn = [d for d in corpus.train if d.kind == "synthetic"]
    periods = SyntheticConfig().train_periods
    for d in syn[:20]:
        words = d.text.split()
        assert set(words) <= set(corpus.alphabet)
        assert any(words[s: s + p] == words[s + p: s + 2 * p]
                   for p in periods for s in range(len(words) - 2 * p + 1))


def test_synthetic_indices_never_use_heldout_periods():
    cfg = SyntheticConfig(min_period=3, max_period=9, heldout_periods=(5, 7), min_repeats=2, max_repeats=2)
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = synthetic_indices(rng, cfg, 10_000, 40)  # a huge alphabet makes chance repeats negligible
        found = {p for p in range(2, 21) for s in range(40 - 2 * p + 1)
                 if (x[s: s + p] == x[s + p: s + 2 * p]).all()}
        assert found and found <= set(cfg.train_periods)


def test_alphabet_is_most_frequent_words():
    assert synthetic_alphabet(["bb aa aa cc cc cc", "cc bb dd"], 3) == ["cc", "aa", "bb"]
    with pytest.raises(ConfigError):
        synthetic_alphabet(["aa bb"], 3)


def test_tokenizer_round_trip_and_alphabet(corpus, tokenizer, tmp_path):
    for d in corpus.eval[:10]:
        ids = tokenizer.encode(d.text, add_special_tokens=False)
        assert tokenizer.decode(ids) == d.text
    ids = alphabet_token_ids(tokenizer, corpus.alphabet)
    words = [tokenizer.decode([i]) for i in ids.tolist()]
    assert all(w.startswith(" ") and w[1:] in corpus.alphabet for w in words)
    tokenizer.save_pretrained(str(tmp_path / "tok"))
    other = PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "tok"))
    assert other.get_vocab() == tokenizer.get_vocab() == train_tokenizer(corpus, 512).get_vocab()
    assert load_tokenizer(tmp_path / "tok").encode("def f(x):") == other.encode("def f(x):")


def test_bad_inputs_name_the_thing(tmp_path):
    with pytest.raises(SeriesError, match=str(tmp_path)):
        build_corpus(0, CorpusConfig(stdlib=str(tmp_path)))
    with pytest.raises(SeriesError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text("{not json")
    with pytest.raises(SeriesError, match="bad"):
        load_tokenizer(tmp_path / "bad")
    with pytest.raises(Exception, match="extra"):
        CorpusConfig(code_chars=1, nonsense=2)


def test_stdlib_default_is_this_interpreter():
    from ontogeny.series.corpus import stdlib_root

    assert stdlib_root() == Path(sysconfig.get_paths()["stdlib"])

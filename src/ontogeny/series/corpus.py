"""The embedded corpus: text every Python installation carries, split and tagged by kind.

Sources: the standard library's `.py` files (kinds `code`, `tests`, and `docstrings` — docstrings and
comments cut out of the code files) and `pydoc_data/topics.py` (kind `prose`: one document per help
topic). A share of `synthetic` documents (random word spans repeated at varied periods, see
`ontogeny.series.synthetic`) gives the model an in-context copying signal to learn induction from.

Selection and the train/eval split are pure functions of the file's path and the seed (a SHA-256 rank),
so the same installation and seed always give the same corpus; `Corpus.hash` records its exact content.
"""

from __future__ import annotations

import ast
import collections
import hashlib
import io
import re
import sysconfig
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.errors import ConfigError, SeriesError
from ontogeny.series.synthetic import SyntheticConfig, synthetic_indices
from ontogeny.store.run import text_hash

KINDS = ("code", "prose", "tests", "docstrings", "synthetic")
_WORD_RE = re.compile(r"\b[a-z]{2,12}\b")


class CorpusConfig(BaseModel):
    """How much of each kind to take, and how to split it; character budgets bound the build time."""

    model_config = ConfigDict(extra="forbid")

    code_chars: int = Field(3_000_000, ge=0, description="character budget for code documents")
    tests_chars: int = Field(1_000_000, ge=0, description="character budget for test-suite documents")
    docstrings_chars: int = Field(800_000, ge=0, description="budget for docstring/comment documents")
    prose_chars: int = Field(1_000_000, ge=0, description="budget for pydoc topic documents")
    eval_frac: float = Field(0.05, gt=0.0, lt=0.5, description="share of source files held out for eval")
    n_synthetic: int = Field(400, ge=0, description="synthetic documents stored in the corpus")
    synthetic_len: int = Field(33, ge=8, description="words per stored synthetic document")
    alphabet_size: int = Field(128, ge=8, description="common prose words the synthetic spans draw from")
    max_file_chars: int = Field(60_000, ge=1000, description="longer source files are cut to this length")
    stdlib: str | None = Field(None, description="standard-library folder (default: this interpreter's)")

    @classmethod
    def tiny(cls) -> CorpusConfig:
        """A small corpus (~0.4M characters) for fast tests."""
        return cls(code_chars=200_000, tests_chars=60_000, docstrings_chars=60_000, prose_chars=120_000,
                   n_synthetic=50, eval_frac=0.1)


@dataclass(frozen=True)
class Document:
    """One document: its text, its kind (see KINDS) and where it came from."""

    text: str
    kind: str
    source: str


@dataclass
class Corpus:
    """Train and eval documents, the synthetic alphabet (common prose words), and a content hash."""

    train: list[Document]
    eval: list[Document]
    alphabet: list[str]
    seed: int
    hash: str = field(default="")

    def by_kind(self, split: str = "train") -> dict[str, list[Document]]:
        docs = self.train if split == "train" else self.eval
        out: dict[str, list[Document]] = {k: [] for k in KINDS}
        for d in docs:
            out[d.kind].append(d)
        return out

    def summary(self) -> dict[str, dict[str, int]]:
        """Documents and characters per (split, kind)."""
        out: dict[str, dict[str, int]] = {}
        for split in ("train", "eval"):
            for kind, docs in self.by_kind(split).items():
                out[f"{split}/{kind}"] = {"docs": len(docs), "chars": sum(len(d.text) for d in docs)}
        return out


def stdlib_root(path: str | None = None) -> Path:
    """The standard library folder (from `sysconfig`), checked to hold `pydoc_data/topics.py`."""
    root = Path(path or sysconfig.get_paths()["stdlib"])
    if not (root / "pydoc_data" / "topics.py").is_file():
        raise SeriesError(f"stdlib folder {root} has no pydoc_data/topics.py; pass CorpusConfig.stdlib")
    return root


def _rank(seed: int, name: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, name): orders files and decides the split."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _is_test(rel: Path) -> bool:
    return any(p in ("test", "tests", "idle_test") for p in rel.parts[:-1]) or rel.name.startswith("test_")


def split_code(source: str) -> tuple[str, str]:
    """Cut a module's docstrings and comments out: (code without them, docstrings + comments).

    Docstrings are found with `ast` (first string statement of a module, class or function) and
    comments with `tokenize`; a file that does not parse is returned whole as code.
    """
    try:
        tree = ast.parse(source)
        comments = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
                    if t.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError, ValueError):
        return source, ""
    lines = source.splitlines(keepends=True)
    offsets = np.cumsum([0] + [len(s) for s in lines]).tolist()

    def pos(line: int, col: int) -> int:
        return offsets[line - 1] + len(lines[line - 1].encode()[:col].decode(errors="ignore"))

    spans: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                e = body[0]
                spans.append((pos(e.lineno, e.col_offset), pos(e.end_lineno, e.end_col_offset),
                              "\n" + body[0].value.value.strip() + "\n"))
    for t in comments:
        spans.append((pos(*t.start), pos(*t.end), t.string.lstrip("#").strip()))
    spans.sort()
    code, notes, last = [], [], 0
    for start, end, text in spans:
        if start < last:
            continue
        code.append(source[last:start])
        if text.strip():
            notes.append(text)
        last = end
    code.append(source[last:])
    kept = [ln for ln in "".join(code).splitlines() if ln.strip()]
    return "\n".join(kept) + "\n", "\n".join(notes).strip()


def _prose_documents(root: Path) -> list[tuple[str, str]]:
    """(source, text) per pydoc help topic, read with `ast` so nothing is imported."""
    path = root / "pydoc_data" / "topics.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "topics" for t in node.targets):
            topics = ast.literal_eval(node.value)
            return [(f"pydoc_data/topics.py#{k}", v) for k, v in sorted(topics.items())]
    raise SeriesError(f"{path} has no `topics` dictionary")


def synthetic_alphabet(prose: list[str], size: int) -> list[str]:
    """The `size` most frequent lowercase words of the prose (ties broken alphabetically)."""
    counts = collections.Counter(w for text in prose for w in _WORD_RE.findall(text))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) < size:
        raise ConfigError(f"alphabet_size={size} but the prose has only {len(ranked)} distinct words")
    return [w for w, _ in ranked[:size]]


def _take(items: list[tuple[str, str]], budget: int, seed: int) -> list[tuple[str, str]]:
    """Items in seeded-rank order until the character budget is spent."""
    out, used = [], 0
    for src, text in sorted(items, key=lambda it: _rank(seed, it[0])):
        if used >= budget:
            break
        out.append((src, text))
        used += len(text)
    return out


def build_corpus(seed: int = 0, config: CorpusConfig | None = None) -> Corpus:
    """Build the embedded corpus (see module docstring); deterministic given the installation and seed."""
    cfg = config or CorpusConfig()
    root = stdlib_root(cfg.stdlib)
    files = []
    for f in root.rglob("*.py"):
        rel = f.relative_to(root)
        if "site-packages" not in rel.parts and rel.parts[0] != "pydoc_data":
            files.append((_rank(seed, str(rel)), rel))
    budgets = {"code": cfg.code_chars, "tests": cfg.tests_chars, "docstrings": cfg.docstrings_chars}
    used = dict.fromkeys(budgets, 0)
    chosen: dict[str, list[tuple[str, str]]] = {k: [] for k in (*budgets, "prose")}

    def add(kind: str, src: str, text: str) -> None:
        if text.strip() and used[kind] < budgets[kind]:
            chosen[kind].append((src, text))
            used[kind] += len(text)

    for _, rel in sorted(files):  # seeded-rank order; parse files only while a budget is open
        if all(used[k] >= budgets[k] for k in budgets):
            break
        is_test = _is_test(rel)
        code_full = used["code"] >= budgets["code"] and used["docstrings"] >= budgets["docstrings"]
        if (is_test and used["tests"] >= budgets["tests"]) or (not is_test and code_full):
            continue
        try:
            text = (root / rel).read_text(encoding="utf-8")[: cfg.max_file_chars]
        except (UnicodeDecodeError, OSError):
            continue
        if is_test:
            add("tests", str(rel), text)
        else:
            body, doc = split_code(text)
            add("code", str(rel), body)
            add("docstrings", f"{rel}#docstrings", doc)
    prose = _prose_documents(root)
    chosen["prose"] = _take(prose, cfg.prose_chars, seed)
    train: list[Document] = []
    evals: list[Document] = []
    for kind, items in chosen.items():
        for src, text in sorted(items):
            base = src.split("#docstrings")[0]  # a file's code and its docstrings fall on the same side
            (evals if _rank(seed + 1, base) < cfg.eval_frac else train).append(Document(text, kind, src))
    alphabet = synthetic_alphabet([t for _, t in prose], cfg.alphabet_size)
    syn = SyntheticConfig()
    rng = np.random.default_rng([seed, 7])
    for i in range(cfg.n_synthetic):
        idx = synthetic_indices(rng, syn, cfg.alphabet_size, cfg.synthetic_len)
        doc = Document("".join(" " + alphabet[j] for j in idx), "synthetic", f"synthetic#{i}")
        (evals if i < cfg.n_synthetic * cfg.eval_frac else train).append(doc)
    corpus = Corpus(train, evals, alphabet, seed)
    corpus.hash = corpus_hash(corpus)
    return corpus


def corpus_hash(corpus: Corpus) -> str:
    """SHA-256 over every document's split, kind, source and text, in order."""
    parts: list[str] = []
    for split, docs in (("train", corpus.train), ("eval", corpus.eval)):
        for d in docs:
            parts += [split, d.kind, d.source, d.text]
    return text_hash(*parts, *corpus.alphabet)

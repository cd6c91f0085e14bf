"""One interface over a checkpoint series: local `save_pretrained` folders or Hub revisions.

`load_series("runs/demo/series")` reads the embedded layout (`step_000128/`, `tokenizer/`);
`load_series("EleutherAI/pythia-160m", revisions=["step1000", "step2000"])` reads Hub revisions
(through the Hugging Face cache; offline with `HF_HUB_OFFLINE=1` when the cache holds them).
All checkpoints must share one architecture and one tokenizer; a mismatch raises `SeriesError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ontogeny.errors import SeriesError
from ontogeny.store.layout import STEP_DIR, step_dir  # noqa: F401  (one owner of the layout; re-exported)

POINTER = "source.json"
_STEP_RE = re.compile(r"^step_?(\d+)$")
# Config fields that define an architecture: checkpoints of one series must agree on all of them.
ARCH_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "vocab_size", "rotary_pct", "rotary_emb_base", "rope_parameters", "use_parallel_residual",
               "hidden_act", "max_position_embeddings", "tie_word_embeddings")


def parse_step(name: str) -> int:
    """Training step from a folder or revision name (`step_000128`, `step1000`)."""
    m = _STEP_RE.match(name)
    if not m:
        raise SeriesError(f"cannot read a training step from {name!r}: expected 'step<N>' or 'step_<N>'")
    return int(m.group(1))


@dataclass
class Checkpoint:
    """Where one checkpoint's weights live: a local folder, or a Hub repo at a revision."""

    step: int
    path: str
    revision: str | None = None

    def describe(self) -> str:
        return f"{self.path}@{self.revision}" if self.revision else self.path


@dataclass
class CheckpointSeries:
    """An ordered series of checkpoints of one architecture, with one tokenizer."""

    checkpoints: list[Checkpoint]
    tokenizer: Any
    config: Any
    device: str = "cpu"
    dtype: torch.dtype | None = None
    cache_dir: str | None = None
    _cached: tuple[int, Any] | None = field(default=None, repr=False)

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    @property
    def n_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    def checkpoint(self, step: int) -> Checkpoint:
        for c in self.checkpoints:
            if c.step == step:
                return c
        raise SeriesError(f"step {step} is not in the series (steps: {self.steps})")

    def model(self, step: int):
        """The model at `step`, in eval mode on the series' device (the last one loaded is kept)."""
        if self._cached is not None and self._cached[0] == step:
            return self._cached[1]
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        ck = self.checkpoint(step)
        try:
            kw = {} if self.dtype is None else {"dtype": self.dtype}
            model = AutoModelForCausalLM.from_pretrained(ck.path, revision=ck.revision, cache_dir=self.cache_dir,
                                                         **kw)
        except Exception as e:  # transformers raises many types for a bad folder
            raise SeriesError(f"cannot load checkpoint {ck.describe()}: {e}") from e
        model.eval().to(self.device)
        self._cached = (step, model)
        return model

    def subset(self, steps: Sequence[int]) -> CheckpointSeries:
        """The same series restricted to `steps` (each must exist)."""
        return CheckpointSeries([self.checkpoint(s) for s in steps], self.tokenizer, self.config,
                                self.device, self.dtype, self.cache_dir)


def load_series(source: str | Path, steps: Sequence[int] | None = None,
                revisions: Sequence[str] | None = None, device: str = "cpu",
                dtype: torch.dtype | None = None, cache_dir: str | None = None) -> CheckpointSeries:
    """Open a checkpoint series (see module docstring); `steps` selects a subset of a local series.

    A folder holding `source.json` ({"source": ..., "revisions": [...]}) points at another series (a Hub
    repo, say): a study's `series/` folder is such a pointer when the checkpoints live elsewhere.
    """
    pointer = Path(source) / POINTER
    if revisions is None and pointer.exists():
        ref = json.loads(pointer.read_text())
        revs = ref.get("revisions")
        if revs is not None and steps is not None:
            revs = [r for r in revs if parse_step(r) in set(steps)]
        return load_series(ref["source"], steps=None if revs is not None else steps, revisions=revs,
                           device=device, dtype=dtype, cache_dir=ref.get("cache_dir", cache_dir))
    if revisions is not None:
        checkpoints = [Checkpoint(parse_step(r), str(source), r) for r in revisions]
    else:
        checkpoints = _local_checkpoints(Path(source))
        if steps is not None:
            have = {c.step: c for c in checkpoints}
            missing = [s for s in steps if s not in have]
            if missing:
                raise SeriesError(f"steps {missing} not found in {source} (have {sorted(have)})")
            checkpoints = [have[s] for s in steps]
    if not checkpoints:
        raise SeriesError(f"no checkpoints in {source}")
    checkpoints.sort(key=lambda c: c.step)
    configs = [_load_config(c, cache_dir) for c in checkpoints]
    _check_same_architecture(checkpoints, configs)
    if revisions is None:
        for c in checkpoints:
            _check_weights_readable(Path(c.path))
    tokenizer = _load_tokenizer(Path(source), checkpoints, cache_dir)
    return CheckpointSeries(checkpoints, tokenizer, configs[0], device, dtype, cache_dir)


def _local_checkpoints(root: Path) -> list[Checkpoint]:
    if not root.exists():
        raise SeriesError(f"series folder {root} does not exist")
    if (root / "config.json").exists():  # a single save_pretrained folder is a series of one
        step = parse_step(root.name) if _STEP_RE.match(root.name) else 0
        return [Checkpoint(step, str(root))]
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and _STEP_RE.match(d.name):
            if not (d / "config.json").exists():
                raise SeriesError(f"checkpoint folder {d} has no config.json")
            out.append(Checkpoint(parse_step(d.name), str(d)))
    return out


def _load_config(ck: Checkpoint, cache_dir: str | None):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ck.path, revision=ck.revision, cache_dir=cache_dir)
    except Exception as e:
        raise SeriesError(f"cannot read the config of checkpoint {ck.describe()}: {e}") from e


def _check_same_architecture(checkpoints: list[Checkpoint], configs: list) -> None:
    ref = {f: getattr(configs[0], f, None) for f in ARCH_FIELDS}
    for ck, cfg in zip(checkpoints[1:], configs[1:]):
        diff = {f: (ref[f], getattr(cfg, f, None)) for f in ARCH_FIELDS if getattr(cfg, f, None) != ref[f]}
        if diff:
            raise SeriesError(f"checkpoint {ck.describe()} has a different architecture from "
                              f"{checkpoints[0].describe()}: {diff}")


def _check_weights_readable(folder: Path) -> None:
    """Open every safetensors header in a checkpoint folder, so corrupt files fail here, by name."""
    files = sorted(folder.glob("*.safetensors"))
    if not files and not list(folder.glob("*.bin")):
        raise SeriesError(f"checkpoint folder {folder} has no weights (*.safetensors)")
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                fh.keys()
        except Exception as e:
            raise SeriesError(f"corrupt weights file {f}: {e}") from e


def _load_tokenizer(root: Path, checkpoints: list[Checkpoint], cache_dir: str | None):
    from transformers import AutoTokenizer

    shared = root / "tokenizer"
    candidates = [str(shared)] if shared.is_dir() else []
    per_ckpt = [c for c in checkpoints if c.revision is None and (Path(c.path) / "tokenizer.json").exists()]
    try:
        if candidates:
            tok = AutoTokenizer.from_pretrained(candidates[0])
        else:
            first = checkpoints[0]
            tok = AutoTokenizer.from_pretrained(first.path, revision=first.revision, cache_dir=cache_dir)
    except Exception as e:
        raise SeriesError(f"cannot load a tokenizer for the series at {root}: {e}") from e
    vocab = tok.get_vocab()
    for c in per_ckpt:
        other = AutoTokenizer.from_pretrained(c.path).get_vocab()
        if other != vocab:
            raise SeriesError(f"checkpoint {c.path} has a different tokenizer from the series' "
                              f"({len(other)} vs {len(vocab)} tokens, or different ids)")
    return tok


def series_info(series: CheckpointSeries) -> dict[str, Any]:
    """A JSON-able summary: steps, architecture and tokenizer size."""
    return {"steps": series.steps, "n_layers": series.n_layers, "d_model": series.d_model,
            "n_heads": series.n_heads, "vocab_size": int(series.config.vocab_size),
            "sources": [c.describe() for c in series.checkpoints],
            "architecture": {f: getattr(series.config, f, None) for f in ARCH_FIELDS}}


def write_pointer(folder: str | Path, source: str, revisions: Sequence[str] | None = None,
                  cache_dir: str | None = None) -> None:
    """Make `folder` a pointer to a series that lives elsewhere (a Hub repo or another folder)."""
    from ontogeny.store.run import write_json

    write_json(Path(folder) / POINTER, {"source": str(source), "revisions": list(revisions) if revisions else None,
                                        "cache_dir": cache_dir})


def read_series_json(root: str | Path) -> dict[str, Any]:
    """The embedded series' own record (`series.json`), or {} for a foreign series."""
    p = Path(root) / "series.json"
    return json.loads(p.read_text()) if p.exists() else {}

"""Train the embedded checkpoint series: a small GPT-NeoX (Pythia's architecture) on the embedded corpus.

Writes, under `out_dir`: `tokenizer/`, `step_{step:06d}/` (`save_pretrained`, safetensors) on a
Pythia-like schedule, `losses.parquet` (per checkpoint: train/eval loss, eval loss per kind, induction
scores), `train_log.parquet` (per step) and `series.json` (config, steps, corpus hash, provenance) last.
Every file and checkpoint folder is written atomically; `series.json` marks a finished series.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ontogeny import progress as _progress
from ontogeny.errors import ConfigError, SeriesError, StoreError
from ontogeny.series.corpus import CorpusConfig, build_corpus
from ontogeny.series.data import TokenData
from ontogeny.series.schedule import checkpoint_steps, lr_at
from ontogeny.series.synthetic import SyntheticConfig, induction_metrics
from ontogeny.series.tokenizer import train_tokenizer
from ontogeny.store.run import atomic_path, config_hash, provenance, write_json

Progress = Callable[[int, dict[str, float]], None]


class SeriesConfig(BaseModel):
    """Everything that determines an embedded series (model, data mix, optimiser, schedule)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    vocab_size: int = Field(1024, ge=300, description="BPE vocabulary size (1024: every token's "
                            "embedding and unembedding is trained by the whole-vocabulary synthetic "
                            "rows, so copying works for every token; docs/series.md)")
    n_layers: int = Field(2, ge=1)
    d_model: int = Field(128, ge=8)
    n_heads: int = Field(4, ge=1)
    d_mlp: int = Field(512, ge=1)
    rotary_pct: float = Field(1.0, gt=0.0, le=1.0, description="share of each head's dims rotated "
                              "(1.0: the circuit forms earlier, with a sharper previous-token head, "
                              "than at Pythia's 0.25; docs/series.md)")
    tie_embeddings: bool = Field(False, description="share the input embedding and the unembedding "
                                 "(GPT-2 style; Pythia unties them). Tied, copying a token is W_E^T W_OV W_E "
                                 "for every token at once; untied, each token's unembedding must be learnt "
                                 "to align with its embedding (docs/series.md, recipe experiments)")
    context: int = Field(64, ge=8, description="tokens per training row")
    batch_size: int = Field(8, ge=1, description="natural-text rows per step")
    synthetic_rows: int = Field(64, ge=0, description="synthetic repeated-span rows per step")
    synthetic_context: int = Field(32, ge=4, description="tokens per synthetic row")
    n_steps: int = Field(600, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    warmup: int = Field(50, ge=1)
    final_lr_frac: float = Field(0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    checkpoint_every: int = Field(50, ge=1, description="evenly spaced checkpoints after the log part")
    log_until: int = Field(64, ge=0, description="checkpoints at 0, 1, 2, 4, ... up to this step")
    eval_windows: int = Field(16, ge=1, description="eval windows per document kind")
    induction_seqs: int = Field(32, ge=1, description="repeated sequences per induction period")
    long_periods: tuple[int, ...] = Field((20, 32), description="untrained periods above max_period, "
                                          "scored in the natural context (longer than synthetic rows)")

    @classmethod
    def tiny(cls) -> SeriesConfig:
        """A series that trains in seconds, for tests: tiny corpus, 1 layer, 40 steps.

        It keeps the recipe the tests of every package were written against (alphabet spans, Pythia's
        rotary share 0.25), not the default's whole-vocabulary recipe: it is for plumbing, not circuits.
        """
        return cls(corpus=CorpusConfig.tiny(), vocab_size=512, n_layers=1, d_model=32, n_heads=2,
                   d_mlp=64, rotary_pct=0.25, context=32, batch_size=8, synthetic_rows=8, synthetic_context=16,
                   n_steps=40, warmup=5, checkpoint_every=20, log_until=4, eval_windows=4, induction_seqs=8,
                   long_periods=(10,), synthetic=SyntheticConfig(min_period=2, max_period=6,
                                                                 heldout_periods=(4,), pool="alphabet"))

    @property
    def steps(self) -> list[int]:
        return checkpoint_steps(self.n_steps, self.checkpoint_every, self.log_until)

    @property
    def induction_periods(self) -> list[int]:
        periods = [*self.synthetic.heldout_periods, *self.long_periods]
        too_long = [p for p in periods if 2 * p > self.context]
        if too_long:
            raise ConfigError(f"induction periods {too_long} do not fit twice in context={self.context}")
        return periods


def build_model(cfg: SeriesConfig, vocab_size: int):
    """A freshly initialised GPTNeoXForCausalLM of the configured shape (seeded by `cfg.seed`)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    if cfg.d_model % cfg.n_heads:
        raise ConfigError(f"d_model={cfg.d_model} is not divisible by n_heads={cfg.n_heads}")
    config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
                           num_attention_heads=cfg.n_heads, intermediate_size=cfg.d_mlp,
                           max_position_embeddings=cfg.context, rotary_pct=cfg.rotary_pct,
                           use_parallel_residual=True, tie_word_embeddings=cfg.tie_embeddings,
                           hidden_dropout=0.0,
                           attention_dropout=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(cfg.seed)
    return GPTNeoXForCausalLM(config)


def lm_loss_rows(model, tokens_BT: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row: [B]."""
    logits_BTV = model(input_ids=tokens_BT[:, :-1]).logits
    nll_BT = F.cross_entropy(logits_BTV.transpose(1, 2).float(), tokens_BT[:, 1:], reduction="none")
    return nll_BT.mean(dim=1)


@torch.no_grad()
def evaluate(model, data: TokenData, cfg: SeriesConfig) -> dict[str, float]:
    """Eval loss per document kind (natural kinds averaged as `eval_loss`) and induction scores."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    natural = []
    for kind, win_BT in data.eval_windows.items():
        out[f"eval_{kind}"] = lm_loss_rows(model, win_BT).mean().item()
        if kind != "synthetic":
            natural.append(out[f"eval_{kind}"])
    out["eval_loss"] = sum(natural) / len(natural) if natural else math.nan
    out.update(induction_metrics(model, data.alphabet_ids, data.vocab_ids, cfg.induction_periods,
                                 cfg.induction_seqs, seed=cfg.seed))
    model.train(was_training)
    return out


def train_step(model, opt, data: TokenData, cfg: SeriesConfig, step: int, lr: float,
               ) -> tuple[float, dict[str, float]]:
    """One optimiser step on the batch of `step`; returns (loss, {loss_natural, loss_synthetic, tokens}).

    Every predicted token weighs the same, natural or synthetic:
    loss = (sum of natural token losses + sum of synthetic token losses) / number of predicted tokens.
    """
    for g in opt.param_groups:
        g["lr"] = lr
    natural_BT, synthetic_BS = data.batch(step, cfg.batch_size, cfg.synthetic_rows, cfg.synthetic_context)
    nat_B = lm_loss_rows(model, natural_BT)
    syn_B = lm_loss_rows(model, synthetic_BS) if len(synthetic_BS) else nat_B[:0]
    n_nat, n_syn = nat_B.numel() * cfg.context, syn_B.numel() * cfg.synthetic_context
    loss = (nat_B.sum() * cfg.context + syn_B.sum() * cfg.synthetic_context) / (n_nat + n_syn)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.item(), {"loss_natural": nat_B.mean().item(),
                         "loss_synthetic": syn_B.mean().item() if n_syn else math.nan,
                         "tokens": float(n_nat + n_syn)}


def make_optimizer(model, cfg: SeriesConfig) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.95) with weight decay on matrices only (embeddings included), as in Pythia."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))


def save_checkpoint(model, folder: Path) -> None:
    """`save_pretrained` (safetensors) into `folder`, atomically and without transformers' progress bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with atomic_path(folder) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


def train_series(cfg: SeriesConfig, out_dir: str | Path, progress: Progress | None = None) -> Path:
    """Train the series into `out_dir` (see module docstring); returns `out_dir`.

    `progress(step, metrics)` is called after every step (metrics: loss, lr, tokens/s; plus the eval
    metrics at checkpoint steps). Refuses a folder that holds a finished series (`series.json`); a
    killed run's folder is trained again from step 0, each checkpoint replaced atomically.
    """
    out = Path(out_dir)
    done = out / "series.json"
    if done.exists():
        raise SeriesError(f"{done} exists: {out} already holds a finished series; choose another folder")
    corpus = build_corpus(cfg.seed, cfg.corpus)
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    with atomic_path(out / "tokenizer") as tmp:
        tokenizer.save_pretrained(str(tmp))
    data = TokenData.build(corpus, tokenizer, cfg.synthetic, cfg.context, cfg.eval_windows, cfg.seed)
    model = build_model(cfg, len(tokenizer))
    model.train()
    opt = make_optimizer(model, cfg)
    save_at = set(cfg.steps)
    step_log: list[dict[str, Any]] = []
    ckpt_log: list[dict[str, Any]] = []
    recent: list[float] = []
    t0 = time.perf_counter()
    tokens_seen = 0
    bar = _progress.start("series training", total=cfg.n_steps, unit="steps")
    for step in range(cfg.n_steps + 1):
        if step in save_at:
            metrics = evaluate(model, data, cfg)
            train_loss = sum(recent) / len(recent) if recent else metrics["eval_loss"]
            row = {"step": step, "train_loss": train_loss, "tokens": tokens_seen, **metrics}
            ckpt_log.append(row)
            save_checkpoint(model, out / f"step_{step:06d}")
            _write_table(out / "losses.parquet", ckpt_log)
            recent = []
            if progress:
                progress(step, row)
        if step == cfg.n_steps:
            break
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.n_steps, cfg.final_lr_frac)
        loss, metrics = train_step(model, opt, data, cfg, step, lr)
        tokens_seen += int(metrics.pop("tokens"))
        rec = {"step": step, "loss": loss, "lr": lr, **metrics,
               "tokens_per_s": tokens_seen / (time.perf_counter() - t0)}
        step_log.append(rec)
        recent.append(rec["loss"])
        bar.advance(1, loss=rec["loss"])
        if progress:
            progress(step, rec)
    _write_table(out / "train_log.parquet", step_log)
    inputs = {"corpus": corpus.hash, "config": config_hash(cfg)}
    write_json(done, {"config": cfg.model_dump(mode="json"), "steps": cfg.steps, "corpus_hash": corpus.hash,
                      "corpus_summary": corpus.summary(), "data": data.summary(),
                      "wall_s": time.perf_counter() - t0, "final": ckpt_log[-1],
                      "jump": training_jump([r["loss_synthetic"] for r in step_log]),
                      "provenance": provenance(cfg.model_dump(mode="json"), inputs)})
    return out


def training_jump(loss: list[float], window: int = 25) -> dict[str, float | int | None]:
    """The single change point of a per-step loss curve and how abrupt it is.

    Why: the series must show its capability forming abruptly; the training log's synthetic-row loss
    (mostly second-and-later copies of repeated spans) drops when in-context copying forms.
    The curve is smoothed by a centred moving average of `window` steps; the change point is the split
    that minimises the squared error of a two-level step fit (one-breakpoint least squares, as Dynp with
    one breakpoint); `width` is the number of steps the smoothed curve takes from 10% to 90% of the way
    from the level before the jump to the level after it.
    Returns {step, before, after, drop, width}; `step` None when the curve is shorter than 2 windows.
    """
    y = np.asarray([v for v in loss if math.isfinite(v)], dtype=float)
    if len(y) < 2 * window:
        return {"step": None, "before": None, "after": None, "drop": None, "width": None}
    kernel = np.ones(window) / window
    sm = np.convolve(y, kernel, mode="valid")  # sm[i] averages y[i : i + window]
    n = len(sm)
    c1, c2 = np.cumsum(sm), np.cumsum(sm ** 2)
    k = np.arange(1, n)
    left = c2[k - 1] - c1[k - 1] ** 2 / k
    right = (c2[-1] - c2[k - 1]) - (c1[-1] - c1[k - 1]) ** 2 / (n - k)
    split = int(k[np.argmin(left + right)])
    before, after = float(sm[:split].mean()), float(sm[split:].mean())
    frac = (before - sm) / (before - after) if before != after else np.zeros(n)
    lo = np.nonzero(frac[:split] < 0.1)[0]
    start = int(lo[-1]) + 1 if len(lo) else 0
    hi = np.nonzero(frac[start:] >= 0.9)[0]
    end = start + int(hi[0]) if len(hi) else n - 1
    half = window // 2
    return {"step": split + half, "before": before, "after": after, "drop": before - after,
            "width": end - start, "from_step": start + half, "to_step": end + half}


def read_record(out_dir: str | Path) -> dict[str, Any]:
    """The finished series' `series.json`; SeriesError naming the folder when absent or corrupt."""
    import json

    path = Path(out_dir) / "series.json"
    if not path.is_file():
        raise SeriesError(f"{path} not found: {out_dir} is not a finished series")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SeriesError(f"corrupt series record {path}: {e}") from e


def read_losses(out_dir: str | Path) -> list[dict[str, Any]]:
    """The per-checkpoint log (`losses.parquet`) as a list of rows."""
    from ontogeny.store.tables import read_table

    try:
        return read_table(Path(out_dir) / "losses.parquet")
    except StoreError as e:  # a series' own record: report it as a series problem
        raise SeriesError(str(e)) from e

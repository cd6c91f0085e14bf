"""One emergence run, the unit of work of a sweep: train a tiny model online on a synthetic task and
log its loss curves and attention alignment.

Optimiser and schedule are not given in seed 004; the PROPOSAL here (spec section 1.5) is AdamW
(0.9, 0.999), weight decay 0.01, linear warm-up then a constant rate (so the plateau stays readable),
and a fixed token budget per step (sequences per step = tokens_per_step // seq_len).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ontogeny.emergence.align import alignment
from ontogeny.emergence.models import ModelConfig, build_model, per_position_nll
from ontogeny.emergence.tasks import TaskConfig, make_task
from ontogeny.store.run import config_hash


class TrainConfig(BaseModel):
    """Optimisation of one run (PROPOSAL values; the paper does not state them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(1500, ge=1)
    tokens_per_step: int = Field(2048, ge=2, description="fixed token batch: sequences = this // seq_len")
    lr: float = Field(3e-3, gt=0)
    warmup: int = Field(50, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    log_every: int = Field(10, ge=1, description="evaluate loss and alignment every this many steps")
    eval_seqs: int = Field(256, ge=1, description="held-out sequences for each evaluation")
    stop_when_solved: int = Field(
        5,
        ge=0,
        description="stop after this many evaluations in a row with the "
        "output loss solved_frac of the way from plateau to floor (0 = never)",
    )
    solved_frac: float = Field(0.95, gt=0, le=1)


class RunSpec(BaseModel):
    """Everything that defines one run; its hash is the run id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskConfig
    model: ModelConfig
    train: TrainConfig = TrainConfig()
    seed: int = 0

    @property
    def run_id(self) -> str:
        return config_hash(self.model_dump(mode="json"))[:16]


@torch.no_grad()
def _evaluate(model, smp) -> dict[str, Any]:
    logits, patterns = model(smp.ids_BT, smp.parents_BTT, return_patterns=True)
    nll_BT1 = per_position_nll(logits, smp.ids_BT)
    mask = smp.out_mask_BT1.expand_as(nll_BT1)
    pos_loss = (nll_BT1 * mask).sum(0) / mask.sum(0).clamp_min(1)
    out = {
        "loss": float(nll_BT1.mean()),
        "loss_out": float(nll_BT1[mask].mean()),
        "acc_out": float((logits[:, :-1].argmax(-1) == smp.ids_BT[:, 1:])[mask].float().mean()),
        "pos_loss": pos_loss.tolist(),
    }
    out.update(alignment(patterns, smp.parents_BTT))
    return out


def train_run(spec: RunSpec, on_log: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one model; return its curves (one entry per evaluation) and the task's floors.

    Plain data only (lists, floats), so the result pickles through Ray and writes as JSON.
    """
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    task = make_task(spec.task)
    tc = spec.train
    model = build_model(spec.model, task.vocab_size, task.seq_len, spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(0.9, 0.999), weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, tc.warmup)))
    gen = torch.Generator().manual_seed(spec.seed)
    eval_smp = task.sample(tc.eval_seqs, torch.Generator().manual_seed(10_000_019 + spec.seed))
    n_seqs = max(1, tc.tokens_per_step // task.seq_len)
    curves: dict[str, list] = {
        k: []
        for k in (
            "step",
            "loss",
            "loss_out",
            "acc_out",
            "parent_mass",
            "parent_mass_row",
            "iou",
            "entropy",
            "pos_loss",
            "train_loss",
        )
    }
    train_losses: list[float] = []
    floor = task.floor()
    solved_level = task.plateau_loss - tc.solved_frac * (task.plateau_loss - floor["loss_out"])
    solved_streak = 0
    for step in range(tc.steps + 1):
        if step % tc.log_every == 0 or step == tc.steps:
            model.eval()
            ev = _evaluate(model, eval_smp)
            model.train()
            ev["train_loss"] = sum(train_losses) / len(train_losses) if train_losses else ev["loss"]
            train_losses.clear()
            curves["step"].append(step)
            for k in curves:
                if k != "step":
                    curves[k].append(ev[k])
            if on_log is not None:
                on_log(step, ev)
            solved_streak = solved_streak + 1 if ev["loss_out"] <= solved_level else 0
        if step == tc.steps or (tc.stop_when_solved and solved_streak >= tc.stop_when_solved):
            break
        smp = task.sample(n_seqs, gen)
        logits = model(smp.ids_BT, smp.parents_BTT)
        loss = per_position_nll(logits, smp.ids_BT).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        train_losses.append(loss.item())
    return {
        "run_id": spec.run_id,
        "spec": spec.model_dump(mode="json"),
        "floor": floor["loss"],
        "floor_out": floor["loss_out"],
        "plateau": task.plateau_loss,
        "seq_len": task.seq_len,
        "n_params": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - t0,
        "stopped_at": curves["step"][-1],
        "curves": curves,
    }

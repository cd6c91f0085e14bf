"""Synthetic sparse-attention tasks of seed 004: a linear map over GF(2), in-context cellular automata
and in-context repetition (induction), each a seeded generator with its ground-truth attention and
its Bayes-optimal loss floor.

A task draws its fixed structure (the map A, the rule pool) from `task_seed` once; `sample(n, gen)`
draws fresh sequences every call (online training, no epochs). Every sample carries:

- `ids_BT`: token ids;
- `out_mask_BT1`: the prediction positions t (predicting ids[t+1]) that the task is about;
- `parents_BTT`: which key positions the query at t should attend to (the "true" attention map);
- `logp_BT1`: log-probability of the next token under the Bayes-optimal predictor, so that the loss
  floor is -mean(logp) (exact for the linear map, exact-per-sequence then Monte Carlo for the others).

Leading dimensions of 1 mean "the same for every sequence" (linear map, CA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ontogeny.errors import ConfigError


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinearMapConfig(_Cfg):
    """x1 = A x0 mod 2 with A in {0,1}^{S x S}, s ones per row; sequence x0 ++ x1 (2S binary tokens)."""

    kind: Literal["linear_map"] = "linear_map"
    S: int = Field(8, ge=2, description="state size (cells per state)")
    s: int = Field(2, ge=1, description="ones per row of A (row sparsity)")
    task_seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.s > self.S:
            raise ConfigError(f"linear_map: s={self.s} must be <= S={self.S}")
        return self


class CAConfig(_Cfg):
    """Random C-colour cellular-automaton rules (window 3, periodic), one drawn per sequence from a pool
    of n_rules; T states of S cells flattened (S*T tokens). The rule must be inferred in context."""

    kind: Literal["ca"] = "ca"
    S: int = Field(8, ge=3)
    T: int = Field(4, ge=2, description="states per trajectory")
    C: int = Field(4, ge=2, description="colours (vocabulary)")
    n_rules: int = Field(16, ge=1, description="size of the rule pool, drawn once from task_seed")
    k: int = Field(1, ge=1, description="rule applications per recorded transition (window 2k+1)")
    task_seed: int = 0


class InductionConfig(_Cfg):
    """A random prefix of P tokens (P uniform in [p_min, p_max]) repeated until T tokens: the copy of
    token t+1-P is predictable from the induction pattern (attend to the token after the previous
    occurrence of the current one)."""

    kind: Literal["induction"] = "induction"
    vocab: int = Field(16, ge=2)
    T: int = Field(24, ge=4, description="sequence length")
    p_min: int = Field(4, ge=2)
    p_max: int = Field(8, ge=2)
    task_seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if not self.p_min <= self.p_max < self.T:
            raise ConfigError(f"induction: need p_min <= p_max < T, got {self.p_min}, {self.p_max}, {self.T}")
        return self


TaskConfig = Annotated[Union[LinearMapConfig, CAConfig, InductionConfig], Field(discriminator="kind")]


@dataclass
class Sample:
    """One batch of sequences with the task's truths (see module docstring for shapes)."""

    ids_BT: torch.Tensor
    out_mask_BT1: torch.Tensor
    parents_BTT: torch.Tensor
    logp_BT1: torch.Tensor


class Task:
    """Base: fixed structure from task_seed, fresh sequences from a torch.Generator."""

    vocab_size: int
    seq_len: int
    plateau_loss: float  # loss of the marginal-only predictor (uniform over the vocabulary)

    def sample(self, n: int, gen: torch.Generator) -> Sample:
        raise NotImplementedError

    def floor(self, n: int = 4096, seed: int = 12345) -> dict[str, float]:
        """Bayes-optimal loss over all predictions (`loss`) and over the task's outputs (`loss_out`)."""
        smp = self.sample(n, torch.Generator().manual_seed(seed))
        nll = -smp.logp_BT1
        mask = smp.out_mask_BT1.expand_as(nll)
        return {"loss": float(nll.mean()), "loss_out": float(nll[mask].mean())}


class LinearMapTask(Task):
    """Generalised sparse parity (seed 004, section 3): each bit of x1 is the XOR of s bits of x0."""

    def __init__(self, cfg: LinearMapConfig):
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.task_seed)
        A_SS = torch.zeros(cfg.S, cfg.S, dtype=torch.long)
        for i in range(cfg.S):
            A_SS[i, torch.randperm(cfg.S, generator=g)[: cfg.s]] = 1
        self.A_SS = A_SS
        self.vocab_size, self.seq_len, self.plateau_loss = 2, 2 * cfg.S, math.log(2)
        S, T = cfg.S, 2 * cfg.S
        self._out = torch.zeros(1, T - 1, dtype=torch.bool)
        self._out[0, S - 1 :] = True
        self._parents = torch.zeros(1, T, T, dtype=torch.bool)
        self._parents[0, S - 1 : T - 1, :S] = A_SS.bool()  # query S-1+i predicts x1[i]
        self._logp = torch.where(self._out, 0.0, -math.log(2)).float()

    def analytic_floor(self) -> float:
        """ln2 (S-1)/(2S-1): S-1 of the 2S-1 predictions are fair coins, the rest deterministic."""
        return math.log(2) * (self.cfg.S - 1) / (2 * self.cfg.S - 1)

    def sample(self, n: int, gen: torch.Generator) -> Sample:
        x0_BS = torch.randint(0, 2, (n, self.cfg.S), generator=gen)
        x1_BS = (x0_BS @ self.A_SS.T) % 2
        ids = torch.cat([x0_BS, x1_BS], 1)
        return Sample(ids, self._out, self._parents, self._logp.expand(n, -1))


class CATask(Task):
    """In-context cellular automata (seed 004, section 3.3): infer which pool rule drives the states."""

    def __init__(self, cfg: CAConfig):
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.task_seed)
        C, S, T = cfg.C, cfg.S, cfg.T
        self.rules_RK = torch.randint(0, C, (cfg.n_rules, C**3), generator=g)
        self.vocab_size, self.seq_len, self.plateau_loss = C, S * T, math.log(C)
        L = S * T
        self._out = torch.zeros(1, L - 1, dtype=torch.bool)
        self._out[0, (T - 1) * S - 1 :] = True  # predictions of the final state
        par = torch.zeros(1, L, L, dtype=torch.bool)
        for t in range(1, T):
            for i in range(S):
                q = t * S + i - 1  # the query that predicts x_t[i]
                for d in range(-cfg.k, cfg.k + 1):
                    par[0, q, (t - 1) * S + (i + d) % S] = True
        self._parents = par

    def step(self, x_BS: torch.Tensor, rule_BK: torch.Tensor) -> torch.Tensor:
        """One recorded transition: apply each sequence's rule k times with periodic boundaries."""
        C = self.cfg.C
        for _ in range(self.cfg.k):
            idx = x_BS.roll(1, 1) * C * C + x_BS * C + x_BS.roll(-1, 1)
            x_BS = rule_BK.gather(1, idx)
        return x_BS

    def sample(self, n: int, gen: torch.Generator) -> Sample:
        cfg = self.cfg
        r_B = torch.randint(0, cfg.n_rules, (n,), generator=gen)
        x = torch.randint(0, cfg.C, (n, cfg.S), generator=gen)
        states = [x]
        for _ in range(cfg.T - 1):
            x = self.step(x, self.rules_RK[r_B])
            states.append(x)
        ids = torch.stack(states, 1).reshape(n, cfg.S * cfg.T)
        return Sample(ids, self._out, self._parents, self._bayes_logp(ids))

    def _bayes_logp(self, ids_BL: torch.Tensor) -> torch.Tensor:
        """Exact posterior predictive over the rule pool: p(next) = share of still-consistent rules
        (uniform prior) that emit it; the first state is uniform. Cost O(B * R * S * T)."""
        cfg = self.cfg
        n, S, T, C = ids_BL.shape[0], cfg.S, cfg.T, cfg.C
        R = cfg.n_rules
        states = ids_BL.view(n, T, S)
        # each pool rule's prediction of every cell of every later state, given the previous state
        prev_NS = states[:, :-1].reshape(n * (T - 1), S)
        pred_BRTS = torch.stack(
            [
                self.step(prev_NS, self.rules_RK[r].expand(n * (T - 1), -1)).view(n, T - 1, S)
                for r in range(R)
            ],
            1,
        )
        logp = torch.full((n, S * T - 1), -math.log(C))
        alive_BR = torch.ones(n, R, dtype=torch.bool)
        for t in range(1, T):
            for i in range(S):
                hit_BR = pred_BRTS[:, :, t - 1, i] == states[:, t, i, None]
                p = (alive_BR & hit_BR).sum(1).float() / alive_BR.sum(1).float()
                logp[:, t * S + i - 1] = p.log()
                alive_BR &= hit_BR
        return logp


class InductionTask(Task):
    """In-context repetition: a random prefix of unknown period P, repeated (induction heads)."""

    def __init__(self, cfg: InductionConfig):
        self.cfg = cfg
        self.vocab_size, self.seq_len, self.plateau_loss = cfg.vocab, cfg.T, math.log(cfg.vocab)

    def sample(self, n: int, gen: torch.Generator) -> Sample:
        cfg = self.cfg
        T = cfg.T
        P_B = torch.randint(cfg.p_min, cfg.p_max + 1, (n,), generator=gen)
        base = torch.randint(0, cfg.vocab, (n, T), generator=gen)
        pos_T = torch.arange(T)
        ids = base.gather(1, pos_T[None, :] % P_B[:, None])
        q_T1 = torch.arange(T - 1)
        out = q_T1[None, :] >= P_B[:, None]  # query t >= P predicts x[t+1] = x[t+1-P]
        par = torch.zeros(n, T, T, dtype=torch.bool)
        b, q = out.nonzero(as_tuple=True)
        par[b, q, q + 1 - P_B[b]] = True
        return Sample(ids, out, par, self._bayes_logp(ids))

    def _bayes_logp(self, ids_BT: torch.Tensor) -> torch.Tensor:
        """Exact posterior predictive over the period P (uniform prior, uniform tokens):
        w_P proportional to V^-min(P, t+1) when x_<=t is P-periodic; P <= t+1 copies x[t+1-P]."""
        cfg = self.cfg
        n, T, V = ids_BT.shape[0], cfg.T, cfg.vocab
        periods = list(range(cfg.p_min, cfg.p_max + 1))
        logp = torch.empty(n, T - 1)
        for t in range(T - 1):
            logw, pnext = [], []
            for P in periods:
                j = torch.arange(P, max(P, t + 1))
                consistent = (
                    (ids_BT[:, j] == ids_BT[:, j - P]).all(1) if len(j) else torch.ones(n, dtype=torch.bool)
                )
                logw.append(torch.where(consistent, -min(P, t + 1) * math.log(V), -math.inf))
                if P <= t + 1:  # x[t+1] = x[t+1-P] is already a copy
                    pnext.append((ids_BT[:, t + 1] == ids_BT[:, t + 1 - P]).float())
                else:
                    pnext.append(torch.full((n,), 1.0 / V))
            w = torch.softmax(torch.stack(logw, 1), 1)
            logp[:, t] = (w * torch.stack(pnext, 1)).sum(1).log()
        return logp


def make_task(cfg: LinearMapConfig | CAConfig | InductionConfig) -> Task:
    """The task generator for a config (dispatch on `kind`)."""
    return {"linear_map": LinearMapTask, "ca": CATask, "induction": InductionTask}[cfg.kind](cfg)

"""`batchtopk`: keep the k*B largest ReLU(pre) of the batch (Bussmann et al. 2024, arXiv 2412.06410).

Inference uses one threshold theta, an EMA (decay `threshold_beta`) of the smallest kept activation per
batch from step `threshold_start_step`: a = pre * 1[pre > theta]. Saved as SAELens saves BatchTopK, as a
"jumprelu" with a per-latent `threshold`; before theta exists inference is batch top-k, and the folder
says so (metadata `batchtopk_threshold_learnt: false`) so that loading it gives the same codes.
"""

from __future__ import annotations

from typing import Any

import torch

from ontogeny.dictionaries import kernels
from ontogeny.dictionaries.rules.base import Rule
from ontogeny.dictionaries.rules.params import AuxKParams, KParams, ThresholdParams
from ontogeny.dictionaries.sparse import flat_above
from ontogeny.errors import ConfigError


class BatchTopKRule(Rule):
    """Batch top-k while training (and before a threshold exists); a global threshold afterwards."""

    name = "batchtopk"
    params = (KParams, AuxKParams, ThresholdParams)
    uses_aux_k = True
    ranks_latents = True
    saelens_architecture = "jumprelu"
    saelens_reads = ("batchtopk",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("theta", torch.tensor(-1.0))
        self._gen: torch.Generator | None = None

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.k > cfg.d_sae:
            raise ConfigError(f"k={cfg.k} exceeds d_sae={cfg.d_sae}")

    def forward(self, pre_BF):
        if not self.training and self.theta >= 0:
            return pre_BF * (pre_BF > self.theta)
        flat = torch.relu(pre_BF).reshape(-1)
        n = min(self.cfg.k * pre_BF.shape[0], flat.numel())
        vals, idx = flat.topk(n, sorted=False)
        return torch.zeros_like(flat).scatter(0, idx, vals).view_as(pre_BF)

    def select(self, pre_BF):
        if not self.training and self.theta >= 0:
            return flat_above(pre_BF, self.theta)
        n = min(self.cfg.k * pre_BF.shape[0], pre_BF.numel())
        if kernels.available(pre_BF):  # compiled selection (kernels.py): the same entries
            return kernels.batch_topk_flat(pre_BF, n)
        return batch_topk_indices(pre_BF.detach().reshape(-1), n, self._gen)

    @torch.no_grad()
    def update(self, codes_N, step):
        pos = codes_N[codes_N > 0]
        if step < self.cfg.threshold_start_step or pos.numel() == 0:
            return
        low = pos.min()
        if self.theta < 0:
            self.theta.copy_(low)
        else:
            self.theta.mul_(self.cfg.threshold_beta).add_((1 - self.cfg.threshold_beta) * low)

    @property
    def threshold_F(self):
        if self.theta < 0:
            return None
        return self.theta.expand(self.cfg.d_sae).clone()

    def load_threshold(self, threshold_F):
        self.theta.copy_(threshold_F.float().mean())

    # SAELens layout: a JumpReLU with one shared threshold (zeros, and a flag, before theta exists)
    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        th = self.threshold_F
        return {"threshold": th if th is not None else torch.zeros(self.cfg.d_sae)}

    def saelens_metadata(self) -> dict[str, Any]:
        return {"batchtopk_threshold_learnt": bool(self.theta >= 0)}

    @classmethod
    def saelens_tensor_shapes(cls, cfg) -> dict[str, tuple[int, ...]]:
        return {"threshold": (cfg.d_sae,)}

    @classmethod
    def config_from_saelens(cls, raw: dict[str, Any], known: dict[str, Any] | None = None) -> dict[str, Any]:
        if "k" in raw:
            return {"k": int(round(float(raw["k"])))}
        return {} if "k" in (known or {}) else {"k": 1}  # k matters only before a threshold exists

    def load_saelens(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        if metadata.get("batchtopk_threshold_learnt", True) and "threshold" in tensors:
            self.load_threshold(tensors["threshold"])
        else:
            self.theta.fill_(-1.0)


def batch_topk_indices(flat_M: torch.Tensor, n: int, generator: torch.Generator | None = None,
                       n_sample: int | None = None, margin: float = 1.5) -> torch.Tensor:
    """Ascending flat indices of the n largest entries (exact), without a top-n over all M entries.

    A random sample's quantile gives a threshold t with about `margin * n` entries >= t (the candidates,
    found in ascending order); the n-th largest candidate v is the n-th largest entry, so the result is
    every candidate > v and then the first candidates == v until there are n. No sort: the candidates are
    already ascending. Falls back to a full top-n when fewer than n pass. `n_sample`: sample size (None:
    about 1,024 sampled entries above t, 8,192 to 65,536 samples).
    """
    M = flat_M.numel()
    if n_sample is None:
        n_sample = min(1 << 16, max(1 << 13, 1024 * M // max(n, 1)))
    if n * 8 >= M or M <= n_sample:
        return flat_M.topk(n, sorted=False).indices.sort().values
    if generator is None or generator.device != flat_M.device:
        generator = torch.Generator(device=flat_M.device).manual_seed(0)
    sample = flat_M.index_select(0, torch.randint(0, M, (n_sample,), generator=generator, device=flat_M.device))
    q = max(0, n_sample - int(n_sample * margin * n / M) - 1)
    t = sample.kthvalue(q + 1).values
    cand = torch.nonzero(flat_M >= t, as_tuple=True)[0]
    c = cand.numel()
    if c < n:
        return flat_M.topk(n, sorted=False).indices.sort().values
    vals = flat_M.index_select(0, cand)
    v = vals.kthvalue(c - n + 1).values  # the n-th largest
    keep = vals > v
    tied = vals == v
    keep |= tied & (torch.cumsum(tied, 0) <= n - keep.sum())
    return cand[keep]

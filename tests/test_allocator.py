"""The allocator setting (ontogeny/allocator.py): applied at import on glibc, off with its environment
variable, and it does what it is for: freed tensors' memory is reused instead of faulted in afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ontogeny import allocator

# steady-state TopK training steps at the demo's shape (batch 4,096, d_in 128, 512 latents): without the
# setting glibc gives the freed [4096, 512] intermediates back each step and faults them in again
WORKLOAD = """
import json, resource
import ontogeny, torch
from ontogeny import allocator
from ontogeny.dictionaries import Dictionary, DictionaryConfig, TrainConfig, Trainer
torch.set_num_threads(1)
torch.manual_seed(0)
model = Dictionary(DictionaryConfig(rule="topk", d_in=128, d_sae=512, k=16))
trainer = Trainer(model, TrainConfig(lr=1e-3), total_steps=None)
xs = [torch.randn(4096, 128) for _ in range(4)]
for i in range(6):
    trainer.step(xs[i % 4])
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(8):
    trainer.step(xs[i % 4])
print(json.dumps({"applied": allocator.applied(),
                  "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 8}))
"""


def _run(disable: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != allocator.ENV_DISABLE}
    env["ONTOGENY_NO_KERNELS"] = "1"  # the torch selection path: no kernel compile in a fresh clone
    if disable:
        env[allocator.ENV_DISABLE] = "1"
    out = subprocess.run([sys.executable, "-c", WORKLOAD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="the setting exists only under glibc")
def test_setting_reuses_freed_memory_and_is_switched_off_by_its_variable():
    on, off = _run(disable=False), _run(disable=True)
    assert on["applied"] is True and off["applied"] is False
    assert off["faults_per_step"] >= 256, off  # at least 1 MiB of fresh pages per step without it
    assert on["faults_per_step"] < 0.1 * off["faults_per_step"], (on, off)


def test_keep_freed_memory_is_idempotent():
    first = allocator.applied()
    assert allocator.keep_freed_memory() is first
    assert allocator.keep_freed_memory() is first

"""Emergence-lab throughput: training steps per second of one unit (transformer and mixer, S=8), and a
4-unit sweep run in process vs as Ray tasks on a local 2-CPU instance (baseline: in process, same run).

    .venv/bin/python benchmarks/emergence_sweep.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit  # noqa: E402

from ontogeny.compute import map_units  # noqa: E402
from ontogeny.emergence.models import ModelConfig  # noqa: E402
from ontogeny.emergence.sweep import Grid, SweepConfig, expand, run_unit  # noqa: E402
from ontogeny.emergence.tasks import LinearMapConfig  # noqa: E402
from ontogeny.emergence.train import RunSpec, TrainConfig, train_run  # noqa: E402


def steps_per_second(arch: str, steps: int = 200) -> dict[str, float]:
    spec = RunSpec(
        task=LinearMapConfig(S=8, s=2),
        model=ModelConfig(arch=arch),
        train=TrainConfig(steps=steps, log_every=20, stop_when_solved=0),
    )
    c0, t0 = time.process_time(), time.perf_counter()
    train_run(spec)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"steps_per_s_cpu": steps / cpu, "steps_per_s_wall": steps / wall}


def sweep_wall(backend: str, out: Path) -> float:
    cfg = SweepConfig(
        grids=[Grid(S=[6], s=[2], seeds=[0, 1], arch=["transformer", "mixer"])],
        train=TrainConfig(steps=300, log_every=20, stop_when_solved=0),
    )
    items = [(spec.model_dump(mode="json"), str(out), False) for _, spec in expand(cfg)]
    t0 = time.perf_counter()
    map_units(run_unit, items, backend=backend)
    return time.perf_counter() - t0


def main() -> None:
    torch.set_num_threads(1)
    result: dict = {
        "note": "measured on a 2-core machine shared with ~6 other engineers' jobs; wall times "
        "are inflated and noisy, CPU-time rates are the steadier figure"
    }
    for arch in ("transformer", "mixer"):
        result[arch] = steps_per_second(arch)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    result["ray_init_s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        result["sweep4_process_s"] = sweep_wall("process", Path(d) / "process")
        result["sweep4_ray2_s"] = sweep_wall("ray", Path(d) / "ray")
    ray.shutdown()
    result["ray_speedup_vs_process"] = result["sweep4_process_s"] / result["sweep4_ray2_s"]
    emit("emergence_sweep", result)


if __name__ == "__main__":
    main()

"""Where units of work run: in this process, or as Ray tasks on a local or remote cluster.

A unit is a plain function of its arguments (it knows nothing of Ray or the pipeline); both backends
return results in the order of `items`, so a study gives identical results either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from ontogeny.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

Backend = Literal["process", "ray"]


def map_units(fn: Callable[[T], R], items: Sequence[T], backend: Backend = "process",
              address: str | None = None, num_cpus_per_unit: float = 1.0,
              on_done: Callable[[int, R], Any] | None = None) -> list[R]:
    """Apply `fn` to each item and return the results in order.

    `on_done(index, result)` is called as each unit finishes (progress bars, incremental writes).
    With `backend="ray"`, `address` is passed to `ray.init` (None starts a local instance).
    """
    if backend == "process":
        out = []
        for i, item in enumerate(items):
            r = fn(item)
            if on_done is not None:
                on_done(i, r)
            out.append(r)
        return out
    if backend == "ray":
        return _map_ray(fn, items, address, num_cpus_per_unit, on_done)
    raise ConfigError(f"unknown compute backend {backend!r}: use 'process' or 'ray'")


def _map_ray(fn, items, address, num_cpus_per_unit, on_done):
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("backend 'ray' needs ray: pip install 'ontogeny[ray]'") from e
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    remote = ray.remote(num_cpus=num_cpus_per_unit)(fn)
    refs = [remote.remote(item) for item in items]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = index[ref]
            results[i] = ray.get(ref)
            if on_done is not None:
                on_done(i, results[i])
    return results

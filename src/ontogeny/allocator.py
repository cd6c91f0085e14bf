"""glibc's malloc, told to keep the memory torch frees for reuse: a CPU speed setting, applied once when
`ontogeny` is imported.

Why: torch allocates every intermediate tensor afresh. glibc serves a block of 128 KiB or more with its
own `mmap` and unmaps it when it is freed; its threshold only adapts to the sizes it has already seen
freed, and it trims freed memory off the top of its heap. So the next tensor touches fresh pages, and
every page costs a fault (dear in a virtual machine). Measured on this project's 2-core CPU machine, one
step of the demo's streamed dictionary stage (a forward of 4,096 tokens through the embedded model and a
TopK step of each of its two dictionaries) made ~9,000 page faults and took 167-190 ms; with these
settings it made 1 and took 128-134 ms, at the same peak resident memory (`docs/dictionaries.md`,
"Allocator"). PyTorch's CPU performance guide recommends preloading jemalloc or tcmalloc for the same
reason; three of glibc's own parameters get the effect without another library or an `LD_PRELOAD`.

Settings (`mallopt`):
  M_MMAP_THRESHOLD  32 MiB (glibc's largest): smaller blocks come from the heap, whose freed blocks are
                    reused; larger ones are still mapped and unmapped each time
  M_TRIM_THRESHOLD  1 GiB: up to that much freed memory at the top of the heap is kept, not returned
  M_TOP_PAD         64 MiB: the heap grows in large steps (address space only; pages are touched on use)

The cost is that memory a process has freed is not handed back to the system while it runs (its peak is
unchanged). Not applied off glibc (macOS, Windows, musl), or when `ONTOGENY_NO_MALLOC_TUNING=1` is set
before `ontogeny` is imported. Results never depend on it: only where freed memory goes.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_DISABLE = "ONTOGENY_NO_MALLOC_TUNING"

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}

_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has `gnu_get_libc_version`), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (AttributeError off glibc)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Apply SETTINGS once per process; True when glibc accepted every one of them."""
    global _applied
    if _applied is not None:
        return _applied
    libc = None if os.environ.get(ENV_DISABLE, "") not in ("", "0") else _glibc()
    _applied = libc is not None and all(libc.mallopt(param, value) == 1 for param, value in SETTINGS.items())
    return _applied


def applied() -> bool:
    """Whether this process runs with SETTINGS (False before `keep_freed_memory` was called)."""
    return bool(_applied)

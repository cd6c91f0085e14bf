"""One process per run directory: an OS file lock held for the life of the process that runs a study.

Why: two studies in one run directory delete each other's in-flight temporaries and interleave
manifest entries. `flock` is released by the kernel when its holder dies (even by SIGKILL), so a lock
left by a killed process is simply taken over; the pid written into the file names the live holder.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ontogeny.errors import StoreError
from ontogeny.store.layout import lock_path


class RunLock:
    """`with RunLock(run_dir):` — hold `<run>/.lock` exclusively, or raise StoreError naming the holder's pid."""

    def __init__(self, run_dir: str | Path):
        self.path = lock_path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise StoreError(f"cannot write to the run directory {self.path.parent}: permission denied "
                             f"(choose a writable --run-dir)") from None
        except OSError as e:
            raise StoreError(f"cannot create the lock {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoreError(f"the run directory {self.path.parent} is in use by process {holder} "
                                 f"(lock {self.path}); wait for it to finish or stop it") from None
            raise StoreError(f"cannot lock {self.path}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

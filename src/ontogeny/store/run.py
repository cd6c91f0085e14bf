"""Run-directory primitives: atomic writes, content hashes and provenance stamps.

Every artifact is written under a temporary name and renamed into place, so a killed process never
leaves a half-written file and a rerun can trust that anything present is complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ontogeny.errors import StoreError
from ontogeny.store import faults


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    Works for files and directories alike: write to the yielded path, and on success it replaces
    `final` atomically (a directory is swapped in by rename). On error the temporary is removed.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as e:
        raise write_error(final, e) or e from None
    target = tmp / "payload"
    try:
        try:
            yield target
            faults.before_commit()  # test-only kill point (inert unless ONTOGENY_TEST_KILL_AT is set)
            if final.is_dir() and not final.is_symlink():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                final.rename(old)
                faults.inside_swap()
                target.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(target, final)
        except OSError as e:
            err = write_error(final, e, tmp)
            if err is None:
                raise
            raise err from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def write_error(final: Path, e: OSError, tmp: Path | None = None) -> StoreError | None:
    """A failed write of `final` as one StoreError naming it (disk full, permission, read-only file system);
    None for other errors, and for a refusal to read a file outside the write (an input's own error).

    Why: the OS names the temporary (`.x.parquet.k3j2.tmp/payload`) or nothing at all (a full disk
    fails `write()`); the user needs the artifact and what to do. pyarrow reports a full disk as an
    OSError without errno, "[errno 28] No space left on device" in its text.
    """
    text = str(e).lower()
    if e.errno in _NO_SPACE or f"[errno {errno.ENOSPC}]" in text or "no space left on device" in text:
        return StoreError(f"cannot write {final}: no space left on device (free some space, then rerun the "
                          f"same command: finished units are kept)")
    if e.errno in _DENIED:
        where = Path(e.filename) if e.filename else None
        if where is not None and tmp is not None and not (where == final or where.is_relative_to(tmp)
                                                           or where.parent == final.parent):
            return None
        why = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        return StoreError(f"cannot write {final}: {why} (make the run directory writable or choose another)")
    return None


def remove_stale_temporaries(root: str | Path) -> int:
    """Delete what a killed writer left behind; returns how many were removed.

    Temporaries (`.<name>.*.tmp`) of writes in flight, and folders moved aside (`.<name>.old-<pid>`) by a
    directory swap that was killed before it finished. The swapped-out folder is not restored: the unit
    that wrote it has no manifest entry for the new one, so the pipeline recomputes it.
    """
    n = 0
    for pattern in (".*.tmp", ".*.old-*"):
        for p in Path(root).rglob(pattern):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, with sorted keys so equal content gives equal bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, or of a directory's files (names and bytes, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def text_hash(*parts: str | bytes) -> str:
    """SHA-256 over a sequence of strings or bytes (each length-prefixed, so splits matter)."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def tensor_hash(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (on CPU, contiguous)."""
    t = t.detach().cpu().contiguous()
    return text_hash(str(t.dtype), str(tuple(t.shape)), t.view(torch.uint8).numpy().tobytes()
                     if t.numel() else b"")


def config_hash(obj: Any) -> str:
    """Stable hash of a JSON-able config (pydantic models included)."""
    return text_hash(json.dumps(obj, sort_keys=True, default=_json_default))


def versions() -> dict[str, str]:
    """Versions of ontogeny and the libraries whose numerics it depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("ontogeny", "torch", "transformers", "tokenizers", "safetensors", "numpy", "scipy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def provenance(config: Any = None, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """The stamp every artifact carries: its config, library versions and input hashes."""
    return {"config": config, "versions": versions(), "inputs": dict(inputs or {})}

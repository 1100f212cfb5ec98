"""Running out of disk space: one line naming the filesystem, the path and the bytes needed (#23).

Writers fail on a full disk in ways that name neither (torch's zip writer: ``RuntimeError: [enforce
fail at inline_container.cc:672] . unexpected pos ...``; safetensors: ``SafetensorError: ... No
space left on device``; a memory-mapped file even dies of SIGBUS). Every place vltool writes
something large (a checkpoint, the final artifact, the feature cache) therefore goes through
``guard``: when the write fails and the filesystem is (nearly) full, or the error is ENOSPC /
EDQUOT, the partial files are removed and ``DiskFull`` (exit code 4) names the mount point, the
path and the bytes the write needed. ``short_of_space`` is the check before training starts.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vltool.errors import DiskFull, VltoolError

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXT = ("no space left on device", "disk quota exceeded")
# Below this much free space a failed write is taken to be the disk filling up: torch's zip
# writer reports a short write only as "unexpected pos", without the errno.
NEARLY_FULL = 1 << 20


def existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a folder not created yet lives on its parent's filesystem)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path``."""
    path = existing(path).resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on ``path``'s filesystem."""
    stats = os.statvfs(existing(path))
    return stats.f_bavail * stats.f_frsize


def same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(existing(a)).st_dev == os.stat(existing(b)).st_dev


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or anything in its cause/context chain) says the disk or quota is full."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if any(text in str(err).lower() for text in _FULL_TEXT):
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full(path: Path, needed: int | None, what: str, kept: str = "") -> DiskFull:
    """The one-line error for a write of ``what`` at ``path`` that ran out of space."""
    need = f"needed {human(needed)} ({needed} bytes)" if needed else "needed more space"
    line = (f"out of disk space on {mount_point(path)} writing {what} {path}: {need}, "
            f"{human(free_bytes(path))} free")
    return DiskFull(line + (f"; {kept}" if kept else ""))


def size_of(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


@contextmanager
def guard(path: Path, needed: int | Callable[[], int] | None, what: str, cleanup: Path | None = None,
          kept: str = "") -> Iterator[None]:
    """Turn a write that ran out of space into ``DiskFull``, removing ``cleanup`` (the partial files).

    ``needed``: the bytes the whole write takes (or a function giving them, evaluated only on
    failure). A failure that is neither an ENOSPC-like error nor a write on a nearly full
    filesystem propagates unchanged (after the cleanup).
    """
    try:
        yield
    except VltoolError:  # already a one-line error (a DiskFull from inside, a bad image, ...)
        _remove(cleanup)
        raise
    except Exception as err:
        full = is_disk_full(err) or free_bytes(path) < NEARLY_FULL
        need = (needed() if callable(needed) else needed) if full else None  # before the partial files go
        _remove(cleanup)
        if not full:
            raise
        raise disk_full(path, need, what, kept) from err


def _remove(path: Path | None) -> None:
    if path is None:
        return
    if Path(path).is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        Path(path).unlink(missing_ok=True)


def reserve(path: Path, size: int, what: str) -> None:
    """Allocate ``size`` bytes of ``path`` now, so a full disk is an error here rather than a SIGBUS
    when a memory map of the file is written later (``posix_fallocate``; skipped where unsupported)."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in _FULL_ERRNOS:
            raise disk_full(path, size, what) from err
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def short_of_space(folder: Path, needed: int) -> tuple[bool, int]:
    """(whether ``folder``'s filesystem has less than ``needed`` bytes free, the free bytes)."""
    free = free_bytes(folder)
    return free < needed, free

"""Run folders: a new run never lands in a folder that holds another one, and one writer at a time.

Without `--resume` or `--exist-ok`, an `--out` that already holds files is left alone and the run
goes to the first free numbered folder beside it (`runs/train`, `runs/train2`, `runs/train3`, ...).
While a run writes, its folder is locked (an `flock` on OUT/.lock, released by the kernel when the
process ends, however it ends), so a second writer (a resume, a run with `--exist-ok`) is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Iterator

from ..blueprint import Problem
from .data import DataError

LOCK = ".lock"
MAX_NUMBER = 100_000  # numbered folders tried before giving up
# the launcher of `--devices N` holds the lock for its workers, and says so in their environment
HELD_ENV = "COMPOSER_RUN_LOCK_HELD"


class RunFolderError(DataError):
    subject = "with the run folder"


def holds_run(path: Path) -> bool:
    """Whether `path` exists and holds anything (an empty folder may be used)."""
    if not path.exists():
        return False
    if not path.is_dir():
        return True
    with os.scandir(path) as entries:
        return any(e.name != LOCK for e in entries)


def free_folder(out: str | os.PathLike) -> Path:
    """`out` itself when it holds nothing, else the first numbered sibling that holds nothing."""
    out = Path(out)
    if not holds_run(out):
        return out
    stem = re.sub(r"\d+$", "", out.name) or out.name
    first = int(out.name[len(stem):]) + 1 if out.name[len(stem):] else 2
    for n in range(max(first, 2), first + MAX_NUMBER):
        candidate = out.with_name(f"{stem}{n}")
        if not holds_run(candidate):
            return candidate
    raise RunFolderError(Problem(f"no free run folder beside `{out}` ({MAX_NUMBER:,} numbered ones are taken)", (), str(out),
                                 hint="choose another `--out`"))


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold OUT/.lock for the run's writes; refuse when another living process holds it."""
    if os.environ.get(HELD_ENV) == str(out.resolve() / LOCK):
        yield  # our launcher holds it for us
        return
    import fcntl
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise RunFolderError(Problem(
                f"another run is writing to this folder{f' (process {holder})' if holder.isdigit() else ''}", (), str(out),
                hint="wait for it to end (or stop it), or give another `--out`")) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock

"""Files composer writes: always atomically, so a reader sees the old file or the new one, never half.

Every writer in composer (saved models, checkpoints, schemas, pictures, exports, CSVs) goes through
`atomic_write`: the data goes to a temporary file beside the target, is flushed to disk, and only
then renamed over the target. Besides:

- only a regular file (or nothing) is ever replaced: a directory, symlink, device, FIFO or socket
  at the target is refused before anything is written (`-o /dev/null` leaves /dev/null alone);
- an existing file keeps its permission bits; a new one gets the umask's, as `open()` would give;
- the temporary name is `.NAME.RANDOM.tmp` with NAME cut to 64 characters, so it fits the file-name limit;
- on every exit path the temporary file is removed and the target left as it was: exceptions,
  Ctrl-C and SIGTERM (turned into `Interrupted` while a write is in progress).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator


class NotRegularFileError(OSError):
    """The target exists and is not a regular file; composer replaces regular files only."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while a file was being written; the partial file was removed."""


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it elsewhere
    os.umask(mask)
    return mask


def check_target(path: str | os.PathLike) -> int | None:
    """Refuse a target that is not a regular file; return the permission bits of an existing one.

    Raises OSError with the system's reason (no such directory, not a directory, name too long,
    permission denied) or NotRegularFileError."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        parent = Path(path).parent
        if not parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "its directory does not exist", str(path)) from None
        return None
    kind = ("a directory" if stat.S_ISDIR(info.st_mode) else "a symbolic link" if stat.S_ISLNK(info.st_mode)
            else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else None)
    if kind is not None:
        raise NotRegularFileError(errno.EEXIST, f"it is {kind}, not a regular file; composer replaces regular files only",
                                  str(path))
    return stat.S_IMODE(info.st_mode)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While writing, SIGINT and SIGTERM raise Interrupted so that cleanup runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ANN001
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing (`mode` "wb" or "w"); on a clean exit it replaces `path`."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write writes whole new files (a mode such as 'wb' or 'w'), not {mode!r}")
    target = Path(path)
    keep_mode = check_target(target)
    permissions = keep_mode if keep_mode is not None else 0o666 & ~_umask()
    with _signals_interrupt():
        # named after the target (cut short, so any name fits the limit), so a file left by a kill -9 says what it was
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, permissions)
            with os.fdopen(fd, mode) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            check_target(target)  # nothing else appeared there meanwhile
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(text)

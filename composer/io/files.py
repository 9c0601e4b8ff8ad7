"""Files composer writes: always atomically, so a reader sees the old file or the new one, never half.

Every writer in composer (saved models, checkpoints, schemas, pictures, exports, CSVs) goes through
`atomic_write`: the data goes to a temporary file beside the target, is flushed to disk, and only
then renamed over the target. Besides:

- only a regular file (or nothing) is ever replaced: a directory, symlink, device, FIFO or socket
  at the target is refused before anything is written (`-o /dev/null` leaves /dev/null alone);
- an input of the running command is never replaced: a command declares the files it reads
  (`reading(...)`) and a target that is one of them (the same path, a link to it, the same inode)
  is refused (`composer build self.yaml -o self.yaml`);
- every failure is an OSError naming the target, never the temporary file (`WriteError` when the
  write itself failed: a full disk, a file-size limit, a read-only file system); a writer that
  turns its file's OSError into another exception (torch.save raises RuntimeError) still ends in
  the OSError, which is the cause;
- a name that comes from inside a file (a blueprint's name used for an emitted file) becomes a
  file name with `safe_name`, and `child` joins it to a folder without ever leaving the folder;
- an existing file keeps its permission bits; a new one gets the umask's, as `open()` would give;
- the temporary name is `.NAME.RANDOM.tmp` with NAME cut to 64 characters, so it fits the file-name limit;
- on every exit path the temporary file is removed and the target left as it was: exceptions,
  Ctrl-C and SIGTERM (turned into `Interrupted` while a write is in progress).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import signal
import stat
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from ..errors import ComposerError


class WriteError(ComposerError, OSError):
    """Writing the target failed or was refused (no space, a file-size limit, a read-only file
    system, ...); the target was left as it was. `filename` is the target, `strerror` the reason."""


class NotRegularFileError(WriteError):
    """The target exists and is not a regular file; composer replaces regular files only."""


class InputTargetError(WriteError):
    """The target is a file the same command reads; writing it would destroy the input."""


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


# the files the running command reads, as (device, inode) -> the name it was given
_INPUTS: contextvars.ContextVar[dict[tuple[int, int], str]] = contextvars.ContextVar("composer_inputs", default={})


def reading(*paths: Any) -> None:
    """Declare files the running command reads: no write may replace one of them (checked by inode,
    so another spelling of the path, a symbolic link to it or a hard link is caught too). Paths
    that do not exist, and None, are skipped; a directory is recorded as itself."""
    known = dict(_INPUTS.get())
    for p in paths:
        if p is None or not isinstance(p, (str, os.PathLike)):
            continue
        try:
            info = os.stat(p)
        except (OSError, ValueError):
            continue
        known.setdefault((info.st_dev, info.st_ino), str(p))
    _INPUTS.set(known)


# lists of many files the running command reads (the images of a data set), kept as given: stat-ing
# and indexing millions of images up front would cost more than the one target checked against them
_MANY: contextvars.ContextVar[tuple[list, ...]] = contextvars.ContextVar("composer_many_inputs", default=())


def reading_many(paths: list) -> None:
    """Declare a long list of files the running command reads (a data set's images): a target that
    is one of them (any spelling of its path; a hard link of the same file name) is refused like an
    input declared with `reading`. The list is kept by reference, not copied."""
    _MANY.set(_MANY.get() + (paths,))


def forget_inputs() -> None:
    """Start a new command: no input is declared."""
    _INPUTS.set({})
    _MANY.set(())


@contextlib.contextmanager
def inputs(*paths: Any) -> Iterator[None]:
    """`reading(*paths)` for the duration of a block (library calls such as `composer.save`)."""
    token = _INPUTS.set(dict(_INPUTS.get()))
    try:
        reading(*paths)
        yield
    finally:
        _INPUTS.reset(token)


def input_named(path: str | os.PathLike) -> str | None:
    """The declared input that `path` is (as the command was given it), or None."""
    known, many = _INPUTS.get(), _MANY.get()
    if not known and not many:
        return None
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    found = known.get((info.st_dev, info.st_ino))
    if found is not None or not many:
        return found
    name = os.path.basename(path)
    for listed in many:
        for p in listed:
            if os.path.basename(p) != name:  # a string test first; only a file of the same name is stat-ed
                continue
            try:
                other = os.stat(p)
            except (OSError, ValueError):
                continue
            if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
                return str(p)
    return None


def check_target(path: str | os.PathLike) -> int | None:
    """Refuse a target that is not a regular file, or that is an input of the running command;
    return the permission bits of an existing one.

    Raises OSError with the system's reason (no such directory, not a directory, name too long,
    permission denied), NotRegularFileError or InputTargetError."""
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
    source = input_named(path)
    if source is not None:
        which = "" if os.path.abspath(source) == os.path.abspath(path) else f" (`{source}`, the same file)"
        raise InputTargetError(errno.EEXIST, f"it is an input of this command{which}; writing it would replace "
                               "what was read; choose another output name", str(path))
    return stat.S_IMODE(info.st_mode)


_NAME_BYTES = 255  # the file-name limit of the usual file systems (ext4, APFS, NTFS in UTF-16 units)


def safe_name(text: str, suffix: str = "", *, fallback: str = "unnamed", limit: int = 120) -> str:
    """A file name made from `text` (which came from inside a file): path separators, control and
    invisible characters, and spaces become `_`, leading dots are dropped (no hidden files, no
    `..`), the name is cut to `limit` characters and to the system's byte limit with `suffix`."""
    text = unicodedata.normalize("NFC", str(text))
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "/\\:*?\"<>|" or cat[0] in "CZ":  # separators, reserved on Windows, controls, spaces
            out.append("_")
        else:
            out.append(ch)
    name = "".join(out).lstrip("._").rstrip("._") or fallback
    name = name[:limit]
    room = _NAME_BYTES - len(suffix.encode())
    while len(name.encode()) > room:
        name = name[:-1]
    return name + suffix


def child(folder: str | os.PathLike, name: str) -> Path:
    """`folder / name` for a single file name, refused (ValueError) if it would leave the folder."""
    if name in ("", ".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ValueError(f"`{name}` is not a plain file name inside `{folder}`")
    return Path(folder) / name


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


class _Recording:
    """A file object that remembers the first OSError its writes raised, for writers (torch.save)
    that report a failed write as an exception of their own."""

    def __init__(self, fh: IO) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data):  # noqa: ANN001
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __iter__(self):
        return iter(self._fh)


def _temporary_name(target: Path) -> str:
    return f".{target.name[:64]}."  # the prefix of the temporary file beside the target


def _about_target(exc: OSError, target: Path, stage: str = "") -> OSError:
    """The same failure, told of the target: never the temporary file's name."""
    name = os.path.basename(str(exc.filename)) if exc.filename is not None else None
    ours = name is None or str(exc.filename) == str(target) or (
        name.startswith(_temporary_name(target)) and name.endswith(".tmp"))
    if isinstance(exc, (NotRegularFileError, InputTargetError)) or not ours:
        return exc  # already about the target, or about some other file
    why = exc.strerror or str(exc) or type(exc).__name__
    return WriteError(exc.errno, f"{stage}{why}", str(target))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing (`mode` "wb" or "w"); on a clean exit it replaces `path`."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write writes whole new files (a mode such as 'wb' or 'w'), not {mode!r}")
    target = Path(path)
    keep_mode = check_target(target)
    permissions = keep_mode if keep_mode is not None else 0o666 & ~_umask()
    with _signals_interrupt():
        tmp = None
        recording = None
        try:
            # named after the target (cut short, so any name fits the limit), so a file left by a kill -9 says what it was
            fd, tmp = tempfile.mkstemp(prefix=_temporary_name(target), suffix=".tmp", dir=target.parent)
            os.fchmod(fd, permissions)
            with os.fdopen(fd, mode) as fh:
                recording = _Recording(fh)
                yield recording
                fh.flush()
                os.fsync(fh.fileno())
            check_target(target)  # nothing else appeared there meanwhile
            os.replace(tmp, target)
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if isinstance(exc, OSError):  # before the temporary file exists, its folder refused it
                stage = "" if tmp is not None else "its folder takes no new file: "
                raise _about_target(exc, target, stage) from None
            if recording is not None and recording.error is not None and isinstance(exc, Exception):
                raise _about_target(recording.error, target) from exc  # the cause of the writer's error
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

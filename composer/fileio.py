"""Files composer writes: always atomically, so a reader sees the old file or the new one, never half.

Every writer in composer (saved models, checkpoints, schemas, pictures, exports, CSVs) goes through
`atomic_write`: the data goes to a temporary file beside the target, is flushed to disk, and only
then renamed over the target. On any failure the temporary file is removed and the target is left
as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing (`mode` "wb" or "w"); on a clean exit it replaces `path`."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:32]}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(text)

"""Crash-safe file writing: whole files appear at once or not at all.

* :func:`atomic_write_bytes`: write a temp file in the target's directory (``.NAME.RANDOM.tmp``),
  fsync it, rename it over the target (``os.replace``, atomic on POSIX and Windows) and fsync the
  directory, so after a ``kill -9`` or a power loss the target holds either the old or the new
  content.  With ``keep_previous`` the old file is first renamed to that name (a rename chain:
  at every instant one of the two names holds a complete file).
* :func:`atomic_savez`: ``np.savez_compressed`` through :func:`atomic_write_bytes`.
* :func:`append_fsync`: append bytes to an open ``O_APPEND`` descriptor with one write loop and
  fsync (TensorBoard event records).
* :func:`remove_temp_files`: delete the temp files an interrupted write left behind.

The lowest layer of the package: it imports nothing from gps_ros.
"""
from __future__ import annotations

import io
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import List, Optional

log = logging.getLogger(__name__)

#: the names of the temp files of :func:`atomic_write_bytes` (``.NAME.RANDOM.tmp``)
TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def is_temp_file(name: str) -> bool:
    """True for the name of a temp file of :func:`atomic_write_bytes`."""
    return TEMP_FILE.match(name) is not None


def fsync_dir(path: str | Path) -> None:
    """fsync a directory, so the renames in it survive a power loss (a no-op where directories
    cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes,
                       keep_previous: Optional[str | Path] = None) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync and rename; a file
    that is replaced keeps its permission bits (a user's config stays readable by others).

    ``keep_previous``: a path in the same directory; an existing ``path`` is renamed to it just
    before the new file is renamed into place (replacing an older ``keep_previous``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_savez(path: str | Path, **arrays) -> None:
    """np.savez_compressed, atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def append_fsync(fd: int, data: bytes) -> None:
    """Append ``data`` to the ``O_APPEND`` descriptor ``fd`` (looping over short writes) and
    fsync it before returning."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)


def remove_temp_files(root: str | Path) -> List[Path]:
    """Delete the temp files of interrupted :func:`atomic_write_bytes` calls under ``root``;
    return them."""
    gone = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if is_temp_file(name):
                p = Path(dirpath) / name
                p.unlink(missing_ok=True)
                gone.append(p)
    if gone:
        log.info("removed %d temp file(s) of interrupted writes in %s", len(gone), root)
    return gone

"""Files only their owner may read: keys, released or raw values, audit entries.

One way to make them, for the agent and the coordinator alike. Whatever the umask:

- a file is created with mode 0600, and an existing one is set to 0600 through its open
  descriptor (O_CREAT's mode does not apply to a file that was already there);
- a folder is created with mode 0700, parents too (``mkdir -p`` would give a missing
  parent the umask's mode, world-writable under umask 000);
- a symbolic link where such a file should be is refused (O_NOFOLLOW), never followed:
  otherwise whoever planted it chooses where a key or the store's values are written.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from fedpeer.errors import UnsafeFile

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# Windows has neither flag; there, the folder's ACL is what keeps a home private.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def refuse_link(path: Path) -> None:
    """UnsafeFile when ``path`` is a symbolic link (checked before anything is read there)."""
    if path.is_symlink():
        raise UnsafeFile(
            f"{path} is a symbolic link; a private file is never written through one "
            "(remove the link, and check who made it)"
        )


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700; refuse a link in its place."""
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    refuse_link(path)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another process: take it as it is
            refuse_link(folder)
    if not path.is_dir():
        raise UnsafeFile(f"{path} is not a folder")
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a private file: created 0600, made 0600 if it was there, never a link."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _BINARY, PRIVATE_FILE)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or Path(path).is_symlink():
            refuse_link(Path(path))
        raise
    if hasattr(os, "fchmod"):
        os.fchmod(fd, PRIVATE_FILE)
    return fd


def private_file(path: Path) -> Path:
    """Create ``path`` if it is not there, and make it readable and writable by its owner only."""
    os.close(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
    return path


def write_private(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to a private file, replacing what it held."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as out:
        out.write(payload)
    return path


def create_private(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to a new private file; refuses a file (or link) already there."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        refuse_link(Path(path))
        raise UnsafeFile(f"{path} already exists; not overwriting it") from None
    with os.fdopen(fd, "wb") as out:
        out.write(payload)
    return path

"""File hashing and atomic writes: the one implementation of each that every package uses.

- `sha256_file` hashes a file in blocks (optionally remembering the digest per path, size and
  modification time, for weight files hashed again and again); `update_with_file` feeds a file
  into a running hash (digests over several files).
- `atomic_path` gives a temporary name beside the destination and renames it into place once the
  writer succeeds, so a reader sees the old file or the new one, never half of one; on failure the
  temporary file is removed. `atomic_write_text` is the common case.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_text", "sha256_file", "update_with_file"]

_BLOCK = 1 << 20
_memo: dict[tuple[str, int, int], str] = {}


def update_with_file(digest: Any, path: str | os.PathLike[str]) -> None:
    """Feed the bytes of `path` into `digest` (any `hashlib` object), one block at a time."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)


def sha256_file(path: str | os.PathLike[str], *, memo: bool = False) -> str:
    """Hex SHA-256 of a file's bytes.

    Args:
        path: the file.
        memo: remember the digest for this (resolved path, size, modification time), so a file
            that has not changed is read once per process.
    """
    key = None
    if memo:
        real = Path(path).resolve()
        st = real.stat()
        key = (str(real), st.st_size, st.st_mtime_ns)
        if key in _memo:
            return _memo[key]
    digest = hashlib.sha256()
    update_with_file(digest, path)
    hexdigest = digest.hexdigest()
    if key is not None:
        _memo[key] = hexdigest
    return hexdigest


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block succeeds.

    The name is hidden and ends in `.tmp` (so folder listings of media or manifests never pick it
    up) and carries the process id, so two processes writing the same file do not share one.
    The folder must exist. Whatever the writer left is removed when the block raises.
    """
    dest = Path(path)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` so readers see the old or the new file, never half of one."""
    dest = Path(path)
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding=encoding)
    return dest

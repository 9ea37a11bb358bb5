"""The one error family of `avio`: every file it cannot read or write as asked raises a `FormatError`.

Each is a `ValueError` whose message names the file, the problem and what to do; `path` is the file
at fault when the error is about one file (a caller may skip that file and go on).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FormatError", "ManifestError", "MediaError", "SidecarError"]


class FormatError(ValueError):
    """A file is not what its format says; the message says which file, why, and what to do.

    Attributes:
        path: the file at fault, when the error is about one file (else None).
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


class MediaError(FormatError):
    """A media file cannot be read or written as asked; the message says which file and why."""


class ManifestError(FormatError):
    """A manifest cannot be used; the message names the file, the record and the problem."""


class SidecarError(FormatError):
    """A sample's JSON sidecar cannot be used; the message names the file and the problem."""

"""The sample sidecar: `<id>.json` beside `<id>.mp4`, the record of how a clip was made.

`avgen sample` writes one per clip: {"id", "prompt", "task", "seed", "checkpoint_sha256", ...}; an
evaluation set may add "reference_id" (the reference clip a generated one was made from). Readers
take the fields they know and keep the rest. A sidecar is a JSON object of at most 1 MB (a real one
is a few hundred bytes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avio.errors import SidecarError
from avio.files import atomic_write_text

__all__ = ["MAX_SIDECAR_BYTES", "SidecarError", "read_sidecar", "sidecar_path", "write_sidecar"]

MAX_SIDECAR_BYTES = 1 << 20


def sidecar_path(media: str | Path) -> Path:
    """The sidecar of a media file: the same name with `.json`."""
    return Path(media).with_suffix(".json")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The record a sidecar holds.

    Raises:
        SidecarError: the file is missing or unreadable, over `MAX_SIDECAR_BYTES`, not valid JSON
            (or UTF-8), or not a JSON object.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"{p}: is over 1 MB; it is not a sample sidecar", path=p)
        record = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SidecarError(f"{p}: not valid JSON ({err}); fix or delete the sidecar.", path=p) from None
    except OSError as err:
        raise SidecarError(f"{p}: cannot be read ({err.strerror or err}).", path=p) from None
    if not isinstance(record, dict):
        raise SidecarError(f"{p}: a sidecar must hold a JSON object.", path=p)
    return record


def write_sidecar(path: str | Path, record: dict[str, Any]) -> Path:
    """Write `record` as an indented JSON sidecar, atomically."""
    return atomic_write_text(path, json.dumps(record, indent=2) + "\n")

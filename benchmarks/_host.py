"""What the benchmark scripts share: what they record about the machine, and how they write the record."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def write_json(path: str | Path, record: Any, *, indent: int = 2) -> Path:
    """Write a benchmark's record as JSON (its folder created; values JSON lacks written as text)
    and say so; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=indent, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return out

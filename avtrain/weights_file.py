"""Reading a weights file safely: `torch.load(weights_only=True)`, its failures as one short reason.

Every component's own file (codec.pt, vae.pt, a metric's weights) holds tensors and plain data
only, so it loads without running pickled code. When the file is damaged, truncated or something
else, torch raises one of several types with a message written for library users (its advice to
retry with `weights_only=False` would run arbitrary code). `load_weights_file` turns them into
`UnreadableWeightsError` with a one-line `reason` that each caller puts in its own message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnreadableWeightsError", "load_weights_file"]


class UnreadableWeightsError(ValueError):
    """A weights file that torch cannot read; `reason` says why in one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path} is not a readable PyTorch weights file: {reason}")
        self.path, self.reason = Path(path), reason


def load_weights_file(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`; raises `UnreadableWeightsError` for any unreadable file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several unrelated types for bad files
        raise UnreadableWeightsError(path, _reason(err)) from err


def _reason(err: Exception) -> str:
    text = str(err).strip()
    refused = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if refused:  # not a zip archive torch wrote, or pickled objects other than tensors and plain data
        return f"not a PyTorch file, or it holds objects other than tensors and plain data ({refused.group(1).strip()})"
    if isinstance(err, EOFError) or not text:
        return "the file is empty or ends early (truncated)"
    if "central directory" in text:
        return "the archive is damaged or truncated (no central directory): copy or save it again"
    return f"{type(err).__name__}: {text.splitlines()[0]}"

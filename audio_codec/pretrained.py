"""Locating and verifying Meta's pretrained EnCodec checkpoints on the local disk.

The project never downloads. A checkpoint is found, in order, at the path the user gives (a file,
or a folder holding the official file name), then in the torch hub cache
(`$TORCH_HOME/hub/checkpoints/`, where `torch.hub` and the `encodec` package put downloads). File
names of the form `<name>-<hex>.th` carry the first hex digits of the file's sha256, which is
checked, as the official loader does.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from audio_codec.config import OFFICIAL_CHECKPOINTS, OFFICIAL_URL
from avio import sha256_file
from avtrain.weights_file import UnreadableWeightsError, load_weights_file

_CHECKSUM_NAME = re.compile(r"^.+-([0-9a-f]{6,64})\.[A-Za-z0-9]+$")


class PretrainedWeightsError(FileNotFoundError):
    """Pretrained weights are missing or do not pass the checksum; the message says what to do."""


def hub_checkpoint_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints` (torch's cache for downloaded weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def verify_checksum(path: Path) -> None:
    """Check the sha256 prefix carried by a file name like `encodec_24khz-d7cc33bc.th`.

    Files whose names carry no checksum are accepted as they are.

    Raises:
        PretrainedWeightsError: the digest does not start with the name's checksum.
    """
    match = _CHECKSUM_NAME.match(path.name)
    if match is None:
        return
    expected = match.group(1)
    actual = sha256_file(path)[: len(expected)]
    if actual != expected:
        raise PretrainedWeightsError(
            f"checksum mismatch for {path}: its name promises sha256 prefix {expected} but the file hashes to "
            f"{actual}. The file is corrupt or truncated; copy it again."
        )


def find_official_checkpoint(name: str, weights: str | Path | None = None) -> Path:
    """Path of the official checkpoint of preset `name` ("encodec_24khz" or "encodec_48khz").

    Args:
        name: preset with official weights.
        weights: a checkpoint file, or a folder holding the official file name; None searches
            the torch hub cache.

    Raises:
        KeyError: `name` has no official weights.
        PretrainedWeightsError: nothing found (the message names the file, the folder and the URL).
    """
    if name not in OFFICIAL_CHECKPOINTS:
        raise KeyError(f"no official weights for codec preset {name!r}; presets with weights: {sorted(OFFICIAL_CHECKPOINTS)}.")
    filename = OFFICIAL_CHECKPOINTS[name]
    if weights is not None:
        candidate = Path(weights).expanduser()
        if candidate.is_dir():
            candidate = candidate / filename
        if not candidate.is_file():
            raise PretrainedWeightsError(
                f"EnCodec weights for {name} not found at {candidate}. Put {filename} (published at "
                f"{OFFICIAL_URL}{filename}) there, or pass the path of the file."
            )
        return candidate
    candidate = hub_checkpoint_dir() / filename
    if not candidate.is_file():
        raise PretrainedWeightsError(
            f"EnCodec weights for {name} not found: expected {candidate}. This project does not download; copy "
            f"{filename} (published at {OFFICIAL_URL}{filename}) into {candidate.parent} (set TORCH_HOME to use "
            "another cache) or pass its path with --weights."
        )
    return candidate


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official EnCodec checkpoint (a plain state dict) after checking its checksum."""
    path = Path(path)
    verify_checksum(path)
    try:
        state = load_weights_file(path)
    except UnreadableWeightsError as err:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({err.reason}).") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold an EnCodec state dict (a mapping of parameter names to tensors).")
    return state

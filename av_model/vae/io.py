"""Loading a trained video autoencoder from the one `.pt` file `VideoAutoencoder.save` writes.

The file is a dict of plain Python values and tensors, so it loads with
`torch.load(weights_only=True)` (no pickled code runs):

    {"format": "avgen.video_autoencoder", "version": 1, "config": VAEConfig.to_dict(),
     "state_dict": {...}, "fingerprint": "...", "metadata": {...}}
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avtrain.weights_file import UnreadableWeightsError, load_weights_file

from .config import VAEConfig
from .model import FORMAT, VERSION, VideoAutoencoder


class VAECheckpointError(ValueError):
    """A file that is not a readable video autoencoder of this project; the message says why and what to do."""


def load_video_autoencoder(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> VideoAutoencoder:
    """Read a file written by `VideoAutoencoder.save` (e.g. `<default_root_dir>/vae.pt` after `avgen vae fit`).

    The model is returned in eval mode on `map_location`.

    Raises:
        FileNotFoundError: the file does not exist.
        VAECheckpointError: the file is not a video autoencoder of this project, is corrupt, or
            its weights do not fit its declared architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no video autoencoder at {path}; train one with `avgen vae fit -c configs/vae/small.yaml` "
            f"(it writes <trainer.default_root_dir>/vae.pt) or pass the right --vae path."
        )
    try:
        payload = load_weights_file(path, map_location)
    except UnreadableWeightsError as err:
        hint = ""
        if path.suffix == ".ckpt":
            hint = (
                " This looks like a Lightning training checkpoint: resume it with `avgen vae fit ... "
                "--ckpt_path PATH`; the autoencoder file is <trainer.default_root_dir>/vae.pt."
            )
        raise VAECheckpointError(f"{path} is not a readable video autoencoder file ({err.reason}).{hint}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format", "no 'format' key") if isinstance(payload, dict) else type(payload).__name__
        hint = ""
        if isinstance(payload, dict) and "pytorch-lightning_version" in payload:
            hint = " It is a Lightning training checkpoint; the autoencoder file is <trainer.default_root_dir>/vae.pt."
        raise VAECheckpointError(
            f"{path} is not a video autoencoder file (format: {found}; expected {FORMAT!r}).{hint}"
        )
    if payload.get("version") != VERSION:
        raise VAECheckpointError(
            f"{path} has video autoencoder file version {payload.get('version')}; this code reads version {VERSION}."
        )
    try:
        config = VAEConfig.from_dict(payload["config"])
    except (TypeError, ValueError, KeyError) as err:
        raise VAECheckpointError(f"{path} declares an architecture this code cannot build: {err}") from err
    model = VideoAutoencoder(config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError) as err:
        raise VAECheckpointError(
            f"{path} holds weights of another architecture than its config declares "
            f"(was it written by another version of this code?): {err}"
        ) from err
    stored = payload.get("fingerprint")
    actual = model.fingerprint
    if stored is not None and stored != actual:
        raise VAECheckpointError(f"{path} is corrupt: its fingerprint is {stored} but its weights hash to {actual}.")
    model.metadata = dict(payload.get("metadata") or {})
    return model.to(map_location).eval()

"""`load_codec`: rebuild a codec from the single `.pt` file `AudioCodec.save` writes.

For convenience the same function also opens Meta's official EnCodec checkpoints
(`encodec_24khz-d7cc33bc.th`, `encodec_48khz-7e698e3e.th`) given by path, and the names
"encodec_24khz" / "encodec_48khz" (looked up in the torch hub cache); these have no latent
statistics until `avgen codec stats` adds them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audio_codec.base import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, AudioCodec
from audio_codec.config import OFFICIAL_CHECKPOINTS, CodecConfig
from audio_codec.encodec_codec import CheckpointMismatchError, EncodecCodec
from avtrain.weights_file import UnreadableWeightsError, load_weights_file

CODEC_TYPES: dict[str, type[EncodecCodec]] = {"encodec": EncodecCodec}


def _official_name(path: Path) -> str | None:
    for name, filename in OFFICIAL_CHECKPOINTS.items():
        if path.name == filename or path.name.startswith(name + "-") or path.stem == name:
            return name
    return None


def load_codec(path: str | Path, map_location: str | torch.device = "cpu") -> AudioCodec:
    """Load a codec saved by `AudioCodec.save` (or official EnCodec weights), in eval mode.

    Args:
        path: a codec `.pt` file; an official EnCodec checkpoint file; or "encodec_24khz" /
            "encodec_48khz" to use the official file in `$TORCH_HOME/hub/checkpoints/`.
        map_location: device to load onto.

    Raises:
        FileNotFoundError: no such file (PretrainedWeightsError for official weights, saying where
            to put them).
        ValueError: the file is not an audio codec checkpoint, has an unsupported version or type.
        CheckpointMismatchError: its weights do not fit the architecture its config describes.
    """
    if str(path) in OFFICIAL_CHECKPOINTS and not Path(path).exists():
        return EncodecCodec.from_pretrained(str(path)).to(map_location)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"codec checkpoint {path} does not exist; train one with `avgen codec fit` (it writes "
            "<default_root_dir>/codec.pt) or give the path of an existing codec.pt."
        )
    official = _official_name(path)
    if official is not None:
        return EncodecCodec.from_pretrained(official, weights=path).to(map_location)
    try:
        payload = load_weights_file(path, map_location)
    except UnreadableWeightsError as err:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({err.reason}).") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = (" It looks like a Lightning training checkpoint; export a codec with "
                "`avgen codec export --ckpt FILE --out codec.pt`." if isinstance(payload, dict)
                and "state_dict" in payload and "pytorch-lightning_version" in payload else "")
        raise ValueError(
            f"{path} is not an audio codec checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}).{hint}"
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} has codec checkpoint version {payload.get('version')}; this code reads version "
                         f"{CHECKPOINT_VERSION}. Re-export it with a matching version of the project.")
    codec_type = payload.get("codec_type")
    if codec_type not in CODEC_TYPES:
        raise ValueError(f"{path} holds a codec of type {codec_type!r}; known types: {sorted(CODEC_TYPES)}.")
    config = CodecConfig.from_dict(payload["config"])
    codec = CODEC_TYPES[codec_type](config)
    state = payload["state_dict"]
    model_state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    codec.load_model_weights(model_state, source=str(path))
    own = codec.state_dict()
    wrong = [k for k, v in own.items() if not k.startswith("model.")
             and (k not in state or tuple(state[k].shape) != tuple(v.shape))]
    extra = [k for k in state if k not in own]
    if wrong or extra:
        raise CheckpointMismatchError(
            f"{path} does not fit a {codec_type} codec: entries missing or of another shape {wrong}, "
            f"unexpected entries {extra[:5]}; it was written by another version of the project."
        )
    codec.load_state_dict(state)
    return codec.to(map_location).eval()

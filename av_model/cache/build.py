"""Building the latent cache: plan clips from a manifest, decode them, encode them, write shards.

`build_cache` is what `avgen cache build` runs (see `av_model.cache.cli` for the command and
`av_model.cache.format` for the layout). A build is resumable: clips are cut into shards in manifest
order, each shard is written atomically and then listed in `meta.json`, and a rerun skips the listed
shards. A build into a cache made by other encoders (or with other geometry) is refused with the
differences named.

A clip that cannot be decoded is skipped: named with its reason as it is found, recorded in its
shard's entry of `meta.json`, and listed at the end. A shard none of whose clips could be encoded
is not written, so a rerun tries it again. The build fails when no clip at all could be encoded,
and with `strict` at the first bad clip (`BadClipError`).
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from av_model.cache.format import (
    SHARD_DIR,
    CacheEntry,
    CacheError,
    CacheMeta,
    read_meta,
    read_shard_rows,
    shard_name,
    write_index,
    write_meta,
    write_shard,
)
from avio import sha256_file

__all__ = ["STORAGE_DTYPES", "BadClipError", "CacheBuildConfig", "build_cache", "load_build_config"]

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class BadClipError(CacheError):
    """A clip could not be decoded and the build was asked to stop at the first one (`strict`)."""


@dataclass
class CacheBuildConfig:
    """What to encode, with which encoders, into which cache (`configs/cache/*.yaml`).

    Attributes:
        manifest: JSONL or CSV manifest of the clips (`avio.manifest`).
        out: the cache directory (created; resumed when it holds an unfinished build).
        codec: the audio codec file written by `avgen codec fit` (`codec.pt`).
        vae: the video autoencoder file written by `avgen vae fit` (`vae.pt`).
        text: text encoder specs for `load_text_encoder` ("minilm", a local path, or an HF cache name).
        split: encode only this split of the manifest (None: every clip).
        fps: frame rate the video is decoded at.
        size: (height, width) the frames are scaled and centre-cropped to; None keeps each clip's
            own size, cropped down to a multiple of `size_multiple`.
        size_multiple: with `size: null`, heights and widths are cropped to a multiple of this
            (the autoencoder's spatial compression times the generator's patch).
        max_duration: clips longer than this many seconds are cut to it (None: whole clips).
        duration_step: durations are rounded down to a multiple of this many seconds so clips fall
            into few buckets (None: one latent video frame).
        shard_size: clips per shard file.
        batch_size: clips encoded together (clips of equal shape only).
        workers: decoding processes (0 decodes in the main process).
        device: "auto" (CUDA when there is one), "cpu", "cuda", "cuda:1", ...
        dtype: storage precision of the latents and text embeddings.
        strict: stop at the first clip that cannot be decoded (default: skip it and report it).
    """

    manifest: str
    out: str
    codec: str
    vae: str
    text: list[str] = field(default_factory=lambda: ["minilm"])
    split: str | None = None
    fps: float = 16.0
    size: tuple[int, int] | None = (64, 64)
    size_multiple: int = 16
    max_duration: float | None = None
    duration_step: float | None = None
    shard_size: int = 256
    batch_size: int = 8
    workers: int = 2
    device: str = "auto"
    dtype: str = "float32"
    strict: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.text, str):
            self.text = [self.text]
        self.text = list(self.text)
        if not self.text:
            raise ValueError("text needs at least one text encoder spec, e.g. ['minilm'].")
        if self.size is not None:
            if len(self.size) != 2 or min(self.size) < 1:
                raise ValueError(f"size must be (height, width) in pixels or null; got {self.size}.")
            self.size = (int(self.size[0]), int(self.size[1]))
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0; got {self.fps}.")
        for name in ("shard_size", "batch_size", "size_multiple"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0; got {self.workers}.")
        for name in ("max_duration", "duration_step"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 seconds or null; got {value}.")
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(STORAGE_DTYPES)}; got {self.dtype!r}.")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda")):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]'; got {self.device!r}.")


def load_build_config(path: str | Path | None = None, **overrides: Any) -> CacheBuildConfig:
    """A `CacheBuildConfig` from a YAML file (optional) with `overrides` (None values ignored) on top."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cache config {path} does not exist.")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of CacheBuildConfig fields; got {type(loaded).__name__}.")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(CacheBuildConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown cache build options {unknown}; known: {sorted(known)}.")
    missing = [name for name in ("manifest", "out", "codec", "vae") if name not in data]
    if missing:
        flags = " ".join(f"--{m}" for m in missing)
        raise ValueError(f"the cache build needs {missing}: give them with {flags} or in the -c config file.")
    if isinstance(data.get("size"), list):
        data["size"] = tuple(data["size"])
    return CacheBuildConfig(**data)


# ----------------------------------------------------------------------------------------- reading
@dataclass
class _ClipPlan:
    """One manifest entry with the exact window and geometry to decode."""

    entry: Any  # avio.manifest.ManifestEntry
    split: str
    path: Path
    start: float
    duration: float
    num_frames: int
    num_samples: int


class _ClipReader(Dataset):
    """Decodes planned clips (in worker processes); a clip that fails yields its error instead."""

    def __init__(self, plans: list[_ClipPlan], cfg: CacheBuildConfig, sample_rate: int, channels: int) -> None:
        self.plans, self.cfg, self.sample_rate, self.channels = plans, cfg, sample_rate, channels

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from avio import MediaError, probe, read_clip

        plan = self.plans[i]
        try:
            missing = plan.entry.missing_file()
            if missing is not None:
                raise MediaError(missing)
            size = self.cfg.size
            if size is None:
                info = probe(plan.path)
                if info.height is None or info.width is None:
                    raise MediaError(f"{plan.path}: the video stream does not state its frame size.")
                m = self.cfg.size_multiple
                size = (info.height // m * m, info.width // m * m)
                if min(size) == 0:
                    raise MediaError(f"{plan.path}: frames of {info.height}x{info.width} are smaller than {m} px.")
            clip = read_clip(plan.path, fps=self.cfg.fps, size=size, start=plan.start, duration=plan.duration,
                             sample_rate=self.sample_rate, channels=self.channels, require_audio=True)
            assert clip.audio is not None  # require_audio=True raised otherwise
            frames = clip.frames[: plan.num_frames]  # (T, H, W, 3) uint8
            audio = clip.audio[:, : plan.num_samples]  # (C, S)
            if frames.shape[0] < plan.num_frames or audio.shape[1] < plan.num_samples:
                raise MediaError(
                    f"{plan.path}: decoded {frames.shape[0]} frames and {audio.shape[1]} samples, expected "
                    f"{plan.num_frames} and {plan.num_samples}; the file is shorter than its manifest says."
                )
            return {"index": i, "frames": frames, "audio": audio}
        except (MediaError, OSError, ValueError) as err:  # corrupt, truncated or unreadable: skip and report
            return {"index": i, "error": str(err)}


def _shape4(shape: torch.Size) -> tuple[int, int, int, int]:
    c, t, h, w = (int(s) for s in shape)
    return c, t, h, w


def _identity(item: Any) -> Any:
    return item


def _plan_clips(cfg: CacheBuildConfig, tc: int, sample_rate: int, hop: int) -> list[_ClipPlan]:
    """Manifest entries of the requested split with their quantized durations."""
    from avio import load_manifest

    manifest = Path(cfg.manifest)
    entries = load_manifest(manifest)
    step = cfg.duration_step or tc / cfg.fps
    plans = []
    for entry in entries:
        split = str(getattr(entry, "split", None) or entry.extra.get("split") or "train")
        if cfg.split is not None and split != cfg.split:
            continue
        path = Path(entry.path)
        if not path.is_absolute():
            path = manifest.parent / path
        start = float(entry.start or 0.0)
        length = entry.end - start if entry.end is not None else entry.extra.get("duration")
        if length is None:
            from avio import MediaError, probe

            try:
                length = probe(path).duration - start
            except MediaError:
                length = 0.0  # decoding will fail and name the problem
        if cfg.max_duration is not None:
            length = min(float(length), cfg.max_duration)
        duration = math.floor(float(length) / step + 1e-6) * step
        num_frames = int(math.floor(duration * cfg.fps / tc + 1e-6)) * tc
        duration = num_frames / cfg.fps
        num_samples = int(math.floor(duration * sample_rate / hop + 1e-6)) * hop
        plans.append(_ClipPlan(entry, split, path, start, max(duration, tc / cfg.fps), max(num_frames, tc),
                               max(num_samples, hop)))
    if not plans:
        where = f" in split {cfg.split!r}" if cfg.split else ""
        raise CacheError(f"the manifest {manifest} has no clips{where}; check --manifest and --split.")
    ids = Counter(p.entry.id for p in plans)
    dupes = [i for i, n in ids.items() if n > 1]
    if dupes:
        raise CacheError(f"the manifest {manifest} repeats clip ids {dupes[:5]}; ids must be unique.")
    return plans


# ---------------------------------------------------------------------------------------- encoding
def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} was asked for but CUDA is not available; use --device cpu.")
    return device


def _load_encoders(cfg: CacheBuildConfig, device: torch.device) -> tuple[Any, Any, Any]:
    from audio_codec import load_codec
    from av_model.text import load_text_encoder
    from av_model.vae import load_video_autoencoder

    for name in ("codec", "vae"):
        if not Path(getattr(cfg, name)).is_file():
            raise FileNotFoundError(f"--{name} {getattr(cfg, name)} does not exist; train one with `avgen {name} fit`.")
    codec = load_codec(cfg.codec, map_location=device).eval()
    vae = load_video_autoencoder(cfg.vae, map_location=device).eval()
    text = load_text_encoder(cfg.text if len(cfg.text) > 1 else cfg.text[0], device=device)
    return codec, vae, text


def _expected_meta(cfg: CacheBuildConfig, codec: Any, vae: Any, text: Any, num_shards: int) -> CacheMeta:
    manifest = Path(cfg.manifest)
    text_dims = [int(d) for d in text.dims]
    return CacheMeta(
        fingerprints={"codec": codec.fingerprint, "vae": vae.fingerprint, "text": text.fingerprint},
        encoders={"codec": str(Path(cfg.codec).resolve()), "vae": str(Path(cfg.vae).resolve()),
                  "text": list(cfg.text), "manifest": str(manifest.resolve())},
        video={"fps": cfg.fps, "height": cfg.size[0] if cfg.size else None,
               "width": cfg.size[1] if cfg.size else None, "latent_dim": vae.latent_dim,
               "latent_rate": vae.latent_frame_rate(cfg.fps), "temporal_compression": vae.temporal_compression,
               "spatial_compression": vae.spatial_compression},
        audio={"sample_rate": codec.sample_rate, "channels": codec.channels, "latent_dim": codec.latent_dim,
               "latent_rate": codec.frame_rate, "hop_length": codec.hop_length},
        text={"dims": text_dims, "specs": list(cfg.text)},
        build={"manifest_sha256": sha256_file(manifest), "split": cfg.split, "shard_size": cfg.shard_size,
               "max_duration": cfg.max_duration, "duration_step": cfg.duration_step, "dtype": cfg.dtype,
               "size_multiple": cfg.size_multiple if cfg.size is None else None},
        num_shards=num_shards,
    )


def _prepare_out(cfg: CacheBuildConfig, expected: CacheMeta) -> CacheMeta:
    """The meta to continue from: a fresh one, or the existing build's when it is compatible."""
    out = Path(cfg.out)
    if (out / "meta.json").exists():
        existing = read_meta(out)
        problems = existing.mismatches(expected)
        if problems:
            raise CacheError(
                f"{out} holds a cache made differently, so it cannot be extended or resumed:\n  - "
                + "\n  - ".join(problems)
                + "\nUse another --out directory, or delete this cache to rebuild it with these encoders."
            )
        return existing
    if out.exists() and any(out.iterdir()):
        raise CacheError(f"{out} exists, is not empty and is not a latent cache; choose an empty --out directory.")
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    write_meta(out, expected)
    return expected


@torch.inference_mode()
def _encode_group(items: list[dict[str, Any]], codec: Any, vae: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode clips of equal shape: video `(B, C_v, T_v, H_v, W_v)`, audio `(B, C_a, T_a)`, both normalized."""
    frames = torch.stack([torch.as_tensor(it["frames"]) for it in items]).to(device)  # (B, T, H, W, 3) uint8
    video = frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (B, 3, T, H, W) in [-1, 1]
    z_v = vae.normalize(vae.encode(video))  # (B, C_v, T_v, H_v, W_v)
    audio = torch.stack([torch.as_tensor(it["audio"]) for it in items]).to(device)  # (B, C, S)
    z_a = codec.normalize(codec.encode(audio))  # (B, C_a, T_a)
    return z_v, z_a


def _text_tensors(text_batch: Any, i: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Clip `i`'s tokens per encoder, trimmed after the last real token: `(L_i, D_i)` and `(L_i,)` bool."""
    embs, masks = [], []
    for emb, mask in zip(text_batch.embeddings, text_batch.masks):
        real = mask[i].nonzero()
        length = int(real.max()) + 1 if real.numel() else 1  # keep one (masked) token for empty prompts
        embs.append(emb[i, :length])
        masks.append(mask[i, :length].clone())
    return embs, masks


def _build_shard(
    index: int, plans: list[_ClipPlan], items: Iterator[dict[str, Any]], offset: int, cfg: CacheBuildConfig,
    encoders: tuple[Any, Any, Any], device: torch.device, progress: tqdm,
) -> dict[str, Any]:
    """Encodes one shard's clips, read from `items` (decoded clips whose "index" counts from `offset`)."""
    codec, vae, text = encoders
    dtype = STORAGE_DTYPES[cfg.dtype]
    tensors: dict[str, torch.Tensor] = {}
    rows: list[CacheEntry] = []
    skipped: list[dict[str, str]] = []
    pending: list[dict[str, Any]] = []
    name = shard_name(index)

    def flush() -> None:
        if not pending:
            return
        z_v, z_a = _encode_group(pending, codec, vae, device)
        captions = [plans[it["index"] - offset].entry.caption for it in pending]
        text_batch = text.encode(captions)
        for b, it in enumerate(pending):
            plan = plans[it["index"] - offset]
            cid = plan.entry.id
            tensors[f"{cid}/video"] = z_v[b].to(dtype)
            tensors[f"{cid}/audio"] = z_a[b].to(dtype)
            embs, masks = _text_tensors(text_batch, b)
            for k, (e, m) in enumerate(zip(embs, masks)):
                tensors[f"{cid}/text_{k}"] = e.to(dtype)
                tensors[f"{cid}/text_mask_{k}"] = m
            frames = torch.as_tensor(it["frames"])
            rows.append(CacheEntry(
                id=cid, caption=plan.entry.caption, split=plan.split, duration=plan.duration, fps=cfg.fps,
                height=int(frames.shape[1]), width=int(frames.shape[2]), shard=name,
                video_shape=_shape4(z_v.shape[1:]), audio_shape=(int(z_a.shape[1]), int(z_a.shape[2])),
                text_lengths=tuple(int(e.shape[0]) for e in embs), source=str(plan.entry.path),
                extra={k: v for k, v in plan.entry.extra.items() if k not in ("split",)},
            ))
        progress.update(len(pending))
        pending.clear()

    for item in itertools.islice(items, len(plans)):  # clips come in order: exactly this shard's
        if "error" in item:
            cid = plans[item["index"] - offset].entry.id
            if cfg.strict:
                raise BadClipError(f"clip {cid!r}: {item['error']} (stopped at the first bad clip: --strict)")
            skipped.append({"id": cid, "error": item["error"]})
            progress.write(f"skipping {cid}: {item['error']}", file=sys.stderr)
            progress.update(1)
            continue
        if pending and (torch.as_tensor(item["frames"]).shape != torch.as_tensor(pending[0]["frames"]).shape
                        or len(pending) >= cfg.batch_size):
            flush()
        pending.append(item)
    flush()
    # Rows in manifest order, whatever order workers finished in.
    order = {p.entry.id: n for n, p in enumerate(plans)}
    rows.sort(key=lambda r: order[r.id])
    write_shard(Path(cfg.out) / SHARD_DIR / name, tensors, rows)
    return {"name": name, "clips": len(rows), "skipped": skipped}


def build_cache(cfg: CacheBuildConfig, *, encoders: tuple[Any, Any, Any] | None = None,
                console: Console | None = None) -> CacheMeta:
    """Encode `cfg.manifest` into `cfg.out`; resumes an unfinished build, refuses a mismatched one.

    Args:
        cfg: what to encode and where.
        encoders: already loaded `(codec, vae, text_encoder)` on `cfg.device` (skips loading
            `cfg.codec`, `cfg.vae`, `cfg.text`; the paths are still recorded in the metadata).
        console: where messages go (stderr by default).

    Returns:
        the finished cache's metadata.
    """
    console = console or Console(stderr=True)
    device = _device(cfg.device)
    encoders = encoders or _load_encoders(cfg, device)
    codec, vae, text = encoders
    plans = _plan_clips(cfg, vae.temporal_compression, codec.sample_rate, codec.hop_length)
    shards = [plans[i: i + cfg.shard_size] for i in range(0, len(plans), cfg.shard_size)]
    meta = _prepare_out(cfg, _expected_meta(cfg, codec, vae, text, len(shards)))
    # a shard none of whose clips could be encoded is tried again (its files may have been fixed)
    done = {s["name"] for s in meta.shards if s["clips"]}
    todo = [(i, s) for i, s in enumerate(shards) if shard_name(i) not in done]
    if done:
        console.print(f"resuming {cfg.out}: {len(done)} of {len(shards)} shards already written")
    # One loader for every shard still to do: its workers start once, not once a shard (each start
    # imports torch and PyAV in every worker: seconds a shard on a GPU host with 14 workers).
    flat = [plan for _, shard_plans in todo for plan in shard_plans]
    loader = DataLoader(_ClipReader(flat, cfg, codec.sample_rate, codec.channels), batch_size=None,
                        num_workers=min(cfg.workers, len(flat)), collate_fn=_identity)
    items, offset = iter(loader), 0
    with tqdm(total=len(flat), desc="encoding clips", unit="clip") as progress:
        for i, shard_plans in todo:
            progress.set_postfix_str(f"shard {i + 1}/{len(shards)}")
            record = _build_shard(i, shard_plans, items, offset, cfg, encoders, device, progress)
            offset += len(shard_plans)
            meta.shards = [s for s in meta.shards if s["name"] != record["name"]] + [record]
            meta.shards.sort(key=lambda s: s["name"])
            write_meta(cfg.out, meta)  # the shard counts as finished only once listed here
    skipped = [s for shard in meta.shards for s in shard["skipped"]]
    if skipped:
        console.print(f"[yellow]{len(skipped)} clips could not be decoded and were skipped:[/yellow]")
        for s in skipped:
            console.print(f"  {s['id']}: {s['error']}")
    entries = [row for s in meta.shards for row in read_shard_rows(Path(cfg.out) / SHARD_DIR / s["name"])]
    if not entries:  # left incomplete: training refuses it, and a rerun tries every clip again
        raise CacheError(f"no clip of {cfg.manifest} could be encoded ({len(skipped)} skipped, reasons above); "
                         "fix or remove them and run the same command again.")
    write_index(cfg.out, entries)
    meta.complete = True
    write_meta(cfg.out, meta)
    console.print(f"latent cache {cfg.out}: {len(entries)} clips in {len(meta.shards)} shards")
    return meta



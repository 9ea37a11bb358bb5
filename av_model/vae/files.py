"""Encoding video files to latent files and back (what `avgen vae encode` / `avgen vae decode` run).

A latent file is safetensors with one tensor, `latent` `(C, T', H', W')` float32, and string
metadata that lets `decode_file` restore the original clip size and refuse another autoencoder:

    format=avgen.video_latent, vae_fingerprint, normalized ("true"/"false"), fps,
    num_frames / height / width (of the source clip, before padding), source
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import ChunkConfig
from .model import VideoAutoencoder

LATENT_FORMAT = "avgen.video_latent"


class LatentFileError(ValueError):
    """A latent file that cannot be decoded with the given autoencoder; the message says why."""


def pad_clip(x: torch.Tensor, temporal_compression: int, spatial_compression: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pad a clip so an autoencoder can take it, by repeating its last frame and its edge pixels.

    Args:
        x: `(B, 3, T, H, W)`.
    Returns:
        The padded clip `(B, 3, T_p, H_p, W_p)` (T_p = 1 for an image, else the next multiple of
        the temporal compression; H_p, W_p the next multiples of the spatial compression) and the
        original `(T, H, W)`, to crop the decoded clip back.
    """
    _, _, t, h, w = x.shape
    tc, sc = temporal_compression, spatial_compression
    pt = 0 if t == 1 else (-t) % tc
    ph, pw = (-h) % sc, (-w) % sc
    if pt or ph or pw:
        x = F.pad(x, (0, pw, 0, ph, 0, pt), mode="replicate")  # (B, 3, T_p, H_p, W_p)
    return x, (t, h, w)


def frames_to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """uint8 `(T, H, W, 3)` -> float `(1, 3, T, H, W)` in [-1, 1]."""
    return frames.permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0


def pixels_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float `(1, 3, T, H, W)` in about [-1, 1] -> uint8 `(T, H, W, 3)`."""
    return ((x[0].clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)


@torch.inference_mode()
def encode_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    vae: VideoAutoencoder,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    start: float = 0.0,
    duration: float | None = None,
    chunks: ChunkConfig | None = ChunkConfig(),
    normalize: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[int, ...]:
    """Encode the video of a media file into a latent safetensors file; returns the latent shape.

    Args:
        src: any video file FFmpeg opens.
        dst: output `.safetensors`.
        vae: the autoencoder (moved to `device`).
        fps, size, start, duration: as in `avio.read_clip` (None keeps the file's).
        chunks: chunked encoding (bounded memory for long clips); None encodes in one piece.
        normalize: store `vae.normalize(z)` (what the generator works on) instead of raw latents.
    """
    from avio import read_clip

    # 1. Read and pad the clip
    clip = read_clip(Path(src), fps=fps, size=size, start=start, duration=duration, require_audio=False)
    x, (t, h, w) = pad_clip(frames_to_pixels(clip.frames), vae.temporal_compression, vae.spatial_compression)
    # 2. Encode
    vae = vae.to(device).eval()
    x = x.to(device)
    z = vae.encode_chunked(x, chunks, progress=progress) if chunks is not None else vae.encode(x)
    if normalize:
        z = vae.normalize(z)
    # 3. Write latents with what decoding needs
    metadata = {
        "format": LATENT_FORMAT,
        "vae_fingerprint": vae.fingerprint,
        "normalized": "true" if normalize else "false",
        "fps": repr(float(clip.fps)),
        "num_frames": str(t),
        "height": str(h),
        "width": str(w),
        "source": Path(src).name,
    }
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latent": z[0].float().cpu().contiguous()}, str(dst), metadata=metadata)
    return tuple(z.shape[1:])


def read_latent_file(path: str | os.PathLike[str]) -> tuple[torch.Tensor, dict[str, str]]:
    """Read a latent file: `(C, T', H', W')` float32 and its metadata (empty if it has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no latent file at {path}; make one with `avgen vae encode IN.mp4 {path.name} --vae PATH`.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise LatentFileError(f"{path} is not a safetensors file ({err}).") from err
    if "latent" in tensors:
        z = tensors["latent"]
    elif len(tensors) == 1:
        z = next(iter(tensors.values()))
    else:
        raise LatentFileError(f"{path} holds tensors {sorted(tensors)}; expected one named 'latent'.")
    if z.ndim == 5 and z.shape[0] == 1:
        z = z[0]
    if z.ndim != 4:
        raise LatentFileError(f"{path}: the latent has shape {tuple(z.shape)}; expected (C, T', H', W').")
    return z.float(), metadata


@torch.inference_mode()
def decode_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    vae: VideoAutoencoder,
    *,
    fps: float | None = None,
    chunks: ChunkConfig | None = ChunkConfig(),
    audio_from: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[int, ...]:
    """Decode a latent file to an mp4 (H.264); returns the frames' shape `(T, H, W, 3)`.

    Args:
        src: a latent file from `encode_file` (or any safetensors with a `latent` `(C, T', H', W')`).
        dst: output `.mp4`.
        vae: the autoencoder that made the latents (checked by fingerprint when the file has one).
        fps: frame rate of the output; None uses the file's (16 if it has none).
        chunks: chunked decoding; None decodes in one piece.
        audio_from: a media file whose audio (from 0 s, as long as the clip) is muxed in.
    """
    from avio import read_audio, write_clip

    # 1. Read and check the latents
    z, meta = read_latent_file(src)
    if meta.get("format", LATENT_FORMAT) != LATENT_FORMAT:
        raise LatentFileError(f"{src} is a {meta['format']!r} file, not video latents ({LATENT_FORMAT}).")
    made_by = meta.get("vae_fingerprint")
    if made_by is not None and made_by != vae.fingerprint:
        raise LatentFileError(
            f"{src} was encoded by the autoencoder with fingerprint {made_by}, but --vae has "
            f"{vae.fingerprint}; decode with the autoencoder that encoded it."
        )
    if z.shape[0] != vae.latent_dim:
        raise LatentFileError(
            f"{src} has {z.shape[0]} latent channels but the autoencoder has {vae.latent_dim}; "
            f"decode with the autoencoder that encoded it."
        )
    # 2. Decode
    vae = vae.to(device).eval()
    z = z[None].to(device)  # (1, C, T', H', W')
    if meta.get("normalized") == "true":
        z = vae.denormalize(z)
    num_frames = int(meta.get("num_frames", z.shape[2] * vae.temporal_compression))
    frames_arg = 1 if num_frames == 1 else None
    x = vae.decode_chunked(z, chunks, num_frames=frames_arg, progress=progress) if chunks is not None \
        else vae.decode(z, num_frames=frames_arg)
    # 3. Crop the padding and write
    h = int(meta.get("height", x.shape[3]))
    w = int(meta.get("width", x.shape[4]))
    h, w = h - h % 2, w - w % 2  # H.264 in yuv420p needs even sizes: drop an odd last row/column
    frames = pixels_to_frames(x[:, :, :num_frames, :h, :w].cpu())  # (T, H, W, 3)
    out_fps = fps if fps is not None else float(meta.get("fps", 16.0))
    audio, sr = None, None
    if audio_from is not None:
        audio, sr = read_audio(Path(audio_from), duration=frames.shape[0] / out_fps)
    write_clip(Path(dst), frames, fps=out_fps, audio=audio, sample_rate=sr)
    return tuple(frames.shape)

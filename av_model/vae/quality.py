"""Reconstruction quality of the autoencoder on synthetic clips: object centroids, PSNR and SSIM.

The audio of a synthetic clip depends on where its objects are at each instant (a ball lands, a
block hits a wall), so the autoencoder must keep each object on the right pixels in each frame.
The check: segment the objects by thresholding each frame against the clip's known background
(rendered from the clip's parameters, the way `av_model.data.synthetic` draws it), take the
centroid of the object pixels, and compare original and reconstruction frame by frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm.auto import tqdm

from .model import VideoAutoencoder

if TYPE_CHECKING:
    from av_model.data.synthetic import SynthConfig

DEFAULT_THRESHOLD = 40  # uint8 levels; objects differ from backgrounds by >= ~60, codec noise by < 10


def synthetic_background(clip: object, config: SynthConfig) -> np.ndarray:
    """The background (with floor and walls, without objects) of a synthetic clip, `(H, W, 3)` uint8.

    Args:
        clip: a `SynthClip` from `av_model.data.synthetic.generate_clip`.
        config: the `SynthConfig` it was generated with.
    """
    from av_model.data import synthetic
    from av_model.data.synth_scenes import Scene, build_scene

    params = clip.params  # type: ignore[attr-defined]
    # The floor and walls come from the scene's family; the random generator only shapes sounds.
    scene = build_scene(clip.family, params, config, np.random.default_rng(0))  # type: ignore[attr-defined]
    empty = Scene(sprites=[], events=[], sounds=[], caption="", floor=scene.floor, walls=scene.walls)
    # `_render` is the dataset's own drawing code: the same background, floor and walls, to the pixel.
    return synthetic._render(empty, params, config)[0]


def object_mask(frames: np.ndarray, background: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    """Pixels that differ from the background by more than `threshold` in some channel.

    Args:
        frames: `(T, H, W, 3)` uint8.
        background: `(H, W, 3)` uint8.
    Returns:
        `(T, H, W)` bool.
    """
    diff = np.abs(frames.astype(np.int16) - background.astype(np.int16)[None])  # (T, H, W, 3)
    return diff.max(axis=-1) > threshold


def centroids(mask: np.ndarray) -> np.ndarray:
    """Centroid (x, y) in pixels of each frame's mask `(T, H, W)` -> `(T, 2)`, NaN where the mask is empty."""
    t, h, w = mask.shape
    count = mask.sum(axis=(1, 2)).astype(np.float64)  # (T,)
    ys, xs = np.arange(h, dtype=np.float64) + 0.5, np.arange(w, dtype=np.float64) + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mask.sum(axis=1) * xs[None]).sum(axis=1) / count
        cy = (mask.sum(axis=2) * ys[None]).sum(axis=1) / count
    return np.stack([cx, cy], axis=1)


def centroid_errors(
    original: np.ndarray, recon: np.ndarray, background: np.ndarray, threshold: int = DEFAULT_THRESHOLD
) -> np.ndarray:
    """Per-frame distance (pixels) between object centroids of original and reconstruction, `(T,)`.

    NaN for frames with no object in the original (nothing to keep); +inf where the original
    has an object and the reconstruction lost it.
    """
    c_o = centroids(object_mask(original, background, threshold))
    c_r = centroids(object_mask(recon, background, threshold))
    err = np.linalg.norm(c_o - c_r, axis=1)
    err[np.isnan(c_o[:, 0])] = np.nan
    err[~np.isnan(c_o[:, 0]) & np.isnan(c_r[:, 0])] = np.inf
    return err


@dataclass
class QualityReport:
    """Reconstruction quality over a set of clips.

    Attributes:
        clips: clips evaluated.
        frames: frames with an object in the original (those the centroid check covers).
        centroid_within_2px: fraction of those frames whose centroid moved by at most 2 pixels.
        centroid_mean_px: mean centroid error (finite errors).
        centroid_p95_px: 95th percentile of the centroid error (inf if >5% of objects vanished).
        psnr_db: mean PSNR over frames (pixels in [0, 1]).
        ssim: mean SSIM over frames.
        l1: mean absolute error in [-1, 1] units.
        per_family: centroid_within_2px per scene family.
    """

    clips: int
    frames: int
    centroid_within_2px: float
    centroid_mean_px: float
    centroid_p95_px: float
    psnr_db: float
    ssim: float
    l1: float
    per_family: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@torch.inference_mode()
def evaluate_synthetic(
    vae: VideoAutoencoder,
    n_clips: int = 32,
    split: str = "heldout",
    seed: int = 0,
    size: int = 64,
    fps: float = 16.0,
    duration: float = 2.0,
    threshold: int = DEFAULT_THRESHOLD,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> QualityReport:
    """Reconstruct `n_clips` synthetic clips of `split` and measure centroid error, PSNR and SSIM.

    The clips are those `avgen data synth --seed SEED` writes for the split (same seeds), drawn in
    memory, so no mp4 compression enters the measurement.
    """
    from av_model.data.synthetic import SynthConfig, clip_seed, generate_clip

    config = SynthConfig(width=size, height=size, fps=fps, duration=duration)
    vae = vae.to(device).eval()
    errors: list[np.ndarray] = []
    families: list[str] = []
    psnr, ssim, l1, n_frames = 0.0, 0.0, 0.0, 0
    indices = list(range(n_clips))
    bar = tqdm(total=n_clips, desc=f"quality ({split})", disable=not progress, leave=False)
    for start in range(0, n_clips, batch_size):
        clips = [generate_clip(clip_seed(seed, split, i), config, split=split) for i in indices[start : start + batch_size]]
        frames = torch.from_numpy(np.stack([c.frames for c in clips]))  # (B, T, H, W, 3) uint8
        x = frames.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0).to(device)  # (B, 3, T, H, W)
        usable = x.shape[2] // vae.temporal_compression * vae.temporal_compression
        x = x[:, :, :usable]
        recon = vae.decode(vae.encode(x)).clamp(-1, 1)  # (B, 3, T, H, W)
        rec_u8 = ((recon + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
        for clip, rec in zip(clips, rec_u8):
            background = synthetic_background(clip, config)
            errors.append(centroid_errors(clip.frames[:usable], rec, background, threshold))
            families.append(clip.family)
        to01 = lambda v: ((v + 1) / 2).transpose(1, 2).flatten(0, 1)  # noqa: E731 - (B*T, 3, H, W)
        nf = x.shape[0] * x.shape[2]
        psnr += float(peak_signal_noise_ratio(to01(recon), to01(x), data_range=1.0, reduction="none",
                                              dim=(1, 2, 3)).sum())
        ssim += float(cast(torch.Tensor, structural_similarity_index_measure(to01(recon), to01(x), data_range=1.0,
                                                                            reduction="sum")))
        l1 += float((recon - x).abs().mean(dim=(1, 3, 4)).sum())
        n_frames += nf
        bar.update(len(clips))
    bar.close()
    all_err = np.concatenate(errors)
    valid = all_err[~np.isnan(all_err)]
    per_family: dict[str, float] = {}
    for fam in sorted(set(families)):
        e = np.concatenate([err for err, f in zip(errors, families) if f == fam])
        e = e[~np.isnan(e)]
        per_family[fam] = float((e <= 2.0).mean()) if e.size else float("nan")
    finite = valid[np.isfinite(valid)]
    return QualityReport(
        clips=n_clips,
        frames=int(valid.size),
        centroid_within_2px=float((valid <= 2.0).mean()) if valid.size else float("nan"),
        centroid_mean_px=float(finite.mean()) if finite.size else float("nan"),
        # "higher" picks an observed value, so lost objects (inf) give inf rather than NaN.
        centroid_p95_px=float(np.quantile(valid, 0.95, method="higher")) if valid.size else float("nan"),
        psnr_db=psnr / n_frames,
        ssim=ssim / n_frames,
        l1=l1 / n_frames,
        per_family=per_family,
    )

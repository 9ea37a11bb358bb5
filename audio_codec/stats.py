"""Per-channel latent statistics, so the generator trains on zero-mean, unit-variance latents.

Running sums in float64 over every latent frame of every clip (the latents of one dataset fit no
memory budget in general, and float64 keeps E[x^2] - E[x]^2 exact enough at millions of frames).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from audio_codec.base import AudioCodec

# A channel that never varies would make normalization divide by zero; its std is floored here
# (relative to the largest channel std) so it normalizes to ~0 instead of inf.
STD_FLOOR = 1e-4


@dataclass
class LatentStats:
    """Latent mean and std per channel (D,), and the number of frames they summarize."""

    mean: torch.Tensor
    std: torch.Tensor
    num_frames: int


@torch.inference_mode()
def compute_latent_stats(codec: AudioCodec, batches: Iterable[torch.Tensor | dict | None], *,
                         total: int | None = None, progress: bool = True) -> LatentStats:
    """Mean and std of `codec.encode(audio)` per latent channel over all frames of `batches`.

    Args:
        codec: the codec (its current statistics are not used).
        batches: audio (B, C, S) at the codec's rate, or dicts with an "audio" entry (as the
            codec's data loaders yield); None items (failed decodes) are skipped.
        total: number of batches, for the progress bar.
        progress: show a progress bar.

    Raises:
        ValueError: no audio at all.
    """
    d = codec.latent_dim
    s1 = torch.zeros(d, dtype=torch.float64)
    s2 = torch.zeros(d, dtype=torch.float64)
    count = 0
    was_training = codec.training
    codec.eval()
    try:
        for batch in tqdm(batches, total=total, desc="latent statistics", disable=not progress):
            if batch is None:
                continue
            audio = batch["audio"] if isinstance(batch, dict) else batch
            z = codec.encode(audio).double().cpu()  # (B, D, T)
            frames = z.transpose(0, 1).reshape(d, -1)  # (D, B*T)
            s1 += frames.sum(dim=1)
            s2 += frames.pow(2).sum(dim=1)
            count += frames.shape[1]
    finally:
        codec.train(was_training)
    if count == 0:
        raise ValueError("no audio to compute latent statistics on (every clip failed to decode, or none given).")
    mean = s1 / count
    var = (s2 / count - mean.pow(2)).clamp_min(0)
    std = var.sqrt()
    std = std.clamp_min(max(float(std.max()), 1.0) * STD_FLOOR)
    return LatentStats(mean=mean.float(), std=std.float(), num_frames=count)

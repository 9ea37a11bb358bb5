"""The centroid check on synthetic clips agrees with hand-made cases and with the clip's own frames."""

from __future__ import annotations

import numpy as np

from av_model.data.synthetic import SynthConfig, generate_clip
from av_model.vae.quality import centroid_errors, centroids, object_mask, synthetic_background


def test_centroids_of_masks() -> None:
    mask = np.zeros((3, 8, 8), dtype=bool)
    mask[0, 2:4, 4:6] = True  # pixels 4, 5 -> centre x = 5.0 (pixel centres at +0.5)
    c = centroids(mask)
    assert c[0].tolist() == [5.0, 3.0]
    assert np.isnan(c[1]).all()


def test_background_of_a_synthetic_clip_leaves_only_the_objects() -> None:
    cfg = SynthConfig(width=64, height=64, duration=1.0)
    clip = generate_clip(3, cfg, family="wall")
    background = synthetic_background(clip, cfg)
    mask = object_mask(clip.frames, background)
    area = mask.sum(axis=(1, 2))
    assert (area > 20).all() and (area < 64 * 64 * 0.2).all()  # one object per frame, not the walls
    assert np.nan_to_num(centroid_errors(clip.frames, clip.frames, background)).max() == 0.0


def test_errors_for_shifted_and_lost_objects() -> None:
    background = np.full((16, 16, 3), 20, dtype=np.uint8)
    frames = np.repeat(background[None], 3, axis=0).copy()
    frames[:, 4:8, 4:8] = 200
    shifted = np.roll(frames, 3, axis=2)
    lost = frames.copy()
    lost[1] = background
    assert np.allclose(centroid_errors(frames, shifted, background), 3.0)
    err = centroid_errors(frames, lost, background)
    assert err[0] == 0.0 and np.isinf(err[1])
    empty = np.repeat(background[None], 3, axis=0)
    assert np.isnan(centroid_errors(empty, frames, background)).all()  # no object: nothing to keep

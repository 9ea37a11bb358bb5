"""Small procedural clips with known event times, for checking metrics.

The metric tests and the benchmark need clips whose sounds have visible causes at exactly known
times, and need to shift the audio by a known offset. `bouncing_clip` draws balls bouncing in a box
(every wall or floor contact is an impact sound) and squares that flash with a tone; `dashing_clip`
a square that dashes with a whoosh. They are deliberately independent of the project's synthetic
dataset so the metrics are checked against their own ground truth; `avio.write_clip` writes them.

`save_clap_folder` and `save_clip_folder` write transformers CLAP and CLIP folders with random
weights (what `--clap` and `--clip` take), for exercising those extractors without downloading:
tiny for the tests, the published architectures for the benchmark.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ProceduralClip", "bouncing_clip", "dashing_clip", "write_tokenizer_files", "save_clap_folder",
           "save_clip_folder"]


@dataclass
class ProceduralClip:
    """A clip with ground truth.

    Attributes:
        frames: (T, H, W, 3) uint8.
        audio: (1, S) float32 in [-1, 1].
        fps: frames per second.
        sample_rate: Hz.
        events: times (seconds) of the visible causes of sounds (contacts, flash starts), sorted.
        kinds: the kind of each event ("bounce", "wall", "flash").
        audio_offset: seconds by which the audio was delayed against the events (negative: early).
    """

    frames: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int
    events: list[float]
    kinds: list[str] = field(default_factory=list)
    audio_offset: float = 0.0


def _reflect(p0: float, v: float, lo: float, hi: float, t: np.ndarray) -> np.ndarray:
    """Position at times t of a point moving at speed v between walls lo and hi (elastic)."""
    span = hi - lo
    u = np.mod(p0 - lo + v * t, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def _wall_times(p0: float, v: float, lo: float, hi: float, duration: float) -> list[float]:
    """Contact times in (0, duration) of the motion of `_reflect`: u0 + v t hits a multiple of the span."""
    if v == 0:
        return []
    span = hi - lo
    u0 = p0 - lo
    ks = range(math.floor((u0 + min(0.0, v * duration)) / span) - 1, math.ceil((u0 + max(0.0, v * duration)) / span) + 2)
    return sorted(t for k in ks if 1e-9 < (t := (k * span - u0) / v) < duration)


def bouncing_clip(
    seed: int = 0,
    *,
    size: int = 64,
    fps: float = 16.0,
    duration: float = 4.0,
    sample_rate: int = 16000,
    n_balls: int = 1,
    flash: bool = True,
    min_event_gap: float = 0.0,
    audio_offset: float = 0.0,
) -> ProceduralClip:
    """A ball bouncing under gravity between a floor and the side walls, plus a flashing square.

    Every floor contact ("bounce") and wall contact ("wall") makes an impact sound (a decaying
    sine burst, a different pitch per ball); each flash starts a short tone. The ball's speed peaks
    at a floor contact (gravity), so optical-flow magnitude peaks there as well.

    Args:
        seed: random seed of the scene parameters.
        size: frame side in pixels.
        fps: frame rate.
        duration: seconds.
        sample_rate: audio rate.
        n_balls: number of balls.
        flash: add a square that flashes (with a tone) at random times.
        min_event_gap: events closer than this to an earlier event are dropped from the scene
            (their sound too), so tests can ask for sparse, unambiguous events.
        audio_offset: delay of the audio against the picture in seconds (negative: audio early).

    Returns:
        A `ProceduralClip`.
    """
    rng = np.random.default_rng(seed)
    n_frames = int(round(duration * fps))
    t_frames = np.arange(n_frames) / fps
    radius = size * 0.07
    lo, hi = radius, size - radius
    events: list[tuple[float, str, int]] = []
    tracks = []
    for b in range(n_balls):
        x0, vx = rng.uniform(lo, hi), rng.choice([-1, 1]) * rng.uniform(0.15, 0.35) * size
        # Vertical: periodic bounce with period P, apex height h: y measured down from the top.
        period = rng.uniform(0.7, 1.1)
        phase = rng.uniform(0.1, period - 0.1)
        h = rng.uniform(0.45, 0.7) * (hi - lo)
        g = 8 * h / period**2
        floor_times = [phase + k * period for k in range(int(duration / period) + 2) if phase + k * period < duration]
        events += [(t, "bounce", b) for t in floor_times]
        events += [(t, "wall", b) for t in _wall_times(x0, vx, lo, hi, duration)]
        tracks.append((x0, vx, period, phase, g))
    flashes: list[float] = []
    if flash:
        t = rng.uniform(0.3, 0.9)
        while t < duration - 0.3:
            flashes.append(t)
            t += rng.uniform(0.9, 1.6)
        events += [(t, "flash", -1) for t in flashes]
    events.sort()
    kept: list[tuple[float, str, int]] = []
    for ev in events:
        if not kept or ev[0] - kept[-1][0] >= min_event_gap:
            kept.append(ev)
    dropped_flashes = set(flashes) - {t for t, k, _ in kept if k == "flash"}

    # 1. Picture.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    frames = np.full((n_frames, size, size, 3), 24, dtype=np.float32)
    colors = [(230, 80, 60), (70, 200, 90), (80, 120, 240)]
    for b, (x0, vx, period, phase, g) in enumerate(tracks):
        x = _reflect(x0, vx, lo, hi, t_frames)
        tau = np.mod(t_frames - phase, period) - period / 2  # 0 at the apex
        y = hi - 0.5 * g * ((period / 2) ** 2 - tau**2)  # image y grows downwards; floor at tau = +-P/2
        for i in range(n_frames):
            cover = np.clip(radius + 0.5 - np.hypot(xx - x[i], yy - y[i]), 0, 1)[..., None]
            frames[i] = frames[i] * (1 - cover) + np.array(colors[b % 3], np.float32) * cover
    sq = slice(size // 16, size // 16 + size // 6)
    for t in flashes:
        if t in dropped_flashes:
            continue
        on = (t_frames >= t) & (t_frames < t + 0.25)
        frames[on, sq, sq] = 250.0

    # 2. Sound, delayed by audio_offset.
    n_samples = int(round(duration * sample_rate))
    audio = np.zeros(n_samples, dtype=np.float64)
    for t, kind, b in kept:
        start = int(round((t + audio_offset) * sample_rate))
        if start >= n_samples or start < 0:
            continue
        n = n_samples - start
        tt = np.arange(n) / sample_rate
        if kind == "flash":
            env = np.clip(tt / 0.004, 0, 1) * np.clip((0.25 - tt) / 0.01, 0, 1)
            audio[start:] += 0.3 * np.sin(2 * np.pi * 660 * tt) * env
        else:
            f = 300.0 * (1.5 ** b) * (1.3 if kind == "wall" else 1.0)
            audio[start:] += 0.5 * np.sin(2 * np.pi * f * tt) * np.exp(-tt / 0.04)
    audio += 1e-3 * rng.standard_normal(n_samples)
    return ProceduralClip(
        frames=np.clip(np.round(frames), 0, 255).astype(np.uint8),
        audio=np.clip(audio, -1, 1).astype(np.float32)[None],
        fps=fps,
        sample_rate=sample_rate,
        events=[t for t, _, _ in kept],
        kinds=[k for _, k, _ in kept],
        audio_offset=audio_offset,
    )


def dashing_clip(
    seed: int = 0,
    *,
    size: int = 64,
    fps: float = 16.0,
    duration: float = 4.0,
    sample_rate: int = 16000,
    min_event_gap: float = 0.6,
    dash_seconds: float = 0.08,
    audio_offset: float = 0.0,
) -> ProceduralClip:
    """A square that rests, then dashes to a new spot with a "whoosh-thud" at the dash's midpoint.

    Its speed follows a bell centred on the event (position is a logistic step of width
    `dash_seconds`), so the optical-flow magnitude peaks in the frame interval containing the
    event: the scene AV-Align's motion peaks are made for.

    Args:
        seed: random seed of the event times and positions.
        size, fps, duration, sample_rate: geometry.
        min_event_gap: smallest time between dashes.
        dash_seconds: time constant of the dash.
        audio_offset: delay of the audio against the picture in seconds.

    Returns:
        A `ProceduralClip` whose events are the dash midpoints.
    """
    rng = np.random.default_rng(seed)
    times: list[float] = []
    t = rng.uniform(0.3, 0.6)
    while t < duration - 0.3:
        times.append(float(t))
        t += min_event_gap + rng.uniform(0.0, 0.5)
    n_frames = int(round(duration * fps))
    tf = np.arange(n_frames) / fps
    side = size // 5
    spots = rng.uniform(side, size - 2 * side, size=(len(times) + 1, 2))
    pos = np.repeat(spots[:1], n_frames, axis=0).astype(np.float64)
    for k, te in enumerate(times):
        step = 1.0 / (1.0 + np.exp(-(tf - te) / (dash_seconds / 4)))  # 0 -> 1 around te
        pos += (spots[k + 1] - spots[k])[None, :] * step[:, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    frames = np.full((n_frames, size, size, 3), 30.0, dtype=np.float32)
    for i in range(n_frames):
        cx, cy = pos[i] + side / 2
        cover = (np.clip(side / 2 + 0.5 - np.abs(xx - cx), 0, 1) * np.clip(side / 2 + 0.5 - np.abs(yy - cy), 0, 1))[..., None]
        frames[i] = frames[i] * (1 - cover) + np.array([240.0, 200.0, 60.0], np.float32) * cover
    n_samples = int(round(duration * sample_rate))
    audio = 1e-3 * rng.standard_normal(n_samples)
    for te in times:
        start = int(round((te + audio_offset) * sample_rate))
        if 0 <= start < n_samples:
            tt = np.arange(n_samples - start) / sample_rate
            audio[start:] += 0.6 * np.sin(2 * np.pi * 420 * tt) * np.exp(-tt / 0.05)
    return ProceduralClip(
        frames=np.clip(np.round(frames), 0, 255).astype(np.uint8),
        audio=np.clip(audio, -1, 1).astype(np.float32)[None],
        fps=fps, sample_rate=sample_rate, events=times, kinds=["dash"] * len(times), audio_offset=audio_offset,
    )


# ----------------------------------------------------------------------------------------------
# transformers folders with random weights


def write_tokenizer_files(folder: Path) -> dict[str, int]:
    """A byte-level BPE vocabulary of single characters (`vocab.json`, `merges.txt` in `folder`),
    enough for the RoBERTa and CLIP tokenizers of the CLAP and CLIP processors; returns the vocabulary."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in "abcdefghijklmnopqrstuvwxyz,Ġ":
        vocab[c] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return vocab


def save_clap_folder(folder: Path, *, tiny: bool = False) -> Path:
    """A ClapModel with random weights and its processor, saved to `folder`; returns `folder`.

    Args:
        tiny: a 16-wide model on 8 kHz audio (fast, for tests); else transformers' default
            architecture (HTSAT audio, RoBERTa text), as published.
    """
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocab = write_tokenizer_files(folder)
    tok = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    if tiny:
        config = ClapConfig(
            text_config=dict(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=64, pad_token_id=1),
            audio_config=dict(hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=8,
                              spec_size=64, window_size=4, num_mel_bins=16, patch_stride=4, patch_size=4,
                              enable_fusion=False),
            projection_dim=8)
        fe = ClapFeatureExtractor(feature_size=16, sampling_rate=8000, hop_length=80, max_length_s=1,
                                  fft_window_size=512, truncation="rand_trunc", padding="repeatpad")
    else:
        config, fe = ClapConfig(), ClapFeatureExtractor(truncation="rand_trunc")
    ClapModel(config).save_pretrained(folder)
    ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(folder)
    return folder


def save_clip_folder(folder: Path, *, tiny: bool = False) -> Path:
    """A CLIPModel with random weights and its processor, saved to `folder`; returns `folder`.

    Args:
        tiny: a 16-wide model on 32 x 32 images (fast, for tests); else transformers' default
            architecture (ViT-B/32), as published.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = write_tokenizer_files(folder)
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token="<unk>", bos_token="<s>",
                        eos_token="</s>", pad_token="<pad>")
    if tiny:
        config = CLIPConfig(
            text_config=dict(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=64, bos_token_id=0, eos_token_id=2,
                             pad_token_id=1),
            vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               image_size=32, patch_size=8),
            projection_dim=8)
        images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        config, images = CLIPConfig(), CLIPImageProcessor()
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    return folder

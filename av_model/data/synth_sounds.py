"""Sound synthesis for the synthetic dataset (numpy only).

Impacts are modal synthesis: a few exponentially decaying sinusoids whose frequency ratios and
decay times characterise the material (after van den Doel's physically based contact sounds), on
top of a millisecond noise burst for the contact itself. Tones are short notes with a 2 ms attack.
Every sound starts at full energy on its first sample, so its onset is the event time to the
sample and onset detectors find it within a few milliseconds.

Written by hand because no audio library ships parametric impact or tone generators that are
this small, deterministic and dependency-free.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["MATERIALS", "TIMBRES", "Material", "impact", "mix", "tone"]


@dataclass(frozen=True)
class Material:
    """How an object of one material sounds and moves.

    Attributes:
        base_hz: lowest mode for a medium-sized object (small is higher, large lower).
        ratios: mode frequencies relative to the lowest.
        gains: relative mode amplitudes.
        decays: mode decay times in seconds.
        noise: amplitude of the contact noise burst relative to the modes.
        restitution: how much of its speed a bounce keeps (rubber bounces most).
        noun, adjective: words for captions ("a metallic clang").
    """

    base_hz: float
    ratios: tuple[float, ...]
    gains: tuple[float, ...]
    decays: tuple[float, ...]
    noise: float
    restitution: float
    noun: str
    adjective: str


MATERIALS: dict[str, Material] = {
    # wood: low damping-limited modes, short and dry
    "wood": Material(420.0, (1.0, 2.57, 4.3), (1.0, 0.5, 0.25), (0.045, 0.025, 0.015), 0.7, 0.6, "knock", "wooden"),
    # metal: inharmonic bar modes (1, 2.76, 5.40, 8.93), long ring
    "metal": Material(
        700.0, (1.0, 2.76, 5.40, 8.93), (1.0, 0.6, 0.4, 0.25), (0.3, 0.2, 0.12, 0.08), 0.8, 0.55, "clang", "metallic"
    ),
    # glass: high, bright, medium ring
    "glass": Material(
        1800.0, (1.0, 2.32, 4.25, 6.63), (1.0, 0.5, 0.3, 0.2), (0.18, 0.12, 0.08, 0.05), 0.7, 0.5, "clink", "glass"
    ),
    # rubber: low and heavily damped, mostly the contact noise
    "rubber": Material(160.0, (1.0, 1.5, 2.2), (1.0, 0.5, 0.3), (0.03, 0.02, 0.015), 0.9, 0.8, "thud", "rubber"),
}

# Size scales pitch the way it does for real objects: a smaller body has higher modes.
SIZE_PITCH: dict[str, float] = {"small": 1.5, "medium": 1.0, "large": 0.65}

# Tone colours for the flash family: harmonic numbers and their amplitudes.
TIMBRES: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "beep": ((1,), (1.0,)),
    "chime": ((1, 2, 3, 4), (1.0, 0.5, 0.3, 0.15)),
    "buzz": ((1, 3, 5, 7), (1.0, 0.33, 0.2, 0.14)),
}

_ATTACK_S = 0.002  # fast enough that onsets are sharp, slow enough not to click
_RELEASE_S = 0.02


@functools.lru_cache(maxsize=256)
def _modes(material: str, pitch_hz: float, sample_rate: int, decay_scale: float) -> np.ndarray:
    """The ringing part of an impact (unnormalized), cached: an object repeats its own sound."""
    mat = MATERIALS[material]
    decays = np.asarray(mat.decays) * decay_scale
    # ring until ~60 dB down (7 time constants), at most 1.5 s
    length = int(min(7.0 * decays.max(), 1.5) * sample_rate) + 1
    t = np.arange(length) / sample_rate
    wave = np.zeros(length, dtype=np.float64)
    for ratio, gain, tau in zip(mat.ratios, mat.gains, decays):
        f = pitch_hz * ratio
        if f < 0.45 * sample_rate:  # modes above Nyquist would alias into wrong pitches
            # cosine phase: every mode is at its peak on the first sample, so the attack is instant
            wave += gain * np.exp(-t / tau) * np.cos(2 * np.pi * f * t)
    # fade the truncated tail out: a hard cut is a broadband click that reads as a false onset
    fade = min(int(0.03 * sample_rate), length)
    wave[-fade:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
    wave.flags.writeable = False
    return wave


def impact(
    material: str,
    pitch_hz: float,
    amplitude: float,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    decay_scale: float = 1.0,
) -> np.ndarray:
    """An impact sound, peak `amplitude`, loudest at its first millisecond.

    Args:
        material: a key of `MATERIALS`.
        pitch_hz: frequency of the lowest mode.
        amplitude: peak absolute value.
        sample_rate: samples per second.
        rng: source of the contact noise (so the same seed gives the same sound).
        decay_scale: multiplies every decay time (ticks use short, clipped versions).

    Returns:
        (S,) float32 waveform.
    """
    wave = _modes(material, float(pitch_hz), int(sample_rate), float(decay_scale)).copy()
    burst = int(0.003 * sample_rate) + 1
    noise = rng.standard_normal(burst) * np.exp(-np.arange(burst) / (0.0015 * sample_rate))
    wave[:burst] += MATERIALS[material].noise * noise
    wave *= amplitude / max(np.abs(wave).max(), 1e-9)
    return wave.astype(np.float32)


def tone(
    pitch_hz: float, seconds: float, amplitude: float, sample_rate: int, timbre: str = "beep"
) -> np.ndarray:
    """A steady note with a 2 ms attack and 20 ms release.

    Returns:
        (S,) float32 waveform, `seconds` long plus the release.
    """
    harmonics, gains = TIMBRES[timbre]
    length = int(round((seconds + _RELEASE_S) * sample_rate))
    t = np.arange(length) / sample_rate
    wave = np.zeros(length, dtype=np.float64)
    for h, g in zip(harmonics, gains):
        if pitch_hz * h < 0.45 * sample_rate:
            wave += g * np.sin(2 * np.pi * pitch_hz * h * t)
    env = np.ones(length)
    attack = max(int(_ATTACK_S * sample_rate), 1)
    env[:attack] = np.linspace(0.0, 1.0, attack, endpoint=False) + 1.0 / attack  # non-zero at onset
    release_start = int(round(seconds * sample_rate))
    env[release_start:] = np.linspace(1.0, 0.0, length - release_start)
    wave *= env
    wave *= amplitude / max(np.abs(wave).max(), 1e-9)
    return wave.astype(np.float32)


def mix(
    sounds: list[tuple[float, np.ndarray]],
    num_samples: int,
    sample_rate: int,
    noise_level: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Place each (onset seconds, waveform) at its sample and add background noise.

    The onset sample is `round(onset * sample_rate)`; event times are already on that grid, so
    sounds start exactly at their events. If the sum would clip, the whole mix is scaled down
    (scaling keeps every onset where it is, clipping would not).

    Returns:
        (1, num_samples) float32 in [-1, 1].
    """
    out = noise_level * rng.standard_normal(num_samples)
    for onset, wave in sounds:
        start = int(round(onset * sample_rate))
        if start >= num_samples:
            continue
        n = min(len(wave), num_samples - start)
        out[start : start + n] += wave[:n]
    peak = np.abs(out).max()
    if peak > 0.98:
        out *= 0.98 / peak
    return out.astype(np.float32)[None, :]

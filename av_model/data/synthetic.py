"""The synthetic audio-video dataset: the embedded default that needs no download.

Every clip is a procedurally generated scene in which every sound has a visible cause at a known
time (a ball landing, a block hitting a wall, a shape flashing with a tone, a pendulum at the end
of its swing). A clip is a pure function of (seed, config, family, split): the same arguments give
the same frames and audio bytes. `make_dataset` writes mp4 files plus a JSONL manifest in worker
processes; `SyntheticStream` yields the same clips in memory without touching the disk.

Scene families, vocabulary and the held-out rule live in `synth_scenes`; see docs/data.md.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from tqdm.auto import tqdm

from av_model.data.synth_draw import Canvas
from av_model.data.synth_scenes import (
    BACKGROUNDS,
    COLOURS,
    FAMILIES,
    FLOOR_FRAC,
    WALL_FRAC,
    Event,
    Scene,
    build_scene,
    sample_params,
)
from av_model.data.synth_sounds import mix
from avio import atomic_write_text, write_clip

__all__ = [
    "FAMILIES",
    "SPLITS",
    "Event",
    "SynthClip",
    "SynthConfig",
    "SyntheticStream",
    "clip_seed",
    "dataset_is_current",
    "generate_clip",
    "make_dataset",
]

SPLITS = ("train", "val", "heldout")
_MAX_PER_SPLIT = 1_000_000  # clip indices per split; keeps per-clip seeds of splits disjoint


class ClipLength:
    """`num_frames` and `num_samples` of a clip config with `duration`, `fps` and `sample_rate`."""

    duration: float
    fps: float
    sample_rate: int

    @property
    def num_frames(self) -> int:
        return round(self.duration * self.fps)

    @property
    def num_samples(self) -> int:
        return round(self.duration * self.sample_rate)


@dataclass(frozen=True)
class SynthConfig(ClipLength):
    """Geometry and content of synthetic clips.

    Attributes:
        width, height: frame size in pixels (even, >= 32: H.264 needs even sizes and the objects
            need room).
        fps: video frame rate.
        duration: clip length in seconds (>= 1.0 so every family has at least one event).
        sample_rate: audio sample rate in Hz (mono).
        families: scene families to draw from (see `FAMILIES`).
        max_noise: background noise standard deviation is drawn uniformly in [0, max_noise]; keep
            it well under the sounds' 0.3-0.8 peaks so every onset stays detectable.
        crf: x264 quality of the written mp4 files (lower is better, 18 is visually lossless).
    """

    width: int = 64
    height: int = 64
    fps: float = 16.0
    duration: float = 2.0
    sample_rate: int = 24000
    families: tuple[str, ...] = FAMILIES
    max_noise: float = 0.01
    crf: int = 18

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 32 or v % 2:
                raise ValueError(f"SynthConfig.{name} must be an even int >= 32 (H.264 needs even sizes); got {v!r}.")
        if not self.fps > 0:
            raise ValueError(f"SynthConfig.fps must be > 0; got {self.fps!r}.")
        if not 1.0 <= self.duration <= 600.0:
            raise ValueError(f"SynthConfig.duration must be in [1, 600] seconds; got {self.duration!r}.")
        if not isinstance(self.sample_rate, int) or self.sample_rate < 8000:
            raise ValueError(f"SynthConfig.sample_rate must be an int >= 8000 Hz; got {self.sample_rate!r}.")
        families = tuple(self.families)
        object.__setattr__(self, "families", families)  # accept lists from YAML/JSON
        unknown = [f for f in families if f not in FAMILIES]
        if not families or unknown:
            raise ValueError(f"SynthConfig.families must be a non-empty subset of {FAMILIES}; got {families!r}.")
        if not 0.0 <= self.max_noise <= 0.05:
            raise ValueError(f"SynthConfig.max_noise must be in [0, 0.05] so onsets stay detectable; got {self.max_noise!r}.")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"SynthConfig.crf must be in [0, 51]; got {self.crf!r}.")


@dataclass
class SynthClip:
    """One generated clip.

    Attributes:
        frames: (T, H, W, 3) uint8; frame k shows the scene at k / fps seconds.
        audio: (1, S) float32 in [-1, 1].
        events: every sound's onset time (on the sample grid), kind and object index.
        params: every random choice, JSON-serializable; the caption is a function of these.
    """

    id: str
    seed: int
    family: str
    caption: str
    frames: np.ndarray
    audio: np.ndarray
    events: list[Event]
    params: dict[str, Any]
    split: str
    fps: float = 16.0
    sample_rate: int = 24000

    def manifest_row(self, path: str) -> dict[str, Any]:
        """The manifest record of this clip written at `path` (relative to the manifest)."""
        duration = self.frames.shape[0] / self.fps
        return {
            "id": self.id, "path": path, "caption": self.caption, "split": self.split,
            "start": 0.0, "end": duration, "duration": duration, "fps": self.fps,
            "sample_rate": self.sample_rate, "family": self.family, "seed": self.seed,
            "events": [e.to_dict() for e in self.events], "params": self.params,
        }


def clip_seed(seed: int, split: str, index: int) -> int:
    """Seed of clip `index` of `split` in a dataset made with `seed` (distinct across splits)."""
    if index >= _MAX_PER_SPLIT:
        raise ValueError(f"at most {_MAX_PER_SPLIT} clips per split; got index {index}.")
    return (seed * len(SPLITS) + SPLITS.index(split)) * _MAX_PER_SPLIT + index


def _render(scene: Scene, params: dict[str, Any], cfg: SynthConfig) -> np.ndarray:
    """Draw a scene into (T, H, W, 3) uint8 frames."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    canvas = Canvas(T, H, W, np.asarray(BACKGROUNDS[params["background"]]))
    grey = np.array([150, 150, 150])
    if scene.floor:
        canvas.rect(H * (1 - FLOOR_FRAC), 0, H, W, grey)
    if scene.walls:
        wall = max(2.0, round(WALL_FRAC * W))
        canvas.rect(0, 0, H, wall, grey)
        canvas.rect(0, W - wall, H, W, grey)
    frame_times = np.arange(T) / cfg.fps
    for sprite in scene.sprites:
        times = frame_times.copy()
        for t in sprite.cause_times:  # the frame nearest a cause shows that exact instant
            k = int(round(t * cfg.fps))
            if 0 <= k < T:
                times[k] = t
        x, y = sprite.path(times)  # (T,), (T,)
        colour = np.asarray(COLOURS[sprite.colour], dtype=np.float32)
        if sprite.pivot is not None:
            canvas.segment(sprite.pivot[0], sprite.pivot[1], x, y, 1.2, np.array([200, 200, 200]))
            canvas.shape("ball", np.full(T, sprite.pivot[0]), np.full(T, sprite.pivot[1]), 1.5, grey)
        if sprite.lit is None:
            canvas.shape(sprite.shape, x, y, sprite.radius, colour)
            continue
        on = np.zeros(T, dtype=bool)
        for start, end in sprite.lit:  # lit from the frame nearest the onset, at least one frame
            k0 = int(round(start * cfg.fps))
            on[k0 : max(int(round(end * cfg.fps)), k0 + 1)] = True
        bright = colour + (255.0 - colour) * 0.45
        colours = np.where(on[:, None], bright[None], colour[None] * 0.5)  # (T, 3): dim when off
        drawn = canvas.shape(sprite.shape, x, y, sprite.radius * np.where(on, 1.1, 1.0), colours,
                             halo=0.6 * sprite.radius)
        canvas.glow(drawn, 0.6 * sprite.radius, on * 0.5, bright)
    return canvas.to_uint8()


def generate_clip(
    seed: int,
    config: SynthConfig | None = None,
    family: str | None = None,
    split: str = "train",
    clip_id: str | None = None,
) -> SynthClip:
    """Generate one clip; the same arguments always give identical frames and audio.

    Args:
        seed: the clip's random seed.
        config: geometry and content (default `SynthConfig()`).
        family: scene family, or None to draw one from `config.families` with the seed.
        split: "train"/"val" never contain held-out combinations, "heldout" always has one.
        clip_id: id to record (default "<split>-<seed>").

    Returns:
        SynthClip with frames (T, H, W, 3) uint8 and audio (1, S) float32.
    """
    cfg = config or SynthConfig()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
    if family is not None and family not in cfg.families:
        raise ValueError(f"family {family!r} is not among the configured families {cfg.families}.")
    rng = np.random.default_rng(seed)
    fam = family or cfg.families[int(rng.integers(len(cfg.families)))]
    # 1. every random choice, with the held-out rule applied
    params = sample_params(fam, rng, cfg, split)
    # 2. motion paths, sounds and caption from those choices
    scene = build_scene(fam, params, cfg, rng)
    # 3. pixels and samples
    frames = _render(scene, params, cfg)
    audio = mix(scene.sounds, cfg.num_samples, cfg.sample_rate, params["noise_level"], rng)
    return SynthClip(
        id=clip_id or f"{split}-{seed}", seed=int(seed), family=fam, caption=scene.caption,
        frames=frames, audio=audio, events=scene.events, params=params, split=split,
        fps=cfg.fps, sample_rate=cfg.sample_rate,
    )


# ----------------------------------------------------------------------------------------------
# writing a dataset


def _make_one(task: tuple[Path, SynthConfig, str, int, int, str]) -> dict[str, Any]:
    out_dir, cfg, split, index, seed, family = task
    clip = generate_clip(seed, cfg, family, split, clip_id=f"{split}-{index:05d}")
    rel = f"{split}/{clip.id}.mp4"
    write_clip(out_dir / rel, clip.frames, cfg.fps, clip.audio, cfg.sample_rate, crf=cfg.crf)
    return clip.manifest_row(rel)


def _tasks(out_dir: Path, cfg: SynthConfig, counts: dict[str, int], seed: int) -> list[tuple[Any, ...]]:
    tasks = []
    for split in SPLITS:
        for i in range(counts[split]):
            # families in turn, so every family is equally represented in every split
            tasks.append((out_dir, cfg, split, i, clip_seed(seed, split, i), cfg.families[i % len(cfg.families)]))
    return tasks


def _recipe(cfg: SynthConfig, counts: dict[str, int], seed: int) -> dict[str, Any]:
    return {"config": {**asdict(cfg), "families": list(cfg.families)}, "counts": counts, "seed": seed}


def dataset_is_current(out_dir: str | Path, config: SynthConfig, counts: dict[str, int], seed: int) -> bool:
    """Whether `out_dir` already holds exactly this dataset (same recipe, every file present)."""
    out = Path(out_dir)
    manifest, recipe_path = out / "manifest.jsonl", out / "synth_config.json"
    if not (manifest.is_file() and recipe_path.is_file()):
        return False
    if json.loads(recipe_path.read_text()) != _recipe(config, counts, seed):
        return False
    with manifest.open() as f:
        return all((out / json.loads(line)["path"]).is_file() for line in f if line.strip())


def make_dataset(
    out_dir: str | Path,
    config: SynthConfig | None = None,
    n_train: int = 1000,
    n_val: int = 100,
    n_heldout: int = 100,
    seed: int = 0,
    workers: int = 2,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write `out_dir/<split>/<id>.mp4` and `out_dir/manifest.jsonl`; returns the manifest path.

    A folder already holding the same dataset (same config, counts and seed, all files present)
    is left as it is, so running this twice is cheap. A folder holding a different one is refused
    unless `overwrite`.

    Args:
        out_dir: dataset folder (created).
        config: clip geometry and content.
        n_train, n_val, n_heldout: clips per split.
        seed: dataset seed; clip i of a split gets `clip_seed(seed, split, i)`.
        workers: processes generating and encoding clips (1 runs in this process).
        overwrite: replace a different dataset already in `out_dir`.
        progress: show a progress bar.
    """
    cfg = config or SynthConfig()
    counts = {"train": n_train, "val": n_val, "heldout": n_heldout}
    for split, n in counts.items():
        if not isinstance(n, int) or not 0 <= n < _MAX_PER_SPLIT:
            raise ValueError(f"n_{split} must be an int in [0, {_MAX_PER_SPLIT}); got {n!r}.")
    if sum(counts.values()) == 0:
        raise ValueError("nothing to make: n_train, n_val and n_heldout are all 0.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}.")
    out = Path(out_dir)
    manifest, recipe_path = out / "manifest.jsonl", out / "synth_config.json"
    recipe = _recipe(cfg, counts, seed)
    if manifest.exists() and not overwrite:
        if dataset_is_current(out, cfg, counts, seed):
            if progress:
                print(f"{manifest} already holds this dataset; nothing to do.", file=sys.stderr)
            return manifest
        raise FileExistsError(
            f"{out} already holds a different dataset (see {recipe_path}); choose another folder or "
            "pass overwrite=True (--overwrite) to replace it."
        )
    out.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(out, cfg, counts, seed)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(tasks), desc="synthetic clips", unit="clip", disable=not progress)
    if workers == 1:
        for task in tasks:
            rows.append(_make_one(task))
            bar.update()
    else:
        # fork where available: workers start in milliseconds and inherit the imported modules;
        # they only run numpy and FFmpeg, never torch ops, so forking a process with torch is safe
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
            for row in pool.imap(_make_one, tasks, chunksize=8):
                rows.append(row)
                bar.update()
    bar.close()
    # imap keeps task order: splits in order, clips by index; never leave a half-written manifest behind
    atomic_write_text(manifest, "".join(json.dumps(row) + "\n" for row in rows))
    recipe_path.write_text(json.dumps(recipe, indent=2) + "\n")
    return manifest


# ----------------------------------------------------------------------------------------------
# streaming in memory


class SyntheticStream(IterableDataset):
    """Synthetic clips generated on the fly, the same ones `make_dataset` would write.

    Items have the layout of `ClipDataset` items: {"id", "frames" (T, H, W, 3) uint8 tensor,
    "audio" (1, S) float32 tensor, "caption"} plus "family" and "events" (list of dicts). With
    DataLoader workers, worker w of n yields clips w, w + n, w + 2n, ...

    Args:
        config: clip geometry and content.
        split: which split's clips to generate.
        num_clips: clips per pass; None streams forever.
        seed: dataset seed (clip i has seed `clip_seed(seed, split, i)`).
    """

    def __init__(
        self, config: SynthConfig | None = None, split: str = "train", num_clips: int | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
        if num_clips is not None and not 0 < num_clips <= _MAX_PER_SPLIT:
            raise ValueError(f"num_clips must be None or in (0, {_MAX_PER_SPLIT}]; got {num_clips!r}.")
        self.config = config or SynthConfig()
        self.split, self.num_clips, self.seed = split, num_clips, seed

    def __len__(self) -> int:
        if self.num_clips is None:
            raise TypeError("an endless SyntheticStream (num_clips=None) has no length")
        return self.num_clips

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        families = self.config.families
        i = wid
        while self.num_clips is None or i < self.num_clips:
            index = i % _MAX_PER_SPLIT
            clip = generate_clip(clip_seed(self.seed, self.split, index), self.config,
                                 families[index % len(families)], self.split, clip_id=f"{self.split}-{index:05d}")
            yield {
                "id": clip.id,
                "frames": torch.from_numpy(clip.frames),
                "audio": torch.from_numpy(clip.audio),
                "caption": clip.caption,
                "family": clip.family,
                "events": [e.to_dict() for e in clip.events],
            }
            i += nw


"""The synthetic dataset: determinism, events that match sound and picture, captions, splits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from av_model.data.synth_scenes import (
    COLOURS,
    FLOOR_FRAC,
    HELDOUT_COLOUR_FAMILY,
    HELDOUT_SHAPE_SOUND,
    WALL_FRAC,
    build_scene,
    heldout_pairs,
    sample_params,
)
from av_model.data.synth_sounds import mix
from av_model.data.synthetic import (
    FAMILIES,
    SynthConfig,
    SyntheticStream,
    clip_seed,
    generate_clip,
    make_dataset,
)
from avio import load_manifest, read_clip

CFG = SynthConfig()
_NUM = {"once": 1, "twice": 2, "three times": 3, "four times": 4, "five times": 5, "six times": 6,
        "seven times": 7, "eight times": 8, "nine times": 9, "ten times": 10}


def test_same_seed_same_clip() -> None:
    for family in FAMILIES:
        a, b = generate_clip(7, CFG, family), generate_clip(7, CFG, family)
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
        assert a.caption == b.caption and a.events == b.events and a.params == b.params
    c = generate_clip(8, CFG, "bounce")
    assert not np.array_equal(generate_clip(7, CFG, "bounce").frames, c.frames)


def test_clip_geometry_and_ranges() -> None:
    cfg = SynthConfig(width=48, height=32, fps=10.0, duration=1.5, sample_rate=16000)
    for family in FAMILIES:
        clip = generate_clip(3, cfg, family)
        assert clip.frames.shape == (15, 32, 48, 3) and clip.frames.dtype == np.uint8
        assert clip.audio.shape == (1, 24000) and clip.audio.dtype == np.float32
        assert np.abs(clip.audio).max() <= 1.0
        json.dumps(clip.params)  # manifest rows must serialize


@pytest.mark.parametrize("family", FAMILIES)
def test_every_event_has_a_sharp_sound_starting_on_its_sample(family: str) -> None:
    for seed in range(4):
        clip = generate_clip(seed, CFG, family)
        # rebuild the scene the way generate_clip does, to see each sound on its own
        rng = np.random.default_rng(seed)
        scene = build_scene(family, sample_params(family, rng, CFG, "train"), CFG, rng)
        assert scene.events == clip.events and clip.events, "every clip has at least one event"
        times = [e.time for e in clip.events]
        assert times == sorted(times) and 0 < times[0] and times[-1] < CFG.duration
        onsets = sorted(t for t, _ in scene.sounds)
        assert onsets == sorted(times)  # one sound per event, at the event time
        for t, wave in scene.sounds:
            n = t * CFG.sample_rate
            assert abs(n - round(n)) < 1e-6  # on the sample grid
            # fast attack: within 3 ms the sound reaches half of its peak
            assert np.abs(wave[: int(0.003 * CFG.sample_rate)]).max() >= 0.5 * np.abs(wave).max()
            assert np.abs(wave).max() >= 0.25  # loud enough over noise <= 0.01


def test_mix_places_sounds_on_their_sample() -> None:
    rng = np.random.default_rng(0)
    out = mix([(0.5, np.ones(10, np.float32)), (0.25, np.full(5, 0.5, np.float32))], 1000, 1000, 0.0, rng)
    assert out.shape == (1, 1000)
    assert np.nonzero(out[0])[0].tolist() == [*range(250, 255), *range(500, 510)]


def _object_pixels(frame: np.ndarray, colour: str, tol: float = 40.0) -> np.ndarray:
    diff = np.abs(frame.astype(np.float32) - np.asarray(COLOURS[colour], np.float32)).max(axis=-1)
    return diff < tol  # (H, W) pixels that are (nearly) the object's colour


def test_bounce_touches_the_floor_on_the_event_frame() -> None:
    for seed in range(6):
        clip = generate_clip(seed, CFG, "bounce")
        floor_top = CFG.height * (1 - FLOOR_FRAC)
        colour = clip.params["objects"][0]["colour"]
        for ev in clip.events:
            k = round(ev.time * CFG.fps)
            if k >= clip.frames.shape[0]:
                continue
            rows = np.nonzero(_object_pixels(clip.frames[k], colour).any(axis=1))[0]
            assert rows.size and rows.max() >= floor_top - 1.5, (seed, ev)
        # and the object is in the air in between: the frame midway between two landings is higher
        if len(clip.events) >= 2:
            mid = round((clip.events[0].time + clip.events[1].time) / 2 * CFG.fps)
            rows = np.nonzero(_object_pixels(clip.frames[mid], colour).any(axis=1))[0]
            assert rows.max() < floor_top - 3


def test_wall_hit_touches_a_wall_on_the_event_frame() -> None:
    wall = max(2.0, round(WALL_FRAC * CFG.width))
    for seed in range(6):
        clip = generate_clip(seed, CFG, "wall")
        colour = clip.params["objects"][0]["colour"]
        for ev in clip.events:
            cols = np.nonzero(_object_pixels(clip.frames[round(ev.time * CFG.fps)], colour).any(axis=0))[0]
            assert cols.min() <= wall + 1.5 or cols.max() >= CFG.width - wall - 2.5, (seed, ev)


def test_flash_lights_up_on_the_event_frame() -> None:
    for seed in range(6):
        clip = generate_clip(seed, CFG, "flash")
        brightness = clip.frames.astype(np.float32).mean(axis=(1, 2, 3))  # (T,)
        for ev in clip.events:
            k = round(ev.time * CFG.fps)
            if 0 < k < len(brightness):
                assert brightness[k] > brightness[k - 1] + 0.5, (seed, ev)


def test_captions_follow_the_parameters() -> None:
    for seed in range(10):
        for family in FAMILIES:
            clip = generate_clip(seed, CFG, family)
            cap = clip.caption
            for obj in clip.params["objects"]:
                assert obj["colour"] in cap and obj["shape"] in cap and obj["size"] in cap
            counts = [_NUM[m] for m in re.findall("|".join(sorted(_NUM, key=len, reverse=True)), cap)]
            if family in ("bounce", "wall") and counts:
                assert counts == [len(clip.events)], cap
            if family == "flash" and len(clip.params["objects"]) == 1 and counts:
                assert counts == [len(clip.events)], cap
            if family in ("bounce", "wall", "pendulum", "multi"):
                assert all({e.obj for e in clip.events} <= set(range(len(clip.params["objects"]))) for _ in [0])
            if family == "multi":
                assert len({o["material"] for o in clip.params["objects"]}) == len(clip.params["objects"])
                times = sorted(e.time for e in clip.events)
                assert min(np.diff(times)) >= 0.05  # every sound its own onset
    caption = generate_clip(0, CFG, "bounce").caption
    assert caption.startswith(("a ", "an "))


def test_heldout_split_has_exactly_the_unseen_combinations() -> None:
    held = generate_clip(0, CFG, "bounce", "heldout")
    assert held.params["heldout_pairs"] and held.split == "heldout"
    for seed in range(30):  # parameters only: rendering adds nothing to this rule
        for family in FAMILIES:
            train = sample_params(family, np.random.default_rng(seed), CFG, "train")
            val = sample_params(family, np.random.default_rng(seed), CFG, "val")
            held_params = sample_params(family, np.random.default_rng(seed), CFG, "heldout")
            assert heldout_pairs(family, train) == [] == train["heldout_pairs"] == val["heldout_pairs"]
            assert heldout_pairs(family, held_params) == held_params["heldout_pairs"] != []
            for obj in train["objects"] + val["objects"]:
                assert (obj["colour"], family) not in HELDOUT_COLOUR_FAMILY
                sound = obj.get("material") or train.get("timbre")
                assert (obj["shape"], sound) not in HELDOUT_SHAPE_SOUND


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="even int >= 32"):
        SynthConfig(width=63)
    with pytest.raises(ValueError, match="duration"):
        SynthConfig(duration=0.5)
    with pytest.raises(ValueError, match="subset"):
        SynthConfig(families=("bounce", "juggle"))
    with pytest.raises(ValueError, match="split"):
        generate_clip(0, CFG, split="test")
    with pytest.raises(ValueError, match="not among"):
        generate_clip(0, SynthConfig(families=("wall",)), family="bounce")


def test_make_dataset_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    cfg = SynthConfig(width=32, height=32, duration=1.0)
    a = make_dataset(tmp_path / "a", cfg, 5, 2, 2, seed=3, workers=2, progress=False)
    b = make_dataset(tmp_path / "b", cfg, 5, 2, 2, seed=3, workers=1, progress=False)
    rows_a = [json.loads(x) for x in a.read_text().splitlines()]
    rows_b = [json.loads(x) for x in b.read_text().splitlines()]
    assert rows_a == rows_b and len(rows_a) == 9
    assert [r["split"] for r in rows_a] == ["train"] * 5 + ["val"] * 2 + ["heldout"] * 2
    assert {r["family"] for r in rows_a} == set(FAMILIES)
    for ra in rows_a:
        fa, fb = tmp_path / "a" / ra["path"], tmp_path / "b" / ra["path"]
        ca, cb = read_clip(fa), read_clip(fb)
        assert torch.equal(ca.frames, cb.frames) and torch.equal(ca.audio, cb.audio)
        assert fa.read_bytes() == fb.read_bytes()
    # the mp4 is the generated clip, up to lossy compression
    row = rows_a[0]
    clip = generate_clip(row["seed"], cfg, row["family"], row["split"])
    decoded = read_clip(tmp_path / "a" / row["path"])
    assert np.abs(decoded.frames.numpy().astype(int) - clip.frames).mean() < 4.0
    assert [e["time"] for e in row["events"]] == [e.time for e in clip.events]
    # a second run with the same recipe does nothing; a different recipe is refused
    before = a.stat().st_mtime_ns
    assert make_dataset(tmp_path / "a", cfg, 5, 2, 2, seed=3, progress=False) == a
    assert a.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="overwrite"):
        make_dataset(tmp_path / "a", cfg, 6, 2, 2, seed=3, progress=False)


def test_stream_matches_files_and_shards_across_workers() -> None:
    cfg = SynthConfig(width=32, height=32, duration=1.0)
    stream = SyntheticStream(cfg, "val", num_clips=4, seed=3)
    items = list(stream)
    assert [it["id"] for it in items] == [f"val-{i:05d}" for i in range(4)]
    ref = generate_clip(clip_seed(3, "val", 2), cfg, FAMILIES[2], "val")
    assert torch.equal(items[2]["frames"], torch.from_numpy(ref.frames))
    assert items[2]["caption"] == ref.caption and items[2]["audio"].shape == (1, 24000)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    assert sorted(it["id"] for it in loader) == sorted(it["id"] for it in items)
    with pytest.raises(ValueError, match="split"):
        SyntheticStream(cfg, "test")


def test_synthetic_manifest_loads(tiny_dataset: Path) -> None:
    entries = load_manifest(tiny_dataset)
    assert [e.split for e in entries] == ["train"] * 6 + ["val"] * 2 + ["heldout"] * 2
    assert all(e.path.is_file() and e.end == 1.0 for e in entries)
    assert {"family", "events", "params", "seed"} <= set(entries[0].extra)

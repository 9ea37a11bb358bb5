"""`avgen sample`: every task writes playable mp4 files of the asked duration and sample rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from av_model.sample.cli import main
from avio import probe, write_audio, write_clip

from .conftest import FPS, SIZE, Encoders


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (24, 48, 40, 3), dtype=np.uint8)  # 1.5 s at 16 fps, another size
    audio = (0.1 * rng.standard_normal((1, 36000))).astype(np.float32)
    write_clip(root / "clip.mp4", frames, FPS, audio, 24000)
    write_audio(root / "sound.wav", audio[:, :24000], 24000)
    (root / "videos.txt").write_text(f"{root / 'clip.mp4'}\ta ball bounces\n")
    return {"video": root / "clip.mp4", "audio": root / "sound.wav", "list": root / "videos.txt"}


def _sample(trained: Path, enc: Encoders, out: Path, *args: str) -> int:
    return main(["--ckpt", str(trained / "final.ckpt"), "--codec", str(enc.codec_path), "--vae", str(enc.vae_path),
                 "--out", str(out), "--steps", "2", "--device", "cpu", *args])


def _check(path: Path, seconds: float) -> dict:
    info = probe(path)
    assert info.has_video and info.has_audio
    assert info.sample_rate == 24000 and (info.height, info.width) == SIZE
    assert info.duration == pytest.approx(seconds, abs=0.07)
    return json.loads(path.with_suffix(".json").read_text())


def test_text_to_audio_video(trained: Path, encoders: Encoders, tmp_path: Path) -> None:
    rc = _sample(trained, encoders, tmp_path, "--prompt", "a red ball bounces", "--prompt", "a beep",
                 "--duration", "1.0", "--batch-size", "2", "--solver", "heun", "--cfg-video", "2.5")
    assert rc == 0
    paths = sorted(tmp_path.glob("*.mp4"))
    assert [p.stem for p in paths] == ["0000", "0001"]
    side = _check(paths[0], 1.0)
    assert side["prompt"] == "a red ball bounces" and side["task"] == "t2av" and side["sampler"] == "heun"
    assert side["steps"] == 2 and side["guidance"] == {"video": 2.5, "audio": 3.0, "interval": [0.0, 1.0]} and side["seed"] == 0
    assert len(side["checkpoint_sha256"]) == 64 and side["duration"] == 1.0


def test_video_to_audio_from_a_list(trained: Path, encoders: Encoders, inputs: dict[str, Path], tmp_path: Path) -> None:
    assert _sample(trained, encoders, tmp_path, "--video-list", str(inputs["list"])) == 0
    (path,) = tmp_path.glob("*.mp4")
    side = _check(path, 1.5)  # the whole input video
    assert side["task"] == "v2a" and side["prompt"] == "a ball bounces" and side["input"].endswith("clip.mp4")


def test_audio_to_video(trained: Path, encoders: Encoders, inputs: dict[str, Path], tmp_path: Path) -> None:
    assert _sample(trained, encoders, tmp_path, "--audio", str(inputs["audio"]), "--prompt", "a click") == 0
    (path,) = tmp_path.glob("*.mp4")
    assert _check(path, 1.0)["task"] == "a2v"


def test_extend(trained: Path, encoders: Encoders, inputs: dict[str, Path], tmp_path: Path) -> None:
    assert _sample(trained, encoders, tmp_path, "--extend", str(inputs["video"]), "--extend-seconds", "0.5",
                   "--duration", "2.0") == 0
    (path,) = tmp_path.glob("*.mp4")
    side = _check(path, 2.0)
    assert side["task"] == "extend" and side["extend_seconds"] == 0.5


def test_bad_requests_are_explained(trained: Path, encoders: Encoders, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path, "--prompt", "x", "--duration", "1.1") == 1
    assert "multiples of 4 frames" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path, "--audio", str(tmp_path / "missing.wav")) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["--ckpt", str(tmp_path / "none.ckpt"), "--prompt", "x", "--out", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mp4"))


# ------------------------------------------------------------------------------- batch jobs over lists
@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, inputs: dict[str, Path]) -> dict[str, Path]:
    """Inputs of three lengths (1.5, 0.5 and 1.0 s), an audio-only file and lists naming them."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(1)
    for name, seconds in (("short", 0.5), ("mid", 1.0)):
        frames = rng.integers(0, 255, (int(seconds * FPS), 32, 32, 3), dtype=np.uint8)
        audio = (0.1 * rng.standard_normal((1, int(seconds * 24000)))).astype(np.float32)
        write_clip(root / f"{name}.mp4", frames, FPS, audio, 24000)
        write_audio(root / f"{name}.wav", audio, 24000)
    write_audio(root / "sound_only.m4a.wav", (0.1 * rng.standard_normal((1, 24000))).astype(np.float32), 24000)
    # relative paths: resolved from the list's folder, whatever the current folder is
    (root / "videos.txt").write_text(f"{inputs['video']}\tlong\nshort.mp4\tshort\nmid.mp4\tmid\n")
    (root / "with_bad.txt").write_text(f"{inputs['video']}\tlong\nsound_only.m4a.wav\tno video\nmissing.mp4\tgone\n"
                                       "short.mp4\tshort\n")
    (root / "sounds.txt").write_text(f"{inputs['audio']}\nshort.wav\nmid.wav\n")
    return {"root": root, "videos": root / "videos.txt", "with_bad": root / "with_bad.txt",
            "sounds": root / "sounds.txt"}


def test_a_list_of_videos_keeps_every_clip_at_its_own_length(trained: Path, encoders: Encoders,
                                                             mixed: dict[str, Path], tmp_path: Path) -> None:
    # default batch size 4: all three fit in one batch, yet none may be cut to the shortest
    assert _sample(trained, encoders, tmp_path, "--video-list", str(mixed["videos"])) == 0
    for stem, seconds in (("clip", 1.5), ("short", 0.5), ("mid", 1.0)):
        side = _check(tmp_path / f"{stem}.mp4", seconds)
        assert side["duration"] == pytest.approx(seconds) and side["input"].endswith(f"{stem}.mp4")
    assert _check(tmp_path / "clip.mp4", 1.5)["seed"] == 0 and _check(tmp_path / "mid.mp4", 1.0)["seed"] == 2


def test_a_list_of_audio_files_keeps_every_clip_at_its_own_length(trained: Path, encoders: Encoders,
                                                                  mixed: dict[str, Path], tmp_path: Path) -> None:
    assert _sample(trained, encoders, tmp_path, "--audio-list", str(mixed["sounds"])) == 0
    for stem, seconds in (("sound", 1.0), ("short", 0.5), ("mid", 1.0)):
        side = _check(tmp_path / f"{stem}.mp4", seconds)
        assert side["task"] == "a2v" and side["duration"] == pytest.approx(seconds)


def test_bad_items_are_skipped_named_and_summarized(trained: Path, encoders: Encoders, mixed: dict[str, Path],
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path, "--video-list", str(mixed["with_bad"])) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.mp4")) == ["clip", "short"]
    err = capsys.readouterr().err
    summary = err[err.index("skipped 2 items"):]
    assert "sound_only.m4a: " in summary and "no video stream" in summary
    assert "missing: " in summary and f"resolved to {mixed['root'] / 'missing.mp4'}" in summary
    assert "wrote 2 clips" in err


def test_strict_stops_at_the_first_bad_item(trained: Path, encoders: Encoders, mixed: dict[str, Path],
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path, "--video-list", str(mixed["with_bad"]), "--strict") == 2
    assert "--strict" in capsys.readouterr().err and not list(tmp_path.glob("*.mp4"))


def test_nothing_usable_is_an_error(trained: Path, encoders: Encoders, mixed: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path, "--video", str(mixed["root"] / "sound_only.m4a.wav")) == 1
    assert "no clip could be made" in capsys.readouterr().err


def test_a_rerun_keeps_finished_clips_and_makes_the_rest(trained: Path, encoders: Encoders, mixed: dict[str, Path],
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path, "--video-list", str(mixed["videos"]), "--batch-size", "2") == 0
    stamps = {p.stem: p.stat().st_mtime_ns for p in tmp_path.glob("*.mp4")}
    (tmp_path / "mid.mp4").unlink()  # as if the job was killed before this clip was written
    side = json.loads((tmp_path / "short.json").read_text())
    (tmp_path / "short.json").write_text(json.dumps({**side, "duration": 0.25}))  # a truncated clip of old
    capsys.readouterr()
    assert _sample(trained, encoders, tmp_path, "--video-list", str(mixed["videos"]), "--batch-size", "2") == 0
    err = capsys.readouterr().err
    assert "1 of 3 clips already made" in err and "wrote 2 clips" in err
    assert (tmp_path / "clip.mp4").stat().st_mtime_ns == stamps["clip"]
    assert (tmp_path / "short.mp4").stat().st_mtime_ns != stamps["short"]
    assert _check(tmp_path / "short.mp4", 0.5)["duration"] == 0.5 and _check(tmp_path / "mid.mp4", 1.0)
    assert not list(tmp_path.glob(".*.partial"))
    # other sampler settings are another job: nothing is kept
    assert _sample(trained, encoders, tmp_path, "--video-list", str(mixed["videos"]), "--steps", "1") == 0
    assert "wrote 3 clips" in capsys.readouterr().err


def test_video_to_audio_ignores_the_inputs_own_short_sound(trained: Path, encoders: Encoders, tmp_path: Path) -> None:
    """v2a replaces the sound, so a video whose audio track stops early still gives a clip of its full length."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 255, (32, 32, 32, 3), dtype=np.uint8)  # 2 s
    write_clip(tmp_path / "in" / "quiet.mp4", frames, FPS, (0.1 * rng.standard_normal((1, 12000))).astype(np.float32),
               24000)  # 0.5 s of sound
    assert _sample(trained, encoders, tmp_path / "out", "--video", str(tmp_path / "in" / "quiet.mp4")) == 0
    (path,) = (tmp_path / "out").glob("*.mp4")
    assert _check(path, 2.0)["duration"] == 2.0

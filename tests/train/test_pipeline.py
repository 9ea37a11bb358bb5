"""`avgen sample`: every task writes playable mp4 files of the asked duration and sample rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from av_model.data.media import probe, write_audio, write_clip
from av_model.pipeline import main

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

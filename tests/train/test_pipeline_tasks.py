"""`avgen sample --image`, long clips (`--duration` beyond the window) and `--retake` on the debug
generator: the given latents are held, chunks continue their history, a retake keeps the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

import av_model.flow.long_sampling as long_sampling
import av_model.sample.pipeline as pipeline
from av_model.sample.cli import main
from av_model.sample.pipeline import AVPipeline
from avio import probe, read_clip, write_clip

from .conftest import FPS, SIZE, Encoders


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("task_inputs")
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 255, (24, 32, 32, 3), dtype=np.uint8)  # 1.5 s at the model's size
    audio = (0.1 * rng.standard_normal((1, 36000))).astype(np.float32)
    write_clip(root / "clip.mp4", frames, FPS, audio, 24000)
    write_clip(root / "silent.mp4", frames, FPS)
    image = np.zeros((48, 40, 3), dtype=np.uint8)  # another size and aspect: scaled and cropped
    image[:, :20] = (255, 0, 0)
    cv2.imwrite(str(root / "first.png"), image[..., ::-1])
    (root / "not_an_image.png").write_text("hello")
    return {"clip": root / "clip.mp4", "silent": root / "silent.mp4", "image": root / "first.png",
            "bad_image": root / "not_an_image.png"}


@pytest.fixture(scope="module")
def pipe(trained: Path, encoders: Encoders) -> AVPipeline:
    return AVPipeline.from_checkpoint(trained / "final.ckpt", encoders.codec_path, encoders.vae_path, device="cpu")


def _sample(trained: Path, enc: Encoders, out: Path, *args: str) -> int:
    return main(["--ckpt", str(trained / "final.ckpt"), "--codec", str(enc.codec_path), "--vae", str(enc.vae_path),
                 "--out", str(out), "--steps", "2", "--device", "cpu", *args])


def _sidecar(path: Path, seconds: float) -> dict[str, Any]:
    info = probe(path)
    assert info.has_video and info.has_audio and (info.height, info.width) == SIZE
    assert info.duration == pytest.approx(seconds, abs=0.07)
    return json.loads(path.with_suffix(".json").read_text())


class Spy:
    """Records every call of a module's `sample` and what it returned."""

    def __init__(self, module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[dict[str, Any], tuple[torch.Tensor, torch.Tensor]]] = []
        real = module.sample

        def spy(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            out = real(*args, **kwargs)
            self.calls.append((kwargs, out))
            return out

        monkeypatch.setattr(module, "sample", spy)


# ------------------------------------------------------------------------------------- image
def test_image_to_audio_video_holds_the_images_latent(pipe: AVPipeline, media: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(pipeline, monkeypatch)
    (clip,) = pipe(["a red square"], task="i2av", images=[media["image"]], duration=1.0, steps=2, progress=False)
    (kw, (z_v, z_a)), = spy.calls
    image = torch.from_numpy(cv2.imread(str(media["image"]))[..., ::-1].copy())
    assert kw["task"] == "i2av"
    # the image's own latent, encoded at the model's size, is the first latent frame of the result
    from av_model.sample.task_inputs import read_image

    resized, original = read_image(media["image"], SIZE)
    want = pipe._encode_video(resized[None, None])  # (1, C, 1, h, w)
    assert torch.equal(z_v[:, :, :1], want) and not torch.equal(z_v[:, :, 1:2], want)
    assert original == tuple(image.shape[:2]) and resized.shape == (*SIZE, 3)
    assert clip.frames.shape == (16, *SIZE, 3) and clip.audio.shape == (1, 24000)
    assert clip.info["task"] == "i2av" and clip.info["image_size"] == [48, 40]
    assert isinstance(clip.info["first_frame_psnr"], float)
    # scaled to cover 32x32 (to 39x32), then centre-cropped: the left 16 columns are red
    assert resized[:, :15, 0].min() > 200 and resized[:, 17:, 0].max() < 60


def test_image_cli_and_bad_images(trained: Path, encoders: Encoders, media: dict[str, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path, "--image", str(media["image"]), "--prompt", "a red square") == 0
    (path,) = tmp_path.glob("*.mp4")
    side = _sidecar(path, 1.0)  # the training clips' duration
    assert side["task"] == "i2av" and side["input"] == str(media["image"]) and side["prompt"] == "a red square"
    capsys.readouterr()
    assert _sample(trained, encoders, tmp_path, "--image", str(media["image"]), "--prompt", "a red square") == 0
    assert "1 of 1 clips already made" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path / "x", "--image", str(tmp_path / "missing.png")) == 1
    assert "does not exist" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path / "y", "--image", str(media["bad_image"])) == 1
    assert "cannot be read as an image" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- long clips
def test_a_clip_longer_than_the_window_is_made_chunk_by_chunk(trained: Path, encoders: Encoders, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(long_sampling, monkeypatch)
    # the window is the training clips' 1 s; history defaults to half of it
    assert _sample(trained, encoders, tmp_path, "--prompt", "a ball bounces", "--duration", "2.5") == 0
    side = _sidecar(tmp_path / "0000.mp4", 2.5)
    assert side["window"] == 1.0 and side["history"] == 0.5
    spy.calls.clear()
    assert _sample(trained, encoders, tmp_path, "--prompt", "a ball bounces", "--duration", "2.5") == 0
    assert not spy.calls  # a rerun keeps the clip
    assert _sample(trained, encoders, tmp_path, "--prompt", "a ball bounces", "--duration", "2.5", "--history",
                   "0.25") == 0
    assert len(spy.calls) == 3 and _sidecar(tmp_path / "0000.mp4", 2.5)["history"] == 0.25  # another history: remade
    spy.calls.clear()
    assert _sample(trained, encoders, tmp_path, "--prompt", "a ball bounces", "--duration", "2.5") == 0
    assert [(c["start"], c["end"]) for c in side["chunks"]] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5)]
    assert len(spy.calls) == 4 and spy.calls[0][0]["task"] == "t2av"
    for (_, (prev_v, prev_a)), (kw, (v, a)) in zip(spy.calls, spy.calls[1:]):
        assert kw["task"] == "extend" and kw["extend_seconds"] == 0.5
        # the given prefix of chunk k+1 is the tail of chunk k's latents, and it is kept
        assert torch.equal(kw["video_cond"], prev_v[:, :, -2:]) and torch.equal(v[:, :, :2], prev_v[:, :, -2:])
        n = kw["audio_cond"].shape[2]
        assert n == 37 and torch.equal(kw["audio_cond"], prev_a[:, :, -n:]) and torch.equal(a[:, :, :n], prev_a[:, :, -n:])
    # an explicit window and history; a clip within the window is one pass, as before
    assert _sample(trained, encoders, tmp_path / "b", "--prompt", "x", "--duration", "2.0", "--window", "1.5",
                   "--history", "0.25") == 0
    assert [c["history"] for c in _sidecar(tmp_path / "b" / "0000.mp4", 2.0)["chunks"]] == [0.0, 0.25]
    assert _sample(trained, encoders, tmp_path / "c", "--prompt", "x", "--duration", "1.0") == 0
    assert "chunks" not in _sidecar(tmp_path / "c" / "0000.mp4", 1.0)


def test_long_clips_from_an_image_or_a_clip_and_bad_windows(trained: Path, encoders: Encoders,
                                                            media: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path / "i", "--image", str(media["image"]), "--duration", "2.0") == 0
    assert len(_sidecar(next((tmp_path / "i").glob("*.mp4")), 2.0)["chunks"]) == 3
    assert _sample(trained, encoders, tmp_path / "e", "--extend", str(media["clip"]), "--extend-seconds", "0.5",
                   "--duration", "2.0") == 0
    assert _sidecar(next((tmp_path / "e").glob("*.mp4")), 2.0)["extend_seconds"] == 0.5
    capsys.readouterr()
    assert _sample(trained, encoders, tmp_path / "f", "--prompt", "x", "--duration", "2.0", "--history", "1.0") == 1
    assert "0 < history < window" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path / "g", "--extend", str(media["clip"]), "--extend-seconds", "1.25",
                   "--duration", "2.0") == 1
    assert "--extend-seconds below it or a longer --window" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- retake
@pytest.mark.parametrize("modality", ["audio", "video", "both"])
def test_retake_regenerates_the_span_and_keeps_the_rest(pipe: AVPipeline, media: dict[str, Path], modality: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(pipeline, monkeypatch)
    (clip,) = pipe(["a beep"], task="retake", videos=[media["clip"]], span=(0.3, 0.9), modality=modality, steps=2,
                   progress=False)
    (kw, (z_v, z_a)), = spy.calls
    original = read_clip(media["clip"], fps=FPS, size=SIZE, duration=1.5, sample_rate=24000, channels=1)
    assert clip.info["span"] == [0.25, 1.0] and clip.info["modality"] == modality and clip.duration == 1.5
    # latents: the given ones outside the span (and everywhere in the kept modality), new ones inside
    v_in = slice(1, 4)  # video latents of 0.25 .. 1.0 s
    a_in = torch.zeros(z_a.shape[2], dtype=torch.bool)
    a_in[19:75] = True  # audio latents whose centre lies in 0.25 .. 1.0 s
    if modality == "audio":
        assert torch.equal(z_v, kw["video_cond"])
    else:
        assert torch.equal(z_v[:, :, :1], kw["video_cond"][:, :, :1]) and torch.equal(z_v[:, :, 4:],
                                                                                       kw["video_cond"][:, :, 4:])
        assert not torch.equal(z_v[:, :, v_in], kw["video_cond"][:, :, v_in])
    if modality == "video":
        assert torch.equal(z_a, kw["audio_cond"])
    else:
        assert torch.equal(z_a[:, :, ~a_in], kw["audio_cond"][:, :, ~a_in])
        assert not torch.equal(z_a[:, :, a_in], kw["audio_cond"][:, :, a_in])
    # pixels and samples: the original outside the span (and everywhere in the kept modality)
    same_frames = torch.equal(clip.frames, original.frames)
    assert torch.equal(clip.frames[:4], original.frames[:4]) and torch.equal(clip.frames[16:], original.frames[16:])
    assert same_frames == (modality == "audio")
    assert original.audio is not None
    assert torch.equal(clip.audio[:, :6000], original.audio[:, :6000])
    assert torch.equal(clip.audio[:, 24000:], original.audio[:, 24000:])
    assert torch.equal(clip.audio, original.audio) == (modality == "video")


def test_a_retake_of_a_clip_longer_than_the_window_samples_a_window_around_the_span(
        pipe: AVPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 255, (48, 32, 32, 3), dtype=np.uint8)  # 3 s; the window is 1 s
    write_clip(tmp_path / "long.mp4", frames, FPS, (0.1 * rng.standard_normal((1, 72000))).astype(np.float32), 24000)
    spy = Spy(pipeline, monkeypatch)
    (clip,) = pipe([""], task="retake", videos=[tmp_path / "long.mp4"], span=(1.0, 1.5), steps=2, progress=False)
    (kw, (z_v, z_a)), = spy.calls
    assert clip.info["retake_window"] == [0.75, 1.75] and clip.duration == 3.0
    # one window: video latents 3..7, audio latents 56..132, the span at 0.25 .. 0.75 s inside it
    assert kw["video_shape"][2] == 4 and kw["audio_shape"][2] == 76 and kw["span"] == (0.25, 0.75)
    assert torch.equal(z_v[:, :, [0, 3]], kw["video_cond"][:, :, [0, 3]])
    assert not torch.equal(z_v[:, :, 1:3], kw["video_cond"][:, :, 1:3])
    original = read_clip(tmp_path / "long.mp4", fps=FPS, size=SIZE, duration=3.0, sample_rate=24000, channels=1)
    assert torch.equal(clip.frames[:16], original.frames[:16]) and torch.equal(clip.frames[24:], original.frames[24:])
    assert original.audio is not None and torch.equal(clip.audio[:, 36000:], original.audio[:, 36000:])


def test_retake_cli_and_bad_requests(trained: Path, encoders: Encoders, media: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _sample(trained, encoders, tmp_path, "--retake", str(media["clip"]), "--span", "0.5", "1.0",
                   "--modality", "audio", "--prompt", "a click") == 0
    (path,) = tmp_path.glob("*.mp4")
    side = _sidecar(path, 1.5)  # the input's length
    assert side["task"] == "retake" and side["span"] == [0.5, 1.0] and side["modality"] == "audio"
    capsys.readouterr()
    assert _sample(trained, encoders, tmp_path, "--retake", str(media["clip"]), "--span", "0.5", "1.0",
                   "--modality", "audio", "--prompt", "a click") == 0
    assert "1 of 1 clips already made" in capsys.readouterr().err  # a rerun keeps it
    assert _sample(trained, encoders, tmp_path, "--retake", str(media["clip"]), "--span", "0.5", "1.0",
                   "--modality", "video", "--prompt", "a click") == 0
    assert "wrote 1 clips" in capsys.readouterr().err  # another modality is another clip
    assert _sample(trained, encoders, tmp_path / "a", "--retake", str(media["clip"]), "--span", "1.0", "2.0") == 1
    err = capsys.readouterr().err
    assert "outside" in err and "lasts 1.5 s" in err
    assert _sample(trained, encoders, tmp_path / "b", "--retake", str(tmp_path / "missing.mp4"), "--span", "0", "1") == 1
    assert "does not exist" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path / "c", "--retake", str(media["silent"]), "--span", "0", "1",
                   "--modality", "audio") == 1
    assert "has no audio stream, but an audio retake" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path / "d", "--retake", str(media["clip"])) == 1
    assert "--retake needs --span" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path / "e", "--retake", str(media["clip"]), "--span", "1.0", "0.5") == 1
    assert "0 <= START < END" in capsys.readouterr().err
    assert _sample(trained, encoders, tmp_path / "f", "--prompt", "x", "--span", "0", "1") == 1
    assert "give --retake IN.mp4 too" in capsys.readouterr().err
    assert not list((tmp_path / "a").glob("*.mp4"))

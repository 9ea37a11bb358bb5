"""Registered media: one normalised encoding on import, gold-pair variants, the copy cache, and what may be served."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from app_clips import SAMPLE_RATE, make_clip

from avio import MediaError, probe, read_clip, write_clip
from avio.normalize import browser_playable
from eval.onsets import detect_onsets
from human_eval_app import media as media_mod
from human_eval_app.media import read_registered, register_media, resolve_registered


def _mpeg4_mkv(path: Path, width: int = 33, height: int = 31) -> Path:
    """A clip no browser plays: MPEG-4 part 2 in Matroska, odd size, with MP2 sound."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=8)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = out.add_stream("mp2", rate=SAMPLE_RATE)
        aus.layout = "mono"
        rng = np.random.default_rng(0)
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        tone = (0.3 * np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 440 / SAMPLE_RATE)).astype(np.float32)[None]
        aframe = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        aframe.sample_rate, aframe.pts = SAMPLE_RATE, 0
        out.mux(aus.encode(aframe))
        out.mux(aus.encode(None))
    return path


def test_playable_clip_is_reencoded_once_and_the_copy_is_reused(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "a.mp4", 0)
    reg = register_media(src, tmp_path / "media", "S/a.mp4")
    assert not reg.transcoded and not reg.reused and reg.has_audio
    assert (tmp_path / "media" / "S" / "a.mp4").read_bytes() != src.read_bytes()  # never served as the source
    again = register_media(src, tmp_path / "media", "T/a.mp4")
    assert again.reused and again.sha256 == reg.sha256
    shifted = register_media(src, tmp_path / "media", "T/shifted.mp4", audio_delay=0.5)
    assert not shifted.reused and shifted.sha256 != reg.sha256  # another alteration, another copy
    with pytest.raises(MediaError, match="cache"):
        register_media(src, tmp_path / "media", f"{media_mod.NORMALIZED_DIR}/x.mp4")


def test_clip_without_sound_is_refused_when_sound_is_required(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "silent.mp4", np.zeros((8, 32, 32, 3), np.uint8), 8)
    with pytest.raises(MediaError, match="has no sound"):
        register_media(src, tmp_path / "media", "S/silent.mp4", require_audio=True)
    assert not (tmp_path / "media" / "S" / "silent.mp4").exists()


def test_unplayable_clip_is_transcoded_to_h264_aac(tmp_path: Path) -> None:
    src = _mpeg4_mkv(tmp_path / "b.mkv")
    assert not browser_playable(probe(src))
    reg = register_media(src, tmp_path / "media", "S/b.mp4")
    out = probe(tmp_path / "media" / reg.relpath)
    assert reg.transcoded and out.video_codec == "h264" and out.audio_codec == "aac"
    assert (out.width, out.height) == (32, 30)  # cropped to even sizes for 4:2:0
    assert browser_playable(out) and abs(out.duration - 1.0) < 0.1


def test_audio_shift_delays_the_sound_by_the_asked_amount(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "a.mp4", 3)
    reg = register_media(src, tmp_path / "media", "S/shifted.mp4", audio_delay=0.5)
    before, after = read_clip(src), read_clip(tmp_path / "media" / reg.relpath)
    assert after.frames.shape == before.frames.shape  # picture untouched, same length
    assert before.sample_rate == SAMPLE_RATE and after.sample_rate == 48000  # every served clip: 48 kHz
    t0 = detect_onsets(before.audio.numpy(), before.sample_rate)[0]
    t1 = detect_onsets(after.audio.numpy(), after.sample_rate)[0]
    assert t1 - t0 == pytest.approx(0.5, abs=0.01)


def test_video_blur_lowers_detail(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    src = write_clip(tmp_path / "noise.mp4", noise, 8)
    reg = register_media(src, tmp_path / "media", "S/blur.mp4", video_downscale=4)
    before = read_clip(src, require_audio=False).frames.float()
    after = read_clip(tmp_path / "media" / reg.relpath, require_audio=False).frames.float()

    def detail(x):  # mean absolute horizontal gradient
        return (x[:, :, 1:] - x[:, :, :-1]).abs().mean().item()

    assert detail(after) < 0.5 * detail(before)


def test_not_media_and_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "passwd.mp4"
    fake.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(MediaError, match="cannot be opened as media"):
        register_media(fake, tmp_path / "media", "S/x.mp4")
    src = make_clip(tmp_path / "a.mp4", 0)
    monkeypatch.setattr(media_mod, "MAX_MEDIA_BYTES", 100)
    with pytest.raises(MediaError, match="shorten it"):
        register_media(src, tmp_path / "media", "S/a.mp4")


@pytest.mark.parametrize("relpath", ["../x.mp4", "S/../../x.mp4", "/etc/passwd", ""])
def test_registered_paths_stay_inside_the_media_folder(tmp_path: Path, relpath: str) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "x.mp4").write_bytes(b"secret")
    with pytest.raises(MediaError):
        resolve_registered(tmp_path / "media", relpath)
    src = make_clip(tmp_path / "a.mp4", 0)
    with pytest.raises(MediaError, match="inside the media folder"):
        register_media(src, tmp_path / "media", relpath)


def test_symlink_in_media_folder_is_not_served(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "secret").write_bytes(b"secret")
    os.symlink(tmp_path / "secret", tmp_path / "media" / "link.mp4")
    with pytest.raises(MediaError, match="not inside the media folder"):
        read_registered(tmp_path / "media", "link.mp4")


def test_changed_file_is_not_served(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "a.mp4", 0)
    reg = register_media(src, tmp_path / "media", "S/a.mp4")
    served = (tmp_path / "media" / reg.relpath).read_bytes()
    assert read_registered(tmp_path / "media", reg.relpath, reg.sha256) == served
    (tmp_path / "media" / reg.relpath).write_bytes(b"tampered")
    with pytest.raises(MediaError, match="changed since"):
        read_registered(tmp_path / "media", reg.relpath, reg.sha256)

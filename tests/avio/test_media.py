"""Media I/O: round trip, audio-video sync within a frame, and a clear error for every bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from avio import MediaError, probe, read_audio, read_clip, write_audio, write_clip
from tests.avio.conftest import ClickClip


def _flash_index(frames: torch.Tensor) -> int:
    return int(frames.float().mean(dim=(1, 2, 3)).argmax())


def _onset_seconds(audio: torch.Tensor, sample_rate: int) -> float:
    return int((audio[0].abs() > 0.3).nonzero()[0]) / sample_rate


def test_probe_reports_streams(click_clip: ClickClip) -> None:
    info = probe(click_clip.path)
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.fps) == (48, 32, 16.0)
    assert info.num_frames == click_clip.num_frames
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.sample_rate == 24000 and info.audio_channels == 1
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert "h264" in str(info)


def test_round_trip_keeps_shapes_and_sync(click_clip: ClickClip) -> None:
    clip = read_clip(click_clip.path)
    assert clip.frames.shape == (32, 32, 48, 3) and clip.frames.dtype == torch.uint8
    assert clip.audio is not None and clip.audio.shape == (1, 48000) and clip.audio.dtype == torch.float32
    assert clip.fps == 16.0 and clip.sample_rate == 24000
    assert _flash_index(clip.frames) == click_clip.flash_frame
    flash_time = click_clip.flash_frame / click_clip.fps
    assert abs(_onset_seconds(clip.audio, 24000) - flash_time) < 1.0 / click_clip.fps
    # in fact the AAC edit list makes it sample-exact up to the codec's smearing of the attack
    assert abs(_onset_seconds(clip.audio, 24000) - flash_time) < 0.002
    # the first AAC frame decodes with its pre-roll: the background noise is there from sample 0
    # (a second demuxing pass after a seek used to leave the first ~20 ms silent)
    assert float(clip.audio[0, :400].abs().mean()) > 0.002


@pytest.mark.parametrize(("fps", "sample_rate", "flash_frame"), [(25.0, 22050, 37), (30000 / 1001, 16000, 50)])
def test_sync_within_a_frame_at_other_rates(
    tmp_path: Path, click_clip_maker: Callable[..., ClickClip], fps: float, sample_rate: int, flash_frame: int
) -> None:
    made = click_clip_maker(tmp_path / "c.mp4", fps=fps, sample_rate=sample_rate, seconds=3.0, flash_frame=flash_frame)
    clip = read_clip(made.path)
    assert clip.fps == pytest.approx(fps, rel=1e-4)
    assert _flash_index(clip.frames) == flash_frame
    assert clip.audio is not None
    assert abs(_onset_seconds(clip.audio, sample_rate) - flash_frame / fps) < 1.0 / fps


def test_resampled_window_stays_aligned(tmp_path: Path, click_clip_maker: Callable[..., ClickClip]) -> None:
    # flash at 2.875 s: 1.375 s into the window, on the 8 fps grid (a flash between two output
    # frames would be dropped by any frame-rate reduction)
    made = click_clip_maker(tmp_path / "long.mp4", seconds=4.0, flash_frame=46)
    clip = read_clip(made.path, fps=8, size=16, start=1.5, duration=2.0, sample_rate=16000, channels=2)
    assert clip.frames.shape == (16, 16, 16, 3)
    assert clip.audio is not None and clip.audio.shape == (2, 32000)
    flash = 46 / 16 - 1.5
    assert _flash_index(clip.frames) == 11
    assert abs(_onset_seconds(clip.audio, 16000) - flash) < 0.002
    assert torch.equal(clip.audio[0], clip.audio[1])


def test_size_covers_and_centre_crops(click_clip: ClickClip) -> None:
    clip = read_clip(click_clip.path, size=(24, 24))
    assert clip.frames.shape[1:] == (24, 24, 3)


class _ScaledClips(torch.utils.data.Dataset):
    def __init__(self, path: Path) -> None:
        self.path = path

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return read_clip(self.path, size=16 if i == 0 else None).frames


def test_a_forked_worker_reads_after_its_parent_scaled(click_clip: ClickClip) -> None:
    """DataLoader workers fork after the parent has read clips; with libswscale's automatic threads
    (FFmpeg 8.1.3) the worker's first scale hung for ever."""
    read_clip(click_clip.path, size=16)
    read_clip(click_clip.path)
    loader = torch.utils.data.DataLoader(_ScaledClips(click_clip.path), batch_size=None, num_workers=1,
                                         multiprocessing_context="fork", timeout=60)
    shapes = [tuple(frames.shape[1:]) for frames in loader]  # a hang raises after the timeout
    assert shapes == [(16, 16, 3), (32, 48, 3)]


def test_missing_audio(tmp_path: Path, click_clip_maker: Callable[..., ClickClip]) -> None:
    made = click_clip_maker(tmp_path / "silent.mp4", audio=False)
    assert not probe(made.path).has_audio
    with pytest.raises(MediaError, match=r"silent\.mp4.*no audio stream.*require_audio=False"):
        read_clip(made.path)
    clip = read_clip(made.path, require_audio=False)
    assert clip.audio is None and clip.sample_rate is None
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio(made.path)


def test_missing_video(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    write_audio(wav, np.zeros((1, 8000), np.float32), 16000)
    with pytest.raises(MediaError, match=r"tone\.wav.*no video stream"):
        read_clip(wav)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such file"):
        read_clip(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="is a folder"):
        probe(tmp_path)


def test_corrupt_and_truncated(tmp_path: Path, click_clip: ClickClip) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all " * 50)
    with pytest.raises(MediaError, match=r"garbage\.mp4.*corrupt"):
        read_clip(garbage)
    data = click_clip.path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match=r"truncated\.mp4"):
        read_clip(truncated, duration=2.0)


def test_unsupported_codec(tmp_path: Path, click_clip: ClickClip) -> None:
    # rename the H.264 sample entry to a fourcc no decoder knows
    odd = tmp_path / "odd.mp4"
    odd.write_bytes(click_clip.path.read_bytes().replace(b"avc1", b"zzzz"))
    with pytest.raises(MediaError, match=r"odd\.mp4.*video stream uses a codec this FFmpeg build cannot decode"):
        read_clip(odd)
    assert not probe(odd).has_video


def test_shorter_than_asked(click_clip: ClickClip) -> None:
    with pytest.raises(MediaError, match=r"shorter than asked.*3\.000 s"):
        read_clip(click_clip.path, duration=3.0)
    with pytest.raises(MediaError, match="past the end"):
        read_clip(click_clip.path, start=5.0)
    with pytest.raises(MediaError, match="shorter than asked"):
        read_audio(click_clip.path, start=1.5, duration=1.0)


def test_bad_arguments(click_clip: ClickClip, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="fps must be > 0"):
        read_clip(click_clip.path, fps=0)
    with pytest.raises(MediaError, match="size must be"):
        read_clip(click_clip.path, size=(0, 4))
    with pytest.raises(MediaError, match="cannot turn 2 audio channels into 3"):
        stereo = tmp_path / "st.wav"
        write_audio(stereo, np.zeros((2, 100), np.float32), 8000)
        read_audio(stereo, channels=3)


def test_write_rejects_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    ok = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(MediaError, match="even width and height"):
        write_clip(out, np.zeros((4, 7, 8, 3), np.uint8), 8)
    with pytest.raises(MediaError, match="must be uint8"):
        write_clip(out, ok.astype(np.float32), 8)
    with pytest.raises(MediaError, match=r"shape \(T, H, W, 3\)"):
        write_clip(out, ok[..., 0], 8)
    with pytest.raises(MediaError, match="fps must be a positive"):
        write_clip(out, ok, 0)
    with pytest.raises(MediaError, match="sample_rate"):
        write_clip(out, ok, 8, np.zeros((1, 100), np.float32))
    with pytest.raises(MediaError, match=r"\(channels, samples\)"):
        write_clip(out, ok, 8, np.zeros((100,), np.float32), 8000)
    with pytest.raises(MediaError, match="NaN"):
        write_audio(tmp_path / "x.wav", np.full((1, 10), np.nan, np.float32), 8000)


def test_audio_round_trip_with_resampling(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    tone = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 220 * t)]).astype(np.float32)
    path = write_audio(tmp_path / "tone.wav", tone, 16000)
    audio, sr = read_audio(path)
    assert sr == 16000 and audio.shape == (2, 16000)
    assert np.allclose(audio.numpy(), tone, atol=1e-4)  # 16-bit PCM
    mono, sr = read_audio(path, sample_rate=24000, channels=1, start=0.25, duration=0.5)
    assert sr == 24000 and mono.shape == (1, 12000)
    expected = np.abs(tone.mean(axis=0)[4000:12000]).max()  # mono is the mean of the channels
    assert float(mono.abs().max()) == pytest.approx(expected, abs=0.02)


def test_same_frames_give_the_same_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    wav = (0.1 * rng.standard_normal((1, 8000))).astype(np.float32)
    first = write_clip(tmp_path / "a1.mp4", a, 16, wav, 16000).read_bytes()
    write_clip(tmp_path / "b.mp4", b, 16, wav, 16000)  # encoder state must not leak between files
    assert write_clip(tmp_path / "a2.mp4", a, 16, wav, 16000).read_bytes() == first


def test_audio_covering_part_of_the_video_is_an_error(tmp_path: Path) -> None:
    """Read to its end, a clip whose sound stops early is refused, not padded with invented silence."""
    frames = np.zeros((48, 32, 32, 3), np.uint8)  # 3 s at 16 fps
    sound = (0.1 * np.random.default_rng(0).standard_normal((1, 16000))).astype(np.float32)  # 1 s
    write_clip(tmp_path / "partial.mp4", frames, 16.0, sound, 16000)
    with pytest.raises(MediaError, match=r"partial.mp4: the audio covers only 1\.\d+ s of the 3\.000 s of video"):
        read_clip(tmp_path / "partial.mp4")
    assert read_clip(tmp_path / "partial.mp4", require_audio=False, duration=1.0).frames.shape[0] == 16
    full = np.tile(sound, 3)  # the same clip with its full sound reads fine
    write_clip(tmp_path / "full.mp4", frames, 16.0, full, 16000)
    assert read_clip(tmp_path / "full.mp4").audio.shape[1] == 48000


def test_channel_errors_and_missing_files_name_the_file(tmp_path: Path) -> None:
    import av

    surround = tmp_path / "surround.wav"
    with av.open(str(surround), mode="w", format="wav") as out:  # 5.1: write_audio only writes mono/stereo
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "5.1"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000 * 6), np.int16), format="s16", layout="5.1")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(MediaError, match=r"surround\.wav: cannot turn 6 audio channels into 2"):
        read_audio(surround, channels=2)
    with pytest.raises(MediaError) as err:  # an absolute path: nothing about the current folder
        read_clip(tmp_path / "nope.mp4")
    assert "current folder" not in str(err.value)

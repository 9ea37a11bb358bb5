"""Image, retake and long-clip sampling: given latent frames stay given, the rest is generated, and
chunks of a long clip are conditioned on the clean tail of the chunk before."""

from __future__ import annotations

import pytest
import torch
from test_sampling import Oracle, _shapes

from av_model.dit import AVDiT
from av_model.flow.long_sampling import CHUNK_SEED_STRIDE, Chunk, plan_chunks, retake_crop, sample_long
from av_model.flow.sampling import TASKS, SamplerConfig, sample

EXACT = SamplerConfig(steps=4, guidance_video=1.0, guidance_audio=1.0)


def test_the_task_registry_names_every_task() -> None:
    assert TASKS == ("t2av", "v2a", "a2v", "extend", "i2av", "retake")


def test_i2av_holds_the_first_latent_frame_and_generates_the_rest(inputs_factory) -> None:
    inputs = inputs_factory(frames_v=4, frames_a=24)
    target_v, target_a = torch.zeros_like(inputs["video"]), torch.zeros_like(inputs["audio"])
    oracle = Oracle(target_v, target_a)
    image = inputs["video"][:, :, :1]  # only the image's latent frame is passed
    video, audio = sample(oracle, inputs["text"], task="i2av", video_cond=image, config=EXACT, **_shapes(inputs))
    assert torch.equal(video[:, :, :1], image)
    torch.testing.assert_close(video[:, :, 1:], target_v[:, :, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(audio, target_a, atol=1e-5, rtol=0)
    tv, ta = oracle.calls[0]  # per-frame times: 0 on the image's frame only; the audio is all noisy
    assert torch.all(tv[:, 0] == 0) and torch.all(tv[:, 1:] == 1) and torch.all(ta == 1)


def test_i2av_on_the_debug_model_depends_on_the_image(debug_model: AVDiT, inputs_factory, randomizer) -> None:
    model, inputs = randomizer(debug_model), inputs_factory()
    kw = dict(task="i2av", config=SamplerConfig(steps=2), seed=1, **_shapes(inputs))
    va, aa = sample(model, inputs["text"], video_cond=inputs["video"][:, :, :1], **kw)
    vb, ab = sample(model, inputs["text"], video_cond=inputs["video"][:, :, 1:2], **kw)
    assert torch.equal(va[:, :, :1], inputs["video"][:, :, :1])
    assert (va[:, :, 1:] - vb[:, :, 1:]).abs().max() > 1e-4 and (aa - ab).abs().max() > 1e-4


@pytest.mark.parametrize("modality", ["both", "video", "audio"])
def test_retake_keeps_everything_outside_the_span(inputs_factory, modality: str) -> None:
    inputs = inputs_factory(frames_v=8, frames_a=24)  # 2 s: 4 video and 12 audio latents per second
    oracle = Oracle(torch.zeros_like(inputs["video"]), torch.zeros_like(inputs["audio"]))
    video, audio = sample(oracle, inputs["text"], task="retake", span=(0.5, 1.25), modality=modality,
                          video_cond=inputs["video"], audio_cond=inputs["audio"], config=EXACT, **_shapes(inputs))
    v_in = torch.zeros(8, dtype=torch.bool)
    v_in[2:5] = True  # video centres 0.625, 0.875, 1.125 s
    a_in = torch.zeros(24, dtype=torch.bool)
    a_in[6:15] = True  # audio centres 0.54 .. 1.21 s
    if modality == "audio":
        v_in[:] = False
    if modality == "video":
        a_in[:] = False
    assert torch.equal(video[:, :, ~v_in], inputs["video"][:, :, ~v_in])  # outside: the given latents, exactly
    assert torch.equal(audio[:, :, ~a_in], inputs["audio"][:, :, ~a_in])
    torch.testing.assert_close(video[:, :, v_in], torch.zeros_like(video[:, :, v_in]), atol=1e-5, rtol=0)
    torch.testing.assert_close(audio[:, :, a_in], torch.zeros_like(audio[:, :, a_in]), atol=1e-5, rtol=0)
    tv, ta = oracle.calls[0]
    assert torch.equal(tv[0] > 0, v_in) and torch.equal(ta[0] > 0, a_in)


def test_an_audio_retake_leaves_the_video_untouched_on_the_debug_model(debug_model: AVDiT, inputs_factory,
                                                                      randomizer) -> None:
    model, inputs = randomizer(debug_model), inputs_factory(frames_v=8, frames_a=24)
    kw = dict(task="retake", span=(0.5, 1.5), config=SamplerConfig(steps=2), seed=4,
              video_cond=inputs["video"], audio_cond=inputs["audio"], **_shapes(inputs))
    video, audio = sample(model, inputs["text"], modality="audio", **kw)
    assert torch.equal(video, inputs["video"])
    assert torch.equal(audio[:, :, :6], inputs["audio"][:, :, :6]) and torch.equal(audio[:, :, 18:],
                                                                                    inputs["audio"][:, :, 18:])
    assert (audio[:, :, 6:18] - inputs["audio"][:, :, 6:18]).abs().min() > 0  # regenerated


def test_bad_retake_requests_are_refused(debug_model: AVDiT, inputs_factory) -> None:
    inputs = inputs_factory()  # 1 s
    kw = dict(task="retake", video_cond=inputs["video"], audio_cond=inputs["audio"], **_shapes(inputs))
    with pytest.raises(ValueError, match="must satisfy 0 <= start < end <= the clip length"):
        sample(debug_model, inputs["text"], span=(0.5, 3.0), **kw)
    with pytest.raises(ValueError, match="needs span"):
        sample(debug_model, inputs["text"], **kw)
    with pytest.raises(ValueError, match="holds no latent frame centre"):
        sample(debug_model, inputs["text"], span=(0.0, 0.1), modality="video", **kw)
    with pytest.raises(ValueError, match="modality"):
        sample(debug_model, inputs["text"], span=(0.0, 0.5), modality="sound", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs audio_cond"):
        sample(debug_model, inputs["text"], task="retake", span=(0.0, 0.5), video_cond=inputs["video"],
               **_shapes(inputs))


# ------------------------------------------------------------------------------------- long clips
def test_chunks_overlap_by_the_history_and_cover_the_clip() -> None:
    # 5 s at 4 video / 12 audio latents per second, windows of 2 s with 1 s of history
    chunks = plan_chunks(20, 60, 4.0, 12.0, window=8, history=4)
    assert [c.video for c in chunks] == [(0, 8), (4, 12), (8, 16), (12, 20)]
    assert [c.audio for c in chunks] == [(0, 24), (12, 36), (24, 48), (36, 60)]
    assert [c.history_video for c in chunks] == [0, 4, 4, 4] and chunks[1].history_audio == 12
    last = plan_chunks(18, 54, 4.0, 12.0, window=8, history=4)[-1]  # 4.5 s: the last chunk is shorter
    assert last.video == (12, 18) and last.audio == (36, 54)
    assert plan_chunks(6, 18, 4.0, 12.0, window=8, history=4) == [Chunk(0, (0, 6), (0, 18), 0, 0)]
    with pytest.raises(ValueError, match="0 < history < window"):
        plan_chunks(20, 60, 4.0, 12.0, window=4, history=4)


def test_each_chunk_is_given_the_clean_tail_of_the_chunk_before(debug_model: AVDiT, inputs_factory,
                                                                randomizer) -> None:
    model = randomizer(debug_model)
    inputs = inputs_factory(frames_v=16, frames_a=48)  # 4 s
    kw = dict(config=SamplerConfig(steps=2), seed=[3, 9], **_shapes(inputs))
    chunks = plan_chunks(16, 48, 4.0, 12.0, window=8, history=4)
    made: list[tuple[Chunk, torch.Tensor, torch.Tensor]] = []
    video, audio = sample_long(model, inputs["text"], chunks=chunks, on_chunk=lambda c, v, a: made.append((c, v, a)),
                               **kw)
    assert video.shape == inputs["video"].shape and audio.shape == inputs["audio"].shape
    assert [c.index for c, _, _ in made] == [0, 1, 2]
    for (prev, pv, pa), (cur, cv, ca) in zip(made, made[1:]):
        # the prefix latents of chunk k+1 are the tail of chunk k, exactly
        assert torch.equal(cv[:, :, :cur.history_video], pv[:, :, -cur.history_video:])
        assert torch.equal(ca[:, :, :cur.history_audio], pa[:, :, -cur.history_audio:])
        assert cur.video[0] == prev.video[1] - cur.history_video
    for c, v, a in made:  # the clip is the chunks put together
        assert torch.equal(video[:, :, c.video[0]:c.video[1]], v) and torch.equal(audio[:, :, c.audio[0]:c.audio[1]], a)
    # chunk 0 is the one-window clip of the same seed
    one_v, one_a = sample(model, inputs["text"], config=SamplerConfig(steps=2), seed=[3, 9], video_shape=(2, 4, 8, 4, 4),
                          audio_shape=(2, 8, 24), video_rate=4.0, audio_rate=12.0)
    assert torch.equal(one_v, made[0][1]) and torch.equal(one_a, made[0][2])
    # the history steers what follows: another chunk 0 changes chunk 1's new frames
    other = []
    sample_long(model, inputs["text"], chunks=chunks, on_chunk=lambda c, v, a: other.append((v, a)),
                **{**kw, "seed": [4, 9]})
    assert (other[1][0][:1, :, 4:] - made[1][1][:1, :, 4:]).abs().max() > 1e-4
    assert CHUNK_SEED_STRIDE > 1000


def test_a_long_clip_can_start_from_an_image(inputs_factory) -> None:
    inputs = inputs_factory(frames_v=12, frames_a=36)  # 3 s
    oracle = Oracle(torch.zeros_like(inputs["video"][:, :, :8]), torch.zeros_like(inputs["audio"][:, :, :24]))
    chunks = plan_chunks(12, 36, 4.0, 12.0, window=8, history=4)
    video, _ = sample_long(oracle, inputs["text"], task="i2av", video_cond=inputs["video"][:, :, :1], chunks=chunks,
                           config=EXACT, **_shapes(inputs))
    assert torch.equal(video[:, :, :1], inputs["video"][:, :, :1])
    with pytest.raises(ValueError, match="starts with"):
        sample_long(oracle, inputs["text"], task="v2a", chunks=chunks, **_shapes(inputs))


def test_a_retake_of_a_long_clip_samples_one_window_around_the_span() -> None:
    # 5 s at 4 video / 12 audio latents per second, windows of 2 s (8 video latents)
    assert retake_crop(20, 60, 4.0, 12.0, (8, 10), window=8) == Chunk(0, (5, 13), (15, 39), 0, 0)
    assert retake_crop(20, 60, 4.0, 12.0, (0, 2), window=8).video == (0, 8)  # clamped to the clip
    assert retake_crop(20, 60, 4.0, 12.0, (18, 20), window=8).audio == (36, 60)
    assert retake_crop(20, 60, 4.0, 12.0, (4, 12), window=8) is None  # the span fills the window: one pass
    assert retake_crop(8, 24, 4.0, 12.0, (2, 4), window=8) is None  # the clip fits one window
    # the audio window starts at the latent frame at or before the video's start
    crop = retake_crop(20, 75, 4.0, 15.0, (9, 10), window=4)
    assert crop is not None and crop.video == (7, 11) and crop.audio == (26, 42)

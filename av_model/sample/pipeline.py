"""`AVPipeline`: prompts (and optionally a video, an audio track or a clip to continue) to clips
with sound, saved as mp4 files each with a JSON sidecar (`avgen sample` is in `sample_cli`).

Tasks:
    t2av    text to audio and video
    v2a     video to audio (`--video`/`--video-list`): the video is kept, sound is generated
    a2v     audio to video (`--audio`): the sound is kept, video is generated
    extend  continuation (`--extend IN.mp4 --extend-seconds S`): the first S seconds of the clip
            are given, the rest up to `--duration` is generated
    i2av    image to audio and video (`--image first.png`): the image is the first frame
    retake  temporal inpainting (`--retake IN.mp4 --span A B --modality audio|video|both`): the span
            of one modality or both is generated again, the rest of the clip is kept (a clip
            longer than the window is sampled in one window around the span)

t2av, i2av and extend clips longer than the training window (`--window`, default the training
clips' duration) are made chunk by chunk, each chunk given the last `--history` seconds of the
latents before it (`av_model.flow.long_sampling`).

Frame size, frame rate and latent rates come from the latent cache's metadata stored in the
checkpoint, so a model samples at the geometry it was trained on. Clip i's noise comes from its own
seed (base seed + i), so a clip does not depend on which clips share its batch; v2a/a2v batches
hold clips of one length only, so every clip is as long as its input.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from tqdm import tqdm

from av_model.cache.format import LatentCodec, LatentSpec
from av_model.flow.long_sampling import Chunk, plan_chunks, retake_crop, sample_long
from av_model.flow.sampling import TASKS, SamplerConfig, Task, sample, video_token_frames
from av_model.sample.generator_file import GeneratorBundle, load_generator
from av_model.sample.task_inputs import psnr, read_image, snap_span, splice_audio, splice_frames

__all__ = ["AVPipeline", "GeneratedClip", "SkippedItem", "load_decoders"]


@dataclass(frozen=True)
class SkippedItem:
    """An item of a sampling job that could not be made.

    Attributes:
        id: the clip id it would have had.
        reason: what is wrong with it and what to do (the error's message).
        input: the input file, if the task has one.
    """

    id: str
    reason: str
    input: str | None = None


@dataclass
class GeneratedClip:
    """One generated clip and how it was made.

    Attributes:
        id: file stem of the outputs.
        prompt: the text prompt.
        task: "t2av", "v2a", "a2v", "extend", "i2av" or "retake".
        frames: (T, H, W, 3) uint8.
        audio: (C, S) float32 in [-1, 1].
        fps: frames per second.
        sample_rate: audio samples per second.
        info: the sidecar's other fields (seed, sampler, guidance, inputs, ...).
    """

    id: str
    prompt: str
    task: str
    frames: torch.Tensor
    audio: torch.Tensor
    fps: float
    sample_rate: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.frames.shape[0] / self.fps


def _device(spec: str | torch.device) -> torch.device:
    if str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def load_decoders(codec: str | Path, vae: str | Path, device: str | torch.device = "cpu",
                  expect: dict[str, Any] | LatentSpec | None = None) -> tuple[LatentCodec, LatentCodec]:
    """Load the codec and the video autoencoder; refuse ones other than the cache was built with.

    Args:
        expect: the latent cache's metadata (its JSON or its `LatentSpec`); its fingerprints must match
            the files'.
    """
    from audio_codec import load_codec
    from av_model.vae import load_video_autoencoder

    for name, path in (("codec", codec), ("vae", vae)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"--{name} {path} does not exist.")
    device = _device(device)
    codec_m = load_codec(codec, map_location=device).eval()
    vae_m = load_video_autoencoder(vae, map_location=device).eval()
    if expect is not None:
        spec = expect if isinstance(expect, LatentSpec) else LatentSpec.from_meta(expect)
        made_by = {} if isinstance(expect, LatentSpec) else expect.get("encoders", {})
        for name, model, path in (("codec", codec_m, codec), ("vae", vae_m, vae)):
            want = spec.fingerprint(name)
            if model.fingerprint != want:
                raise ValueError(
                    f"the {name} {path} (fingerprint {model.fingerprint}) is not the one the generator's latent "
                    f"cache was built with (fingerprint {want}, {made_by.get(name)}); decoding "
                    f"with another {name} gives noise. Pass the file the cache was built from."
                )
    return codec_m, vae_m


class AVPipeline:
    """Generator, text encoder and decoders together, in the stages of a diffusers pipeline.

    Args:
        model: the `AVDiT` (eval mode).
        text_encoder: the encoder(s) the cache was built with.
        codec, vae: the decoders the cache was built with.
        cache_meta: the latent cache's metadata (geometry, rates, fingerprints).
        sampler: default sampler settings.
        checkpoint_sha256: recorded in each sidecar.
        checkpoint: path of the checkpoint (recorded in each sidecar).
    """

    def __init__(self, model: torch.nn.Module, text_encoder: Any, codec: Any, vae: Any, cache_meta: dict[str, Any],
                 sampler: SamplerConfig | None = None, checkpoint_sha256: str | None = None,
                 checkpoint: str | None = None) -> None:
        self.model, self.text_encoder, self.codec, self.vae = model, text_encoder, codec, vae
        self.meta = cache_meta
        self.spec = LatentSpec.from_meta(cache_meta)
        self.sampler = sampler or SamplerConfig()
        self.checkpoint_sha256, self.checkpoint = checkpoint_sha256, checkpoint
        self.fps, self.sample_rate = self.spec.fps, self.spec.sample_rate
        self.video_rate, self.audio_rate = self.spec.video_rate, self.spec.audio_rate
        self.tc = self.spec.temporal_compression
        # Longer clips are made chunk by chunk (`long_clip`); None: one pass whatever the length.
        self.window: float | None = cache_meta.get("train_duration")
        # Rewrites prompts before text encoding (`av_model.text.enhance`); None: prompts as given.
        self.prompt_enhancer: Any = None
        self.extra: dict[str, Any] = {}  # what the generator file records besides the model (`distill`)

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, codec: str | Path, vae: str | Path, device: str = "auto",
                        text: list[str] | None = None) -> AVPipeline:
        """Load everything for sampling; the text encoder is the cache's unless `text` is given."""
        device_t = _device(device)
        bundle: GeneratorBundle = load_generator(ckpt, map_location=device_t)
        codec_m, vae_m = load_decoders(codec, vae, device_t, expect=bundle.cache_meta)
        encoder = _text_encoder(bundle.cache_meta, text, device_t)
        pipe = cls(bundle.model, encoder, codec_m, vae_m, bundle.cache_meta, bundle.sampler, bundle.sha256, str(ckpt))
        pipe.extra = bundle.extra
        return pipe

    @classmethod
    def from_module(cls, module: Any, codec: Any, vae: Any) -> AVPipeline:
        """From a training `AVDiffusion` (the SampleWriter callback), with decoders already loaded."""
        encoder = _text_encoder(module.cache_meta, None, module.device)
        pipe = cls(module.model, encoder, codec, vae, module.cache_meta, module.sampler_config)
        pipe.window = None  # training samples last a batch's duration, one the model trains on: never chunked
        return pipe

    @property
    def size(self) -> tuple[int, int]:
        if self.spec.size is None:
            raise ValueError("the model was trained on clips of their own sizes; this pipeline samples at one "
                             "fixed size, so the cache must have been built with a fixed --size.")
        return self.spec.size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------- helpers
    def check_duration(self, duration: float) -> int:
        """Frames of a clip of `duration` seconds; refuses durations the autoencoder cannot make."""
        frames = duration * self.fps
        step = self.tc / self.fps
        if duration <= 0 or abs(frames - round(frames)) > 1e-6 or round(frames) % self.tc:
            raise ValueError(
                f"duration {duration} s is {frames:g} frames at {self.fps:g} fps; clips must be whole multiples of "
                f"{self.tc} frames (the autoencoder's temporal compression), i.e. of {step:g} s."
            )
        return int(round(frames))

    def _floor_duration(self, seconds: float) -> float:
        """The longest valid duration not above `seconds`."""
        step = self.tc / self.fps
        return math.floor(seconds / step + 1e-6) * step

    def long_clip(self, duration: float, window: float | None = None,
                  history: float | None = None) -> tuple[float, float] | None:
        """(window, history) in seconds, snapped to whole video tokens, when a clip of `duration`
        seconds is made chunk by chunk; None when it fits one window.

        Args:
            window: seconds the model sees at once (default `self.window`: the training clips' duration).
            history: seconds of each chunk given from the one before (default: half the window, the
                longest clean prefix training shows the model, `FlowConfig.prefix_max_fraction`).
        """
        window = window if window is not None else self.window
        if window is None or duration <= window + 1e-6:
            return None
        token = video_token_frames(self.model) / self.video_rate  # seconds per video token
        win = math.floor(window / token + 1e-6) * token
        hist = math.floor((win / 2 if history is None else history) / token + 1e-6) * token
        if hist <= 0 or hist >= win:
            asked = win / 2 if history is None else history
            raise ValueError(f"a long clip needs 0 < history < window; got history {asked:g} s and window {window:g} s "
                             f"(both are rounded down to whole video tokens of {token:g} s).")
        return win, hist

    def _retake_crop(self, video_frames: int, audio_frames: int, span: tuple[float, float] | None,
                     window: float | None) -> Chunk | None:
        """The window a retake samples when the clip is longer than the window (see `retake_crop`)."""
        window = window if window is not None else self.window
        if window is None or span is None:
            return None
        token = video_token_frames(self.model)
        frames = math.floor(window * self.video_rate / token + 1e-6) * token
        first, last = round(span[0] * self.video_rate), round(span[1] * self.video_rate)
        return retake_crop(video_frames, audio_frames, self.video_rate, self.audio_rate, (first, last), frames)

    @torch.no_grad()
    def _encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> normalized latents (B, C_v, T_v, H_v, W_v)."""
        x = frames.to(self.device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (B, 3, T, H, W)
        return self.vae.normalize(self.vae.encode(x))

    @torch.no_grad()
    def _encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, C, S) float -> normalized latents (B, C_a, T_a)."""
        return self.codec.normalize(self.codec.encode(audio.to(self.device)))

    @torch.no_grad()
    def _decode(self, z_v: torch.Tensor, z_a: torch.Tensor, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents -> frames (B, T, H, W, 3) uint8 on CPU and audio (B, C, num_samples) float32 on CPU."""
        video = []
        for z in z_v.split(1):  # one clip at a time bounds decoder memory
            z = self.vae.denormalize(z)
            x = self.vae.decode_chunked(z) if z.shape[2] > 16 else self.vae.decode(z)  # (1, 3, T, H, W)
            video.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu())
        audio = self.codec.decode(self.codec.denormalize(z_a), length=num_samples).clamp(-1, 1).float().cpu()
        return torch.cat(video), audio

    # -------------------------------------------------------------------------------- the call
    def __call__(self, prompts: list[str], **kwargs: Any) -> list[GeneratedClip]:
        """Generate one clip per prompt (the arguments of `generate`); a bad input raises `ValueError`.

        Returns:
            the clips in the order of `prompts`.
        """
        clips: dict[str, GeneratedClip] = {}
        for result in self.generate(prompts, **kwargs):
            if isinstance(result, SkippedItem):
                raise ValueError(f"{result.input or result.id}: {result.reason}")
            clips[result.id] = result
        ids = kwargs.get("ids") or [f"{i:04d}" for i in range(len(prompts))]
        return [clips[i] for i in ids]

    def generate(
        self,
        prompts: list[str],
        *,
        task: str = "t2av",
        videos: Sequence[str | Path] | None = None,
        audios: Sequence[str | Path] | None = None,
        images: Sequence[str | Path] | None = None,
        duration: float | None = None,
        extend_seconds: float | None = None,
        span: tuple[float, float] | None = None,
        modality: str = "both",
        window: float | None = None,
        history: float | None = None,
        steps: int | None = None,
        solver: str | None = None,
        cfg_video: float | None = None,
        cfg_audio: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        batch_size: int = 4,
        ids: list[str] | None = None,
        progress: bool = True,
    ) -> Iterator[GeneratedClip | SkippedItem]:
        """Generate one clip per prompt, yielding each batch's clips as soon as they are made.

        Each clip is as long as its own input (v2a/a2v): clips are batched only with clips of the
        same length, never cut to the shortest of a batch. An input that cannot be used (missing,
        unreadable, without the needed stream, too short) is yielded as a `SkippedItem` with the
        reason, before any sampling; the other clips are still made.

        Args:
            prompts: text prompts (one per clip; may be "" for v2a/a2v).
            task: "t2av", "v2a", "a2v", "extend", "i2av" or "retake".
            videos: input videos, one per prompt (v2a: the video; extend: the clip to continue;
                retake: the clip to retake, which needs sound).
            audios: input audio files, one per prompt (a2v).
            images: first frames, one per prompt (i2av); resized to the model's frame size (scaled
                to cover it, then centre-cropped).
            duration: seconds per clip (t2av/extend/i2av: required; v2a/a2v/retake: at most the
                input's length).
            extend_seconds: seconds of the input kept as the given beginning (extend).
            span: (start, end) seconds regenerated (retake); widened to whole video tokens.
            modality: what retake regenerates inside the span: "video", "audio" or "both".
            window, history: long clips (t2av/extend/i2av longer than `window`) are made in chunks
                of `window` seconds, each given the last `history` seconds before it (see `long_clip`).
            steps, solver, cfg_video, cfg_audio, guidance_interval: override the sampler defaults.
            seed: base seed; clip i's noise comes from seed + i alone, whatever batch it falls in.
            seeds: the seed of each clip instead (e.g. to resume a job with its original seeds).
            batch_size: clips sampled together (at most; clips of other lengths go to other batches).
            ids: output ids (default: 0000, 0001, ...).
            progress: show a progress bar over batches.
        """
        # 1. Check inputs.
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
        if not prompts:
            raise ValueError("no prompts given; pass at least one (an empty string is allowed for v2a/a2v).")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        inputs = {"v2a": videos, "extend": videos, "retake": videos, "a2v": audios, "i2av": images}.get(task)
        if task != "t2av" and (inputs is None or len(inputs) != len(prompts)):
            kind = {"a2v": "audio files", "i2av": "images"}.get(task, "videos")
            raise ValueError(f"task {task!r} needs one of the input {kind} per prompt; got "
                             f"{0 if inputs is None else len(inputs)} for {len(prompts)} prompts.")
        if task in GENERATED_LENGTH and duration is None:
            raise ValueError(f"task {task!r} needs a duration in seconds.")
        if task == "retake":
            if modality not in ("video", "audio", "both"):
                raise ValueError(f"retake regenerates 'video', 'audio' or 'both'; got {modality!r}.")
            if span is None or len(span) != 2 or not 0 <= span[0] < span[1]:
                raise ValueError(f"retake needs a span START END with 0 <= START < END seconds; got {span}.")
        if task == "extend":
            assert duration is not None  # checked just above
            if extend_seconds is None or not 0 < extend_seconds < duration:
                raise ValueError(f"extend needs 0 < extend_seconds < duration ({duration} s); got {extend_seconds}.")
            if self._floor_duration(extend_seconds) <= 0:
                raise ValueError(f"extend_seconds {extend_seconds} is shorter than one latent frame "
                                 f"({self.tc / self.fps:g} s).")
            extend_seconds = self._floor_duration(extend_seconds)
        if duration is not None and task in GENERATED_LENGTH:
            self.check_duration(duration)
            plan = self.long_clip(duration, window, history)
            if plan is not None and task == "extend":
                assert extend_seconds is not None
                if extend_seconds >= plan[0]:
                    raise ValueError(f"a long continuation starts from its given {extend_seconds:g} s inside the first "
                                     f"window of {plan[0]:g} s; give --extend-seconds below it or a longer --window.")
        ids = list(ids) if ids is not None else [f"{i:04d}" for i in range(len(prompts))]
        if len(ids) != len(prompts) or len(set(ids)) != len(ids):
            raise ValueError("ids must be unique, one per prompt.")
        seeds = [seed + i for i in range(len(prompts))] if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one per prompt.")
        sampler = replace(
            self.sampler, progress=False,
            steps=self.sampler.steps if steps is None else steps,
            solver=self.sampler.solver if solver is None else solver,  # type: ignore[arg-type]
            guidance_video=self.sampler.guidance_video if cfg_video is None else cfg_video,
            guidance_audio=self.sampler.guidance_audio if cfg_audio is None else cfg_audio,
            guidance_interval=self.sampler.guidance_interval if guidance_interval is None else guidance_interval,
        )
        # 2. Each clip's length: the given duration, or its input's (v2a/a2v); unusable inputs are skipped.
        lengths: dict[int, float] = {}
        for i in range(len(prompts)):
            if task not in GENERATED_LENGTH:
                assert inputs is not None  # checked above
                try:
                    lengths[i] = self._input_seconds(inputs[i], duration, video=task != "a2v",
                                                     task=task, modality=modality, span=span)
                except (ValueError, OSError) as err:  # MediaError is a ValueError
                    yield SkippedItem(ids[i], str(err), str(inputs[i]))
            else:
                assert duration is not None
                lengths[i] = duration
        # 3. Batches of clips of one length, in list order within each length.
        order = sorted(lengths, key=lambda i: (lengths[i], i))
        groups = [[i for i in order if lengths[i] == d] for d in sorted(set(lengths.values()))]
        batches = [g[k:k + batch_size] for g in groups for k in range(0, len(g), batch_size)]
        for batch in tqdm(batches, desc=f"sampling {task}", unit="batch", disable=not progress):
            given: dict[int, dict[str, torch.Tensor]] = {}
            for i in batch:  # read each input alone: one that fails is skipped, its batch goes on
                try:
                    given[i] = self._read_input(task, None if inputs is None else inputs[i], lengths[i],
                                                extend_seconds)
                except (ValueError, OSError) as err:
                    yield SkippedItem(ids[i], str(err), None if inputs is None else str(inputs[i]))
            kept = [i for i in batch if i in given]
            if kept:
                opts = _TaskOptions(extend_seconds, span, modality, window, history)
                yield from self._batch([prompts[i] for i in kept], [ids[i] for i in kept], task,
                                       [given[i] for i in kept], None if inputs is None else [inputs[i] for i in kept],
                                       lengths[kept[0]], opts, sampler, [seeds[i] for i in kept])

    def _read_input(self, task: str, path: str | Path | None, duration: float,
                    extend_seconds: float | None) -> dict[str, torch.Tensor]:
        """The given modality of one clip: {"frames": (T, H, W, 3) uint8} and/or {"audio": (C, S) float}."""
        from avio import read_audio, read_clip

        if task == "t2av" or path is None:
            return {}
        h, w = self.size
        if task == "v2a":
            # the sound is generated: the input's own audio track (short, broken or absent) is not read
            clip = read_clip(path, fps=self.fps, size=(h, w), duration=duration, require_audio=False, with_audio=False)
            return {"frames": clip.frames}
        if task == "a2v":
            wav, _ = read_audio(path, sample_rate=self.sample_rate, channels=self.codec.channels, duration=duration)
            return {"audio": wav}
        if task == "i2av":
            image, (h0, w0) = read_image(path, (h, w))
            return {"image": image, "image_size": torch.tensor([h0, w0])}
        # extend: the given beginning; retake: the whole clip, sound included
        clip = read_clip(path, fps=self.fps, size=(h, w), duration=extend_seconds if task == "extend" else duration,
                         sample_rate=self.sample_rate, channels=self.codec.channels)
        return {"frames": clip.frames, "audio": _audio_of(clip, task)}

    def _batch(self, prompts: list[str], ids: list[str], task: str, given: list[dict[str, torch.Tensor]],
               inputs: Sequence[Any] | None, duration: float, opts: _TaskOptions, sampler: SamplerConfig,
               seeds: list[int]) -> list[GeneratedClip]:
        """Sample one batch of clips that all last `duration` seconds."""
        h, w = self.size
        b = len(prompts)
        # 2. Encode prompt (rewritten first by the prompt enhancer, when one is set; "" stays "").
        enhancer = self.prompt_enhancer
        enhanced = enhancer.rewrite(list(prompts)) if enhancer is not None else list(prompts)
        text = self.text_encoder.encode(enhanced)
        # 3. Encode the given modality.
        video_cond: torch.Tensor | None = None
        audio_cond: torch.Tensor | None = None
        given_frames: torch.Tensor | None = None
        given_audio: torch.Tensor | None = None
        if task in ("v2a", "extend", "retake"):
            frames_in = torch.stack([g["frames"] for g in given])  # (B, T, H, W, 3)
            video_cond = self._encode_video(frames_in)
            given_frames = frames_in if task in ("v2a", "retake") else None
        if task in ("a2v", "extend", "retake"):
            audio_in = torch.stack([g["audio"] for g in given])  # (B, C, S)
            audio_cond = self._encode_audio(audio_in)
            given_audio = audio_in if task in ("a2v", "retake") else None
        if task == "i2av":
            # The image is the first latent frame: the autoencoder encodes an image as the still clip
            # of `tc` copies of it, so it holds the first token as the clean-prefix mechanism gives it.
            images = torch.stack([g["image"] for g in given])  # (B, H, W, 3)
            video_cond = self._encode_video(images[:, None]).repeat(1, 1, video_token_frames(self.model), 1, 1)
        # 4. Prepare latent shapes.
        frames = self.check_duration(duration)
        num_samples = round(duration * self.sample_rate)
        sc = self.spec.spatial_compression
        video_shape = (b, self.spec.video_latent_dim, frames // self.tc, h // sc, w // sc)
        audio_frames = math.ceil(num_samples / self.spec.hop_length)
        audio_shape = (b, self.spec.audio_latent_dim, audio_frames)
        if audio_cond is not None and task in ("a2v", "retake"):
            audio_cond = _pad_time(audio_cond, audio_frames)
        if video_cond is not None and task == "retake":
            video_cond = _pad_time(video_cond, video_shape[2])
        if task == "extend":
            assert video_cond is not None and audio_cond is not None
            # Given latents padded to the full length: only the frames inside the prefix are read.
            video_cond = _pad_time(video_cond, video_shape[2])
            audio_cond = _pad_time(audio_cond, audio_shape[2])
        span = None
        if task == "retake":
            assert opts.span is not None  # checked in `generate`
            # whole video tokens, so no token mixes a kept frame with a regenerated one
            span = snap_span(opts.span, video_token_frames(self.model) * self.tc / self.fps, duration)
        # 5. Denoising loop: one pass, or chunk by chunk for a clip longer than the window.
        long = self.long_clip(duration, opts.window, opts.history) if task in GENERATED_LENGTH else None
        chunks = []
        kw: dict[str, Any] = dict(video_shape=video_shape, audio_shape=audio_shape, video_rate=self.video_rate,
                                  audio_rate=self.audio_rate, config=sampler, task=cast(Task, task),
                                  video_cond=video_cond, audio_cond=audio_cond, extend_seconds=opts.extend_seconds,
                                  seed=seeds)
        crop = self._retake_crop(video_shape[2], audio_frames, span, opts.window) if task == "retake" else None
        if crop is not None:  # a retake of a clip longer than the window samples one window around the span
            assert span is not None and video_cond is not None and audio_cond is not None
            (v0, v1), (a0, a1) = crop.video, crop.audio
            z_v, z_a = video_cond.clone(), audio_cond.clone()
            z_v[:, :, v0:v1], z_a[:, :, a0:a1] = sample(
                self.model, text, **{**kw, "video_shape": (*video_shape[:2], v1 - v0, *video_shape[3:]),
                                     "audio_shape": (b, audio_shape[1], a1 - a0), "video_cond": video_cond[:, :, v0:v1],
                                     "audio_cond": audio_cond[:, :, a0:a1]},
                span=(span[0] - v0 / self.video_rate, span[1] - v0 / self.video_rate),
                modality=cast(Any, opts.modality))
        elif long is None:
            z_v, z_a = sample(self.model, text, span=span, modality=cast(Any, opts.modality), **kw)
        else:
            chunks = plan_chunks(video_shape[2], audio_frames, self.video_rate, self.audio_rate,
                                 round(long[0] * self.video_rate), round(long[1] * self.video_rate))
            z_v, z_a = sample_long(self.model, text, chunks=chunks, **kw)
        # 6. Decode latents; the given modality keeps its original pixels or samples.
        out_frames, out_audio = self._decode(z_v, z_a, num_samples)
        if task == "retake":
            assert given_frames is not None and given_audio is not None and span is not None
            kept_frames, kept_audio = given_frames[:, :frames].cpu(), given_audio[..., :num_samples].float().cpu()
            new_video, new_audio = opts.modality in ("video", "both"), opts.modality in ("audio", "both")
            out_frames = torch.stack([splice_frames(k, m, span, self.fps) if new_video else k
                                      for k, m in zip(kept_frames, out_frames)])
            out_audio = torch.stack([splice_audio(k, m, span, self.sample_rate) if new_audio else k
                                     for k, m in zip(kept_audio, out_audio)])
        else:
            if given_frames is not None:
                out_frames = given_frames[:, :frames].cpu()
            if given_audio is not None:
                out_audio = given_audio[..., :num_samples].float().cpu()
        # 7. Package clips with their record.
        info: dict[str, Any] = {
            "task": task, "sampler": sampler.solver, "steps": sampler.steps,
            "guidance": {"video": sampler.guidance_video, "audio": sampler.guidance_audio,
                         "interval": list(sampler.guidance_interval)},
            "duration": duration, "fps": self.fps, "sample_rate": self.sample_rate, "size": [h, w],
            "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
            "batch_size": b, "codec_fingerprint": self.spec.codec_fingerprint,
            "vae_fingerprint": self.spec.vae_fingerprint}
        if task == "extend":
            info["extend_seconds"] = opts.extend_seconds
        if task == "retake":
            assert span is not None
            info.update(span=list(span), span_asked=[float(v) for v in opts.span or ()], modality=opts.modality)
            if crop is not None:
                info["retake_window"] = [crop.video[0] / self.video_rate, crop.video[1] / self.video_rate]
        if long is not None:
            info.update(window=long[0], history=long[1], chunks=[c.seconds(self.video_rate) for c in chunks])
        per_clip: list[dict[str, Any]] = [{} for _ in range(b)]
        if task == "i2av":
            for i, g in enumerate(given):  # how closely the first frame holds the image (inf: identical)
                value = psnr(out_frames[i, 0], g["image"])
                per_clip[i] = {"image_size": [int(v) for v in g["image_size"]],
                               "first_frame_psnr": None if math.isinf(value) else round(value, 3)}
        if enhancer is not None:  # the sidecar keeps the prompt as given and as the model read it
            for i in range(b):
                per_clip[i].update(prompt_enhanced=enhanced[i], prompt_enhancer=enhancer.name)
        return [
            GeneratedClip(id=ids[i], prompt=prompts[i], task=task, frames=out_frames[i], audio=out_audio[i],
                          fps=self.fps, sample_rate=self.sample_rate,
                          info={**info, **per_clip[i], "seed": seeds[i], "batch_position": i,
                                **({"input": str(inputs[i])} if inputs is not None else {})})
            for i in range(b)
        ]

    def _input_seconds(self, path: str | Path, duration: float | None, *, video: bool, task: str | None = None,
                       modality: str = "both", span: tuple[float, float] | None = None) -> float:
        """The longest valid duration of the input (at most `duration`); raises `MediaError`/`ValueError`.

        For a retake, the input must also have sound and hold the whole span.
        """
        from avio import probe

        task = task or ("v2a" if video else "a2v")
        info = probe(path)
        if video and not info.has_video:
            raise ValueError(f"{path} has no video stream; {task} needs a video.")
        if not video and not info.has_audio:
            raise ValueError(f"{path} has no audio stream; a2v needs audio.")
        if task == "retake" and not info.has_audio:
            why = ("an audio retake regenerates part of its sound" if modality in ("audio", "both") else
                   "a video retake keeps its sound")
            raise ValueError(f"{path} has no audio stream, but {why}; retake a clip with sound (or give it sound "
                             "first with video-to-audio, --video).")
        length = info.duration  # the longest stream; v2a needs the video's own length
        if video and info.num_frames and info.fps:
            length = min(length, info.num_frames / info.fps)
        seconds = self._floor_duration(min(length, duration) if duration else length)
        if seconds <= 0:
            raise ValueError(f"{path} is {info.duration:.3f} s long, shorter than one latent frame "
                             f"({self.tc / self.fps:g} s).")
        if task == "retake" and span is not None and span[1] > seconds + 1e-6:
            raise ValueError(f"the span {span[0]:g} .. {span[1]:g} s is outside {path}, which lasts {seconds:g} s "
                             f"(whole latent frames of {self.tc / self.fps:g} s); give a span inside 0 .. {seconds:g}.")
        return seconds

    # ------------------------------------------------------------------------------------ output
    def save(self, clips: list[GeneratedClip], out_dir: str | Path) -> list[Path]:
        """Write `<out>/<id>.mp4` (H.264 + AAC) and `<out>/<id>.json` for each clip.

        Both are written to a temporary name and renamed, the sidecar last: a job killed midway
        leaves no half-written mp4 under a clip's name, and a sidecar always has its mp4.
        """
        from avio import atomic_path, write_clip, write_sidecar

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for clip in clips:
            path = out / f"{clip.id}.mp4"
            with atomic_path(path) as tmp:
                write_clip(tmp, clip.frames, clip.fps, audio=clip.audio, sample_rate=clip.sample_rate)
            write_sidecar(out / f"{clip.id}.json", {"id": clip.id, "prompt": clip.prompt, **clip.info})
            paths.append(path)
        return paths


# Tasks whose clips last the asked duration; the others last as long as their input.
GENERATED_LENGTH = ("t2av", "extend", "i2av")


@dataclass(frozen=True)
class _TaskOptions:
    """The options of the conditioning tasks, passed from `generate` to `_batch` as one."""

    extend_seconds: float | None = None
    span: tuple[float, float] | None = None
    modality: str = "both"
    window: float | None = None
    history: float | None = None


def _audio_of(clip: Any, task: str = "extend") -> torch.Tensor:
    if clip.audio is None:
        what = "the clip to continue has no audio; extend" if task == "extend" else "the clip has no audio; retake"
        raise ValueError(f"{what} needs a clip with sound.")
    return clip.audio


def _pad_time(z: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad (or cut) the time axis (dim 2) of video (B,C,T,H,W) or audio (B,C,T) latents to `frames`."""
    if z.shape[2] >= frames:
        return z[:, :, :frames]
    pad = z.new_zeros((*z.shape[:2], frames - z.shape[2], *z.shape[3:]))
    return torch.cat([z, pad], dim=2)


def _text_encoder(meta: dict[str, Any], specs: list[str] | None, device: torch.device) -> Any:
    from av_model.text import load_text_encoder

    specs = specs or meta["text"]["specs"]
    encoder = load_text_encoder(specs if len(specs) > 1 else specs[0], device=device)
    latents = LatentSpec.from_meta(meta)
    if tuple(encoder.dims) != latents.text_dims:
        raise ValueError(f"text encoder(s) {specs} give widths {tuple(encoder.dims)} but the model was trained on "
                         f"{latents.text_dims}; use the encoders of the cache ({meta['text']['specs']}).")
    if encoder.fingerprint != latents.text_fingerprint:
        print(f"note: text encoder(s) {specs} differ from the ones the cache was built with "
              f"(fingerprint {encoder.fingerprint} vs {latents.text_fingerprint}).", file=sys.stderr)
    return encoder

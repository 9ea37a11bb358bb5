"""`AVPipeline` and `avgen sample`: prompts (and optionally a video, an audio track or a clip to
continue) to mp4 files with sound, each with a JSON sidecar.

Tasks:
    t2av    text to audio and video
    v2a     video to audio (`--video`/`--video-list`): the video is kept, sound is generated
    a2v     audio to video (`--audio`): the sound is kept, video is generated
    extend  continuation (`--extend IN.mp4 --extend-seconds S`): the first S seconds of the clip
            are given, the rest up to `--duration` is generated

Frame size, frame rate and latent rates come from the latent cache's metadata stored in the
checkpoint, so a model samples at the geometry it was trained on.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from tqdm import tqdm

from av_model.lit import GeneratorBundle, load_generator
from av_model.sampling import TASKS, SamplerConfig, Task, sample

__all__ = ["AVPipeline", "GeneratedClip", "load_decoders", "main"]


@dataclass
class GeneratedClip:
    """One generated clip and how it was made.

    Attributes:
        id: file stem of the outputs.
        prompt: the text prompt.
        task: "t2av", "v2a", "a2v" or "extend".
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
                  expect: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Load the codec and the video autoencoder; refuse ones other than the cache was built with.

    Args:
        expect: the latent cache's metadata; its fingerprints must match the files'.
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
        for name, model, path in (("codec", codec_m, codec), ("vae", vae_m, vae)):
            want = expect["fingerprints"][name]
            if model.fingerprint != want:
                raise ValueError(
                    f"the {name} {path} (fingerprint {model.fingerprint}) is not the one the generator's latent "
                    f"cache was built with (fingerprint {want}, {expect.get('encoders', {}).get(name)}); decoding "
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
        self.sampler = sampler or SamplerConfig()
        self.checkpoint_sha256, self.checkpoint = checkpoint_sha256, checkpoint
        self.fps = float(cache_meta["video"]["fps"])
        self.video_rate = float(cache_meta["video"]["latent_rate"])
        self.audio_rate = float(cache_meta["audio"]["latent_rate"])
        self.sample_rate = int(cache_meta["audio"]["sample_rate"])
        self.tc = int(cache_meta["video"]["temporal_compression"])

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, codec: str | Path, vae: str | Path, device: str = "auto",
                        text: list[str] | None = None) -> AVPipeline:
        """Load everything for sampling; the text encoder is the cache's unless `text` is given."""
        device_t = _device(device)
        bundle: GeneratorBundle = load_generator(ckpt, map_location=device_t)
        codec_m, vae_m = load_decoders(codec, vae, device_t, expect=bundle.cache_meta)
        encoder = _text_encoder(bundle.cache_meta, text, device_t)
        return cls(bundle.model, encoder, codec_m, vae_m, bundle.cache_meta, bundle.sampler, bundle.sha256, str(ckpt))

    @classmethod
    def from_module(cls, module: Any, codec: Any, vae: Any) -> AVPipeline:
        """From a training `AVDiffusion` (the SampleWriter callback), with decoders already loaded."""
        encoder = _text_encoder(module.cache_meta, None, module.device)
        return cls(module.model, encoder, codec, vae, module.cache_meta, module.sampler_config)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.meta["video"].get("height"), self.meta["video"].get("width")
        if h is None or w is None:
            raise ValueError("the model was trained on clips of their own sizes; this pipeline samples at one "
                             "fixed size, so the cache must have been built with a fixed --size.")
        return int(h), int(w)

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
    def __call__(
        self,
        prompts: list[str],
        *,
        task: str = "t2av",
        videos: Sequence[str | Path] | None = None,
        audios: Sequence[str | Path] | None = None,
        duration: float | None = None,
        extend_seconds: float | None = None,
        steps: int | None = None,
        solver: str | None = None,
        cfg_video: float | None = None,
        cfg_audio: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        seed: int = 0,
        batch_size: int = 4,
        ids: list[str] | None = None,
        progress: bool = True,
    ) -> list[GeneratedClip]:
        """Generate one clip per prompt.

        Args:
            prompts: text prompts (one per clip; may be "" for v2a/a2v).
            task: "t2av", "v2a", "a2v" or "extend".
            videos: input videos, one per prompt (v2a: the video; extend: the clip to continue).
            audios: input audio files, one per prompt (a2v).
            duration: seconds per clip (t2av/extend: required; v2a/a2v: at most the input's length).
            extend_seconds: seconds of the input kept as the given beginning (extend).
            steps, solver, cfg_video, cfg_audio, guidance_interval: override the sampler defaults.
            seed: base seed; batch k uses seed + k * batch_size, so a clip depends on its batch.
            batch_size: clips sampled together.
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
        inputs = {"v2a": videos, "extend": videos, "a2v": audios}.get(task)
        if task != "t2av" and (inputs is None or len(inputs) != len(prompts)):
            kind = "audio files" if task == "a2v" else "videos"
            raise ValueError(f"task {task!r} needs one of the input {kind} per prompt; got "
                             f"{0 if inputs is None else len(inputs)} for {len(prompts)} prompts.")
        if task in ("t2av", "extend") and duration is None:
            raise ValueError(f"task {task!r} needs a duration in seconds.")
        if task == "extend":
            assert duration is not None  # checked just above
            if extend_seconds is None or not 0 < extend_seconds < duration:
                raise ValueError(f"extend needs 0 < extend_seconds < duration ({duration} s); got {extend_seconds}.")
            if self._floor_duration(extend_seconds) <= 0:
                raise ValueError(f"extend_seconds {extend_seconds} is shorter than one latent frame "
                                 f"({self.tc / self.fps:g} s).")
        if duration is not None and task in ("t2av", "extend"):
            self.check_duration(duration)
        ids = list(ids) if ids is not None else [f"{i:04d}" for i in range(len(prompts))]
        if len(ids) != len(prompts) or len(set(ids)) != len(ids):
            raise ValueError("ids must be unique, one per prompt.")
        sampler = replace(
            self.sampler, progress=False,
            steps=self.sampler.steps if steps is None else steps,
            solver=self.sampler.solver if solver is None else solver,  # type: ignore[arg-type]
            guidance_video=self.sampler.guidance_video if cfg_video is None else cfg_video,
            guidance_audio=self.sampler.guidance_audio if cfg_audio is None else cfg_audio,
            guidance_interval=self.sampler.guidance_interval if guidance_interval is None else guidance_interval,
        )
        clips: list[GeneratedClip] = []
        batches = range(0, len(prompts), batch_size)
        bar = tqdm(batches, desc=f"sampling {task}", unit="batch", disable=not progress)
        for start in bar:
            sl = slice(start, start + batch_size)
            clips += self._batch(prompts[sl], ids[sl], task, None if inputs is None else inputs[sl], duration,
                                 extend_seconds, sampler, seed + start)
        return clips

    def _batch(self, prompts: list[str], ids: list[str], task: str, inputs: Sequence[Any] | None, duration: float | None,
               extend_seconds: float | None, sampler: SamplerConfig, seed: int) -> list[GeneratedClip]:
        from av_model.data.media import read_audio, read_clip

        h, w = self.size
        b = len(prompts)
        # 2. Encode prompt.
        text = self.text_encoder.encode(prompts)
        # 3. Read and encode the given modality.
        video_cond: torch.Tensor | None = None
        audio_cond: torch.Tensor | None = None
        given_frames: torch.Tensor | None = None
        given_audio: torch.Tensor | None = None
        sources: Sequence[Any] = inputs or []  # one input file per prompt for v2a, a2v and extend
        if task == "v2a":
            lengths = [self._input_seconds(p, duration, video=True) for p in sources]
            duration = min(lengths)
            clips = [read_clip(p, fps=self.fps, size=(h, w), duration=duration, require_audio=False) for p in sources]
            given_frames = torch.stack([c.frames for c in clips])  # (B, T, H, W, 3)
            video_cond = self._encode_video(given_frames)
        elif task == "a2v":
            lengths = [self._input_seconds(p, duration, video=False) for p in sources]
            duration = min(lengths)
            wavs = [read_audio(p, sample_rate=self.sample_rate, channels=self.codec.channels, duration=duration)[0]
                    for p in sources]
            given_audio = torch.stack(wavs)  # (B, C, S)
            audio_cond = self._encode_audio(given_audio)
        elif task == "extend":
            assert extend_seconds is not None  # checked in __call__
            prefix = self._floor_duration(extend_seconds)
            clips = [read_clip(p, fps=self.fps, size=(h, w), duration=prefix, sample_rate=self.sample_rate,
                               channels=self.codec.channels) for p in sources]
            video_cond = self._encode_video(torch.stack([c.frames for c in clips]))
            audio_cond = self._encode_audio(torch.stack([_audio_of(c) for c in clips]))
            extend_seconds = prefix
        # 4. Prepare latent shapes.
        assert duration is not None  # given, or the inputs' length (checked in __call__)
        frames = self.check_duration(duration)
        num_samples = round(duration * self.sample_rate)
        sc = int(self.meta["video"]["spatial_compression"])
        video_shape = (b, int(self.meta["video"]["latent_dim"]), frames // self.tc, h // sc, w // sc)
        audio_frames = math.ceil(num_samples / int(self.meta["audio"]["hop_length"]))
        audio_shape = (b, int(self.meta["audio"]["latent_dim"]), audio_frames)
        if audio_cond is not None and task == "a2v":
            audio_cond = audio_cond[..., :audio_frames]
        if task == "extend":
            assert video_cond is not None and audio_cond is not None
            # Given latents padded to the full length: only the frames inside the prefix are read.
            video_cond = _pad_time(video_cond, video_shape[2])
            audio_cond = _pad_time(audio_cond, audio_shape[2])
        # 5. Denoising loop.
        z_v, z_a = sample(self.model, text, video_shape=video_shape, audio_shape=audio_shape,
                          video_rate=self.video_rate, audio_rate=self.audio_rate, config=sampler,
                          task=cast(Task, task),
                          video_cond=video_cond, audio_cond=audio_cond, extend_seconds=extend_seconds, seed=seed)
        # 6. Decode latents; the given modality keeps its original pixels or samples.
        out_frames, out_audio = self._decode(z_v, z_a, num_samples)
        if given_frames is not None:
            out_frames = given_frames[:, :frames].cpu()
        if given_audio is not None:
            out_audio = given_audio[..., :num_samples].float().cpu()
        # 7. Package clips with their record.
        info = {"task": task, "seed": seed, "sampler": sampler.solver, "steps": sampler.steps,
                "guidance": {"video": sampler.guidance_video, "audio": sampler.guidance_audio,
                             "interval": list(sampler.guidance_interval)},
                "duration": duration, "fps": self.fps, "sample_rate": self.sample_rate, "size": [h, w],
                "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
                "batch_size": b, "codec_fingerprint": self.meta["fingerprints"]["codec"],
                "vae_fingerprint": self.meta["fingerprints"]["vae"]}
        if task == "extend":
            info["extend_seconds"] = extend_seconds
        return [
            GeneratedClip(id=ids[i], prompt=prompts[i], task=task, frames=out_frames[i], audio=out_audio[i],
                          fps=self.fps, sample_rate=self.sample_rate,
                          info={**info, "batch_position": i,
                                **({"input": str(inputs[i])} if inputs is not None else {})})
            for i in range(b)
        ]

    def _input_seconds(self, path: str | Path, duration: float | None, *, video: bool) -> float:
        from av_model.data.media import probe

        info = probe(path)
        if video and not info.has_video:
            raise ValueError(f"{path} has no video stream; v2a needs a video.")
        if not video and not info.has_audio:
            raise ValueError(f"{path} has no audio stream; a2v needs audio.")
        seconds = self._floor_duration(min(info.duration, duration) if duration else info.duration)
        if seconds <= 0:
            raise ValueError(f"{path} is {info.duration:.3f} s long, shorter than one latent frame "
                             f"({self.tc / self.fps:g} s).")
        return seconds

    # ------------------------------------------------------------------------------------ output
    def save(self, clips: list[GeneratedClip], out_dir: str | Path) -> list[Path]:
        """Write `<out>/<id>.mp4` (H.264 + AAC) and `<out>/<id>.json` for each clip."""
        from av_model.data.media import write_clip

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for clip in clips:
            path = out / f"{clip.id}.mp4"
            write_clip(path, clip.frames, clip.fps, audio=clip.audio, sample_rate=clip.sample_rate)
            record = {"id": clip.id, "prompt": clip.prompt, **clip.info}
            (out / f"{clip.id}.json").write_text(json.dumps(record, indent=2) + "\n")
            paths.append(path)
        return paths


def _audio_of(clip: Any) -> torch.Tensor:
    if clip.audio is None:
        raise ValueError("the clip to continue has no audio; extend needs a clip with sound.")
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
    if tuple(encoder.dims) != tuple(meta["text"]["dims"]):
        raise ValueError(f"text encoder(s) {specs} give widths {tuple(encoder.dims)} but the model was trained on "
                         f"{tuple(meta['text']['dims'])}; use the encoders of the cache ({meta['text']['specs']}).")
    if encoder.fingerprint != meta["fingerprints"]["text"]:
        print(f"note: text encoder(s) {specs} differ from the ones the cache was built with "
              f"(fingerprint {encoder.fingerprint} vs {meta['fingerprints']['text']}).", file=sys.stderr)
    return encoder


# ----------------------------------------------------------------------------------------------- CLI
def _read_prompt_file(path: Path) -> tuple[list[str], list[str] | None]:
    """Prompts from a text file (one per line) or a JSONL manifest (`id` and `caption`/`prompt`)."""
    if not path.is_file():
        raise FileNotFoundError(f"--prompts {path} does not exist.")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".jsonl" or (lines and lines[0].startswith("{")):  # JSONL whatever the file is called
        rows = []
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"--prompts {path}: line {n} is not JSON ({err.msg}); a JSONL prompt file has "
                                 "one object with 'caption' (or 'prompt') and 'id' per line.") from err
            if not isinstance(row, dict) or not ({"caption", "prompt"} & row.keys()):
                raise ValueError(f"--prompts {path}: line {n} has no 'caption' or 'prompt' field.")
            rows.append(row)
        ids = [str(r.get("id", f"{i:04d}")) for i, r in enumerate(rows)]
        return [str(r.get("prompt", r.get("caption", ""))) for r in rows], ids
    return lines, None


def _read_video_list(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(videos, prompts, ids) from lines "path[<TAB>prompt]" or a JSONL manifest (`path`, `caption`, `id`)."""
    if not path.is_file():
        raise FileNotFoundError(f"--video-list {path} does not exist.")
    videos, prompts, ids = [], [], []
    if path.suffix == ".jsonl":
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                video = Path(row["path"])
                videos.append(str(video if video.is_absolute() else path.parent / video))
                prompts.append(row.get("caption", row.get("prompt", "")))
                ids.append(str(row.get("id", video.stem)))
    else:
        for line in path.read_text().splitlines():
            if line.strip():
                name, _, prompt = line.partition("\t")
                videos.append(name.strip())
                prompts.append(prompt.strip())
                ids.append(Path(name.strip()).stem)
    if len(set(ids)) != len(ids):
        ids = [f"{i:04d}_{s}" for i, s in enumerate(ids)]
    return videos, prompts, ids


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60].strip("_") or "clip"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avgen sample",
        description="Generate mp4 clips with sound from prompts, a video (video-to-audio), an audio track "
        "(audio-to-video), or a clip to continue. Writes <out>/<id>.mp4 and <out>/<id>.json.")
    p.add_argument("--ckpt", required=True, help="generator checkpoint (final.ckpt from `avgen fit`, or exported)")
    p.add_argument("--codec", help="audio codec file (default: the one the latent cache was built with)")
    p.add_argument("--vae", help="video autoencoder file (default: the one the latent cache was built with)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", action="append", help="a text prompt (repeat for several)")
    src.add_argument("--prompts", type=Path, help="file of prompts: one per line, or JSONL with id and caption")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--video", type=Path, action="append", help="video-to-audio: the video to add sound to")
    cond.add_argument("--video-list", type=Path, help="video-to-audio for many videos: lines 'path[<TAB>prompt]' "
                      "or a JSONL manifest")
    cond.add_argument("--audio", type=Path, action="append", help="audio-to-video: the sound to make a video for")
    cond.add_argument("--extend", type=Path, action="append", help="continuation: the clip to continue")
    p.add_argument("--extend-seconds", type=float, default=1.0, help="seconds of --extend kept as the given "
                   "beginning (default 1.0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--duration", type=float, help="seconds per clip (default: the training clips' duration; "
                   "v2a/a2v: the input's length)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps (default 25)")
    p.add_argument("--solver", choices=("euler", "heun"), default="heun", help="ODE solver (default heun)")
    p.add_argument("--cfg-video", type=float, default=3.0, help="guidance scale of the video (default 3)")
    p.add_argument("--cfg-audio", type=float, default=3.0, help="guidance scale of the audio (default 3)")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LOW", "HIGH"), default=(0.0, 1.0),
                   help="guide only the steps with flow time in [LOW, HIGH] (1 = noise); the others run one "
                   "pass instead of two (default 0 1: every step)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--batch-size", type=int, default=4, help="clips sampled together (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--text", nargs="+", help="text encoder specs (default: the cache's)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen sample`."""
    args = _parser().parse_args(argv)
    try:
        return _sample(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"avgen sample: {err}", file=sys.stderr)
        return 1


def _sample(args: argparse.Namespace) -> int:
    # 1. Check inputs: what to sample and from which inputs.
    prompts: list[str] = []
    ids: list[str] | None = None
    if args.prompts:
        prompts, ids = _read_prompt_file(args.prompts)
    elif args.prompt:
        prompts = list(args.prompt)
    task, inputs = "t2av", None
    if args.video_list:
        task = "v2a"
        inputs, listed, ids = _read_video_list(args.video_list)
        prompts = prompts or listed
    elif args.video or args.audio or args.extend:
        task = "v2a" if args.video else "a2v" if args.audio else "extend"
        inputs = [str(p) for p in (args.video or args.audio or args.extend)]
        ids = ids or [f"{i:04d}_{_slug(Path(p).stem)}" for i, p in enumerate(inputs)]
    if inputs is not None:
        if not prompts:
            prompts = [""] * len(inputs)  # no text: guidance falls back to the unconditional model
        elif len(prompts) == 1 and len(inputs) > 1:
            prompts = prompts * len(inputs)
        if len(prompts) != len(inputs):
            raise ValueError(f"{len(prompts)} prompts for {len(inputs)} inputs; give one prompt, or one per input.")
        for path in inputs:
            if not Path(path).is_file():
                raise FileNotFoundError(f"input {path} does not exist.")
    elif not prompts:
        raise ValueError("nothing to sample: give --prompt, --prompts, --video, --video-list, --audio or --extend.")
    codec, vae = args.codec, args.vae
    if not (codec and vae):  # the files the cache was built with, as recorded in the checkpoint
        encoders = load_generator(args.ckpt, map_location="cpu").cache_meta["encoders"]
        codec, vae = codec or encoders["codec"], vae or encoders["vae"]
    pipe = AVPipeline.from_checkpoint(args.ckpt, codec, vae, device=args.device, text=args.text)
    duration = args.duration
    if duration is None and task in ("t2av", "extend"):
        duration = float(pipe.meta.get("train_duration") or 2.0)
    clips = pipe(prompts, task=task, videos=inputs if task in ("v2a", "extend") else None,
                 audios=inputs if task == "a2v" else None, duration=duration, extend_seconds=args.extend_seconds,
                 steps=args.steps, solver=args.solver, cfg_video=args.cfg_video, cfg_audio=args.cfg_audio,
                 guidance_interval=tuple(args.guidance_interval), seed=args.seed, batch_size=args.batch_size, ids=ids)
    paths = pipe.save(clips, args.out)
    print(f"wrote {len(paths)} clips to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

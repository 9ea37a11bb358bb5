"""ODE samplers for the joint audio-video flow: Euler and Heun, per-modality guidance, four tasks.

Convention as in `av_model.flow.matching`: t = 1 noise, t = 0 data, velocity = eps - x_0; integration runs
from t = 1 to t = 0 over a shifted grid.

Tasks (`TASK_SPECS`; each one is only a rule for which latent frames are given):
  * "t2av": both modalities from noise.
  * "v2a": the video is given; its latents stay fixed and its time stays 0 (clean) throughout.
  * "a2v": the audio is given, likewise.
  * "extend": the first `extend_seconds` of both modalities are given. Those latent frames are
    held clean with per-frame times (t = 0 on the prefix, the current t elsewhere), exactly the
    situation the model is trained on with `FlowConfig.p_prefix`; they are never updated.
  * "i2av": the first video token (the image's latent frame) is given, the audio is generated.
  * "retake": everything but the latent frames inside `span` of `modality` ("video", "audio" or
    "both") is given; known frames are no longer only a prefix, so the masks are arbitrary.

A given frame is written in from the conditioning latents, carries t = 0 and a zero velocity; every
other frame starts from noise. When some frames of a modality are given and others are not, times
are per frame; otherwise each modality has one time per sample, as in training.

Classifier-free guidance runs the conditional and unconditional passes as one batch of 2B, with a
separate scale per modality: v = v_uncond + s_m * (v_cond - v_uncond). `guidance_interval` limits
guidance to the steps whose time lies inside it (Kynkaanniemi et al., 2024, "Applying guidance in
a limited interval"): outside it only the conditional pass runs, which halves those steps' cost.

Noise is drawn from a CPU generator seeded by `seed`, so a seed gives the same clip on any device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from av_model.flow.matching import _unwrap, num_tokens, resolution_shift, time_shift
from av_model.text.batch import TextBatch

Task = Literal["t2av", "v2a", "a2v", "extend", "i2av", "retake"]
Modality = Literal["video", "audio", "both"]
MODALITIES = ("video", "audio", "both")


@dataclass
class SamplerConfig:
    """How to integrate the flow.

    Attributes:
        steps: number of solver steps (model calls: steps for Euler, about 2 * steps for Heun).
        solver: "euler" or "heun" (second order; its last step is Euler because t = 0 is an endpoint).
        guidance_video, guidance_audio: classifier-free guidance scale per modality (1 = none).
        guidance_interval: (low, high) flow times between which guidance is applied (inclusive);
            (0, 1) guides every step. Steps outside run the conditional model alone.
        shift: fixed shift of the time grid; None uses the same token-count rule as training.
        shift_base_tokens, shift_exponent: that rule (see `FlowConfig`).
        progress: show a progress bar over the steps.
    """

    steps: int = 25
    solver: Literal["euler", "heun"] = "euler"
    guidance_video: float = 3.0
    guidance_audio: float = 3.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    shift: float | None = None
    shift_base_tokens: int = 256
    shift_exponent: float = 0.5
    progress: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"SamplerConfig.steps must be >= 1; got {self.steps}.")
        if self.solver not in ("euler", "heun"):
            raise ValueError(f"SamplerConfig.solver must be 'euler' or 'heun'; got {self.solver!r}.")
        if self.guidance_video < 0 or self.guidance_audio < 0:
            raise ValueError(
                f"guidance scales must be >= 0 (1 = no guidance); got {self.guidance_video}, {self.guidance_audio}."
            )
        lo, hi = self.guidance_interval = tuple(float(v) for v in self.guidance_interval)  # type: ignore[assignment]
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"SamplerConfig.guidance_interval must be (low, high) with 0 <= low <= high <= 1; got "
                             f"{self.guidance_interval}.")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"SamplerConfig.shift must be > 0 or None; got {self.shift}.")

    @property
    def guided(self) -> bool:
        return self.guidance_video != 1.0 or self.guidance_audio != 1.0

    def guided_at(self, t: float) -> bool:
        """Whether the step at flow time t runs the unconditional pass too."""
        return self.guided and self.guidance_interval[0] <= t <= self.guidance_interval[1]

    def time_grid(self, num_tokens: int) -> Tensor:
        """(steps + 1,) decreasing times from 1 to 0."""
        shift = self.shift if self.shift is not None else resolution_shift(
            num_tokens, self.shift_base_tokens, self.shift_exponent)
        return time_shift(torch.linspace(1.0, 0.0, self.steps + 1, dtype=torch.float64), shift).float()


@dataclass(frozen=True)
class FrameGrid:
    """The latent frames of one clip and the options of its task: what a task's mask rule reads.

    Attributes:
        video, audio: latent frames of each modality.
        video_rate, audio_rate: latent frames per second.
        video_token_frames: latent video frames per token (the model's temporal patch).
        extend_seconds: the given beginning ("extend").
        span: (start, end) seconds regenerated ("retake").
        modality: the modality regenerated inside `span` ("retake").
    """

    video: int
    audio: int
    video_rate: float
    audio_rate: float
    video_token_frames: int = 1
    extend_seconds: float | None = None
    span: tuple[float, float] | None = None
    modality: str = "both"

    @property
    def duration(self) -> float:
        return min(self.video / self.video_rate, self.audio / self.audio_rate)

    def centres(self) -> tuple[Tensor, Tensor]:
        """(T_v,), (T_a,) centre time in seconds of each latent frame: a frame belongs to a
        stretch of time when its centre does (the rule training uses for clean prefixes)."""
        return ((torch.arange(self.video, dtype=torch.float64) + 0.5) / self.video_rate,
                (torch.arange(self.audio, dtype=torch.float64) + 0.5) / self.audio_rate)

    def none(self) -> tuple[Tensor, Tensor]:
        return torch.zeros(self.video, dtype=torch.bool), torch.zeros(self.audio, dtype=torch.bool)


def _known_extend(g: FrameGrid) -> tuple[Tensor, Tensor]:
    assert g.extend_seconds is not None  # checked by `_check_extend`
    cv, ca = g.centres()
    return cv < g.extend_seconds, ca < g.extend_seconds


def _known_i2av(g: FrameGrid) -> tuple[Tensor, Tensor]:
    # A whole token, so no token mixes a given frame with a generated one (its time would be the mean).
    v, a = g.none()
    v[: g.video_token_frames] = True
    return v, a


def _known_retake(g: FrameGrid) -> tuple[Tensor, Tensor]:
    assert g.span is not None  # checked by `_check_retake`
    cv, ca = g.centres()
    start, end = g.span
    keep_v = ~((cv >= start) & (cv < end)) if g.modality in ("video", "both") else torch.ones_like(cv, dtype=torch.bool)
    keep_a = ~((ca >= start) & (ca < end)) if g.modality in ("audio", "both") else torch.ones_like(ca, dtype=torch.bool)
    return keep_v, keep_a


def _check_extend(g: FrameGrid) -> None:
    if g.extend_seconds is None or not 0 < g.extend_seconds < g.duration:
        raise ValueError(f"task 'extend' needs 0 < extend_seconds < the clip length ({g.duration:.3f} s); got "
                         f"{g.extend_seconds}.")


def _check_i2av(g: FrameGrid) -> None:
    if g.video <= g.video_token_frames:
        raise ValueError(f"task 'i2av' gives the first {g.video_token_frames} latent video frame(s); the clip has "
                         f"{g.video}, so nothing would be generated. Ask for a longer clip.")


def _check_retake(g: FrameGrid) -> None:
    if g.modality not in MODALITIES:
        raise ValueError(f"task 'retake' regenerates 'video', 'audio' or 'both'; got modality {g.modality!r}.")
    if g.span is None or len(g.span) != 2:
        raise ValueError("task 'retake' needs span=(start, end) in seconds.")
    start, end = g.span
    if not 0 <= start < end <= g.duration + 1e-6:
        raise ValueError(f"the retake span ({start:g}, {end:g}) s must satisfy 0 <= start < end <= the clip length "
                         f"({g.duration:.3f} s).")
    keep_v, keep_a = _known_retake(g)
    if bool(keep_v.all()) and bool(keep_a.all()):
        raise ValueError(f"the retake span ({start:g}, {end:g}) s holds no latent frame centre (video frames are "
                         f"{1 / g.video_rate:g} s long); widen it.")


@dataclass(frozen=True)
class TaskSpec:
    """One sampling task: which latent frames it gives (held clean), and how its options are checked.

    Attributes:
        name: the task's name (`Task`).
        summary: one line for help texts.
        known: the grid -> ((T_v,), (T_a,)) bool masks of the given latent frames.
        check: raises `ValueError` when the task's options do not fit the grid.
    """

    name: str
    summary: str
    known: Callable[[FrameGrid], tuple[Tensor, Tensor]]
    check: Callable[[FrameGrid], None] = lambda g: None


def _all_video(g: FrameGrid) -> tuple[Tensor, Tensor]:
    return torch.ones(g.video, dtype=torch.bool), torch.zeros(g.audio, dtype=torch.bool)


def _all_audio(g: FrameGrid) -> tuple[Tensor, Tensor]:
    return torch.zeros(g.video, dtype=torch.bool), torch.ones(g.audio, dtype=torch.bool)


TASK_SPECS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("t2av", "text to audio and video", FrameGrid.none),
    TaskSpec("v2a", "the video is given, the sound is generated", _all_video),
    TaskSpec("a2v", "the sound is given, the video is generated", _all_audio),
    TaskSpec("extend", "the first extend_seconds of both are given (continuation)", _known_extend, _check_extend),
    TaskSpec("i2av", "the first video frame is given (image to audio and video)", _known_i2av, _check_i2av),
    TaskSpec("retake", "all but a time span of one modality or both is given (inpainting)", _known_retake,
             _check_retake),
)}
TASKS = tuple(TASK_SPECS)


def known_frames(task: str, grid: FrameGrid) -> tuple[Tensor, Tensor]:
    """(T_v,), (T_a,) bool masks of the latent frames `task` gives, after checking its options."""
    if task not in TASK_SPECS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    spec = TASK_SPECS[task]
    spec.check(grid)
    return spec.known(grid)


def video_token_frames(model: nn.Module) -> int:
    """Latent video frames per token of `model` (its temporal patch; 1 for models without one)."""
    cfg = getattr(_unwrap(model), "cfg", None)
    return int(cfg.video_patch[0]) if cfg is not None and hasattr(cfg, "video_patch") else 1


@torch.no_grad()
def sample(
    model: nn.Module,
    text: TextBatch,
    *,
    video_shape: Sequence[int],
    audio_shape: Sequence[int],
    video_rate: float,
    audio_rate: float,
    config: SamplerConfig | None = None,
    task: Task = "t2av",
    video_cond: Tensor | None = None,
    audio_cond: Tensor | None = None,
    extend_seconds: float | None = None,
    span: tuple[float, float] | None = None,
    modality: Modality = "both",
    seed: int | Sequence[int] = 0,
) -> tuple[Tensor, Tensor]:
    """Generate normalized video and audio latents.

    Args:
        model: an `AVDiT`; it is run in eval mode (its mode is restored afterwards).
        text: B samples of text conditioning (on any device; moved to the model's).
        video_shape: (B, C_v, T_v, H_v, W_v) of the latents to generate.
        audio_shape: (B, C_a, T_a).
        video_rate, audio_rate: latent frames per second of each modality.
        config: `SamplerConfig` (defaults if None).
        task: one of `TASKS` ("t2av", "v2a", "a2v", "extend", "i2av", "retake").
        video_cond: normalized video latents, required when the task gives video frames: at least
            up to the last given frame (full shape for "v2a" and "retake", the prefix for "extend",
            the first token's frames for "i2av"); frames that are not given are never read.
        audio_cond: normalized audio latents, required when the task gives audio frames, likewise.
        extend_seconds: length of the given prefix for "extend".
        span: (start, end) seconds regenerated by "retake"; a latent frame is regenerated when its
            centre lies inside.
        modality: what "retake" regenerates inside `span`: "video", "audio" or "both" (the other
            modality is given whole).
        seed: noise seed; the same seed gives the same result. A sequence of B seeds draws each
            sample's noise from its own seed, so a sample does not depend on the batch it is in.

    Returns:
        (video (B, C_v, T_v, H_v, W_v), audio (B, C_a, T_a)) latents at t = 0, given parts unchanged.
    """
    # 1. Check inputs.
    config = config or SamplerConfig()
    video_shape, audio_shape = tuple(int(s) for s in video_shape), tuple(int(s) for s in audio_shape)
    _check(text, video_shape, audio_shape, video_rate, audio_rate, task)
    grid = FrameGrid(video_shape[2], audio_shape[2], video_rate, audio_rate, video_token_frames(model),
                     extend_seconds, None if span is None else (float(span[0]), float(span[1])), modality)
    known_v, known_a = known_frames(task, grid)  # (T_v,), (T_a,) bool
    _check_cond("video_cond", video_cond, video_shape, task, known_v)
    _check_cond("audio_cond", audio_cond, audio_shape, task, known_a)
    param = next(model.parameters())
    device, b = param.device, video_shape[0]
    text = text.to(device)
    # 2. Prepare latents: seeded noise, then the given frames written in and frozen.
    x_v, x_a = _noise(seed, video_shape, audio_shape)
    x_v, x_a = x_v.to(device), x_a.to(device)  # (B, C_v, T_v, H_v, W_v), (B, C_a, T_a)
    known_v, known_a = known_v.to(device), known_a.to(device)
    x_v, x_a = _write_given(x_v, video_cond, known_v), _write_given(x_a, audio_cond, known_a)
    # Per-frame times when a modality is partly given; one time per modality otherwise (as trained).
    per_frame = any(bool(k.any()) and not bool(k.all()) for k in (known_v, known_a))
    # 3. Time grid and guidance setup.
    ts = config.time_grid(num_tokens(model, video_shape, audio_shape, video_rate, audio_rate)).tolist()
    text_guided = TextBatch.cat([text, text.null_like()]) if config.guided else text

    def velocity(xv: Tensor, xa: Tensor, t: float) -> tuple[Tensor, Tensor]:
        tv = torch.full((b, video_shape[2]), t, device=device) * ~known_v  # (B, T_v), 0 on given frames
        ta = torch.full((b, audio_shape[2]), t, device=device) * ~known_a  # (B, T_a)
        if not per_frame:  # whole modalities are either given (t = 0) or at time t
            tv, ta = tv[:, 0], ta[:, 0]
        guided = config.guided_at(t)
        reps, text_in = (2, text_guided) if guided else (1, text)
        out = model(xv.repeat(reps, *[1] * (xv.dim() - 1)), xa.repeat(reps, 1, 1), tv.repeat(reps, *[1] * (tv.dim() - 1)),
                    ta.repeat(reps, *[1] * (ta.dim() - 1)), text_in, video_rate, audio_rate)
        vv, va = out.video.float(), out.audio.float()
        if guided:
            (vc, vu), (ac, au) = vv.chunk(2), va.chunk(2)
            vv = vu + config.guidance_video * (vc - vu)
            va = au + config.guidance_audio * (ac - au)
        # Given frames never move.
        return vv * ~known_v[None, None, :, None, None], va * ~known_a[None, None, :]

    # 4. Denoising loop.
    was_training = model.training
    model.eval()
    steps = range(config.steps)
    if config.progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"sampling ({task}, {config.solver})", unit="step")
    try:
        for i in steps:
            t, t_next = ts[i], ts[i + 1]
            dv, da = velocity(x_v, x_a, t)
            xv_next, xa_next = x_v + (t_next - t) * dv, x_a + (t_next - t) * da
            if config.solver == "heun" and t_next > 0:
                dv2, da2 = velocity(xv_next, xa_next, t_next)
                xv_next = x_v + (t_next - t) * 0.5 * (dv + dv2)
                xa_next = x_a + (t_next - t) * 0.5 * (da + da2)
            x_v, x_a = xv_next, xa_next
    finally:
        model.train(was_training)
    return x_v, x_a


def _noise(seed: int | Sequence[int], video_shape: tuple[int, ...],
           audio_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Seeded CPU noise: (B, C_v, T_v, H_v, W_v) and (B, C_a, T_a), from one seed or one per sample."""
    if isinstance(seed, int):
        gen = torch.Generator("cpu").manual_seed(seed)
        return torch.randn(video_shape, generator=gen), torch.randn(audio_shape, generator=gen)
    seeds = [int(s) for s in seed]
    if len(seeds) != video_shape[0]:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {video_shape[0]}; give one seed, or one per sample.")
    vs, aus = [], []
    for s in seeds:  # video then audio from each sample's own generator: batch-independent noise
        gen = torch.Generator("cpu").manual_seed(s)
        vs.append(torch.randn(video_shape[1:], generator=gen))
        aus.append(torch.randn(audio_shape[1:], generator=gen))
    return torch.stack(vs), torch.stack(aus)


def _write_given(x: Tensor, cond: Tensor | None, known: Tensor) -> Tensor:
    """`x` (B, C, T, ...) with the frames where `known` (T,) holds taken from `cond` (B, C, >= last known + 1, ...)."""
    if cond is None or not bool(known.any()):
        return x
    k = int(known.nonzero().max()) + 1  # frames up to the last given one
    mask = known[:k].view(1, 1, k, *[1] * (x.dim() - 3))
    x = x.clone()
    x[:, :, :k] = torch.where(mask, cond[:, :, :k].to(x.device, x.dtype), x[:, :, :k])
    return x


def _check(text: TextBatch, video_shape: tuple[int, ...], audio_shape: tuple[int, ...], video_rate: float,
           audio_rate: float, task: str) -> None:
    if task not in TASK_SPECS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    if len(video_shape) != 5 or len(audio_shape) != 3:
        raise ValueError(
            f"video_shape must be (B, C, T, H, W) and audio_shape (B, C, T); got {video_shape}, {audio_shape}."
        )
    if not video_shape[0] == audio_shape[0] == text.batch_size:
        raise ValueError(
            f"batch sizes differ: video {video_shape[0]}, audio {audio_shape[0]}, text {text.batch_size}."
        )
    if video_rate <= 0 or audio_rate <= 0:
        raise ValueError(f"latent rates must be positive; got {video_rate}, {audio_rate}.")


def _check_cond(name: str, cond: Tensor | None, shape: tuple[int, ...], task: str, known: Tensor) -> None:
    """`cond` must be shaped like `shape` and hold every latent frame that `known` (T,) marks as given."""
    if not bool(known.any()):
        return
    frames = int(known.nonzero().max()) + 1
    if cond is None:
        raise ValueError(f"task {task!r} needs {name} (normalized latents of the given modality).")
    if cond.dim() != len(shape) or tuple(cond.shape[:2]) != shape[:2] or tuple(cond.shape[3:]) != shape[3:]:
        raise ValueError(f"{name} must have shape {shape} (time may be shorter when only a prefix is given); got "
                         f"{tuple(cond.shape)}.")
    if cond.shape[2] < frames:
        raise ValueError(f"{name} has {cond.shape[2]} latent frames but task {task!r} needs at least {frames}.")

"""Flow matching on the straight path between data and noise, for two modalities at once.

Convention (used everywhere in this project): t = 0 is data, t = 1 is noise,
    x_t = (1 - t) * x_0 + t * eps,        velocity v = dx_t/dt = eps - x_0,
and samplers integrate from t = 1 down to t = 0.

Each modality draws its own t (logit-normal, shifted by the token count as in SD3), so the model
sees every combination of noise levels. With probability `p_clean_video` the video is held clean
(t = 0: the model learns video-to-audio), with `p_clean_audio` the audio (audio-to-video), and with
`p_prefix` both modalities keep a clean prefix of random length (per-frame times: continuation).
Clean frames carry no loss (their target, the unseen noise, is unpredictable). Text is replaced by
the null conditioning with probability `p_drop_text`, which classifier-free guidance needs.

Shapes (legend): B batch, C channels, T_v/T_a latent frames, H/W latent size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from av_model.dit.model import MoEAux
from av_model.text.batch import TextBatch


@dataclass
class FlowConfig:
    """Training-time noise process and loss.

    Attributes:
        logit_mean, logit_std: t = sigmoid(N(logit_mean, logit_std)) before the shift (SD3 uses 0, 1).
        shift: fixed time shift s (t' = s t / (1 + (s - 1) t)); None makes it depend on the tokens.
        shift_base_tokens: with shift=None, s = max(1, (tokens / shift_base_tokens) ** shift_exponent),
            so longer or larger clips, whose many tokens are more redundant, are trained at more noise.
        shift_exponent: exponent of that rule (0.5 as SD3's sqrt of the resolution ratio).
        p_clean_video: probability that a sample's video is clean (t = 0) throughout.
        p_clean_audio: probability that a sample's audio is clean throughout (exclusive with video).
        p_prefix: probability that a sample (with both modalities noisy) gets a clean prefix.
        prefix_max_fraction: longest clean prefix, as a fraction of the clip.
        p_drop_text: probability of replacing the text by the null conditioning.
        video_weight, audio_weight: loss weights per modality.
    """

    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float | None = None
    shift_base_tokens: int = 256
    shift_exponent: float = 0.5
    p_clean_video: float = 0.1
    p_clean_audio: float = 0.1
    p_prefix: float = 0.1
    prefix_max_fraction: float = 0.5
    p_drop_text: float = 0.1
    video_weight: float = 1.0
    audio_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p_clean_video", "p_clean_audio", "p_prefix", "p_drop_text", "prefix_max_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FlowConfig.{name} is a probability/fraction in [0, 1]; got {getattr(self, name)}.")
        if self.p_clean_video + self.p_clean_audio > 1.0:
            raise ValueError(
                "FlowConfig: p_clean_video + p_clean_audio must be <= 1 (a sample cannot have both clean); "
                f"got {self.p_clean_video} + {self.p_clean_audio}."
            )
        if self.logit_std <= 0:
            raise ValueError(f"FlowConfig.logit_std must be > 0; got {self.logit_std}.")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"FlowConfig.shift must be > 0 (or None for the token-count rule); got {self.shift}.")
        if self.shift_base_tokens < 1:
            raise ValueError(f"FlowConfig.shift_base_tokens must be >= 1; got {self.shift_base_tokens}.")
        if self.video_weight < 0 or self.audio_weight < 0 or self.video_weight + self.audio_weight == 0:
            raise ValueError(
                f"FlowConfig: loss weights must be >= 0 and not both 0; got {self.video_weight}, {self.audio_weight}."
            )


@dataclass
class FlowLoss:
    """One training step's loss and what the trainer logs about it.

    Attributes:
        loss: scalar to backpropagate: video_weight * video_loss + audio_weight * audio_loss + sum(aux.losses).
        flow_loss: the same without the MoE auxiliary losses.
        video_loss, audio_loss: scalar mean per-sample loss over samples whose modality was noisy.
        video, audio: (B,) per-sample mean squared velocity error over noisy frames (0 where clean).
        video_valid, audio_valid: (B,) bool, whether the modality carried loss in that sample.
        t_video, t_audio: (B,) flow times of the noisy frames (0 for a clean modality).
        prefix_seconds: (B,) length of the clean prefix (0 where none).
        text_dropped: (B,) bool, text replaced by the null conditioning.
        aux: the model's MoE losses and routing statistics.
    """

    loss: Tensor
    flow_loss: Tensor
    video_loss: Tensor
    audio_loss: Tensor
    video: Tensor
    audio: Tensor
    video_valid: Tensor
    audio_valid: Tensor
    t_video: Tensor
    t_audio: Tensor
    prefix_seconds: Tensor
    text_dropped: Tensor
    aux: MoEAux

    def by_t_bucket(self, num_buckets: int = 4) -> dict[str, Tensor]:
        """Mean per-sample loss per modality and noise-level bucket ([0, 1/n), ...), NaN where empty."""
        out: dict[str, Tensor] = {}
        for name, loss, t, valid in (("video", self.video, self.t_video, self.video_valid),
                                     ("audio", self.audio, self.t_audio, self.audio_valid)):
            bucket = (t * num_buckets).long().clamp(0, num_buckets - 1)
            for q in range(num_buckets):
                sel = valid & (bucket == q)
                out[f"{name}_t{q}"] = loss.detach()[sel].mean() if sel.any() else loss.new_tensor(math.nan)
        return out


def time_shift(t: Tensor, shift: float) -> Tensor:
    """SD3's shift of flow times: s t / (1 + (s - 1) t); s > 1 moves mass towards noise (t = 1)."""
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(num_tokens: int, base_tokens: int = 256, exponent: float = 0.5) -> float:
    """Shift for a sequence of `num_tokens` tokens: max(1, (num_tokens / base_tokens) ** exponent).

    Never below 1: a shift under 1 would train short clips mostly near the data end (t ~ 0) and
    leave the high-noise start of sampling, where text decides the content, nearly untrained.
    """
    return max(1.0, (max(num_tokens, 1) / base_tokens) ** exponent)


class FlowMatching:
    """Noise path, time sampling and loss for the joint audio-video model (no parameters).

    Args:
        config: `FlowConfig`.
    """

    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()

    def shift_for(self, num_tokens: int) -> float:
        cfg = self.config
        return cfg.shift if cfg.shift is not None else resolution_shift(num_tokens, cfg.shift_base_tokens,
                                                                         cfg.shift_exponent)

    def sample_t(self, batch: int, num_tokens: int, device: torch.device, generator: torch.Generator | None = None
                 ) -> Tensor:
        """(B,) logit-normal flow times, shifted for `num_tokens` tokens."""
        cfg = self.config
        u = torch.randn(batch, generator=generator, device=_gen_device(generator, device))
        t = torch.sigmoid(cfg.logit_mean + cfg.logit_std * u).to(device)
        return time_shift(t, self.shift_for(num_tokens))

    def loss(
        self,
        model: nn.Module,
        video: Tensor,
        audio: Tensor,
        text: TextBatch,
        video_rate: float,
        audio_rate: float,
        generator: torch.Generator | None = None,
    ) -> FlowLoss:
        """Noise both modalities, run the model, and return the velocity-matching loss.

        Args:
            model: an `AVDiT` (or a wrapper with the same call signature).
            video: (B, C_v, T_v, H_v, W_v) clean normalized video latents.
            audio: (B, C_a, T_a) clean normalized audio latents.
            text: B samples of text conditioning.
            video_rate, audio_rate: latent frames per second of each modality.
            generator: optional RNG for reproducible noise and times.
        """
        cfg = self.config
        b, dev = video.shape[0], video.device
        g = _gen_device(generator, dev)

        def rand(n: int) -> Tensor:
            return torch.rand(n, generator=generator, device=g).to(dev)

        # 1. Independent times per modality, one modality sometimes held clean.
        n_tokens = num_tokens(model, video.shape, audio.shape, video_rate, audio_rate)
        t_v = self.sample_t(b, n_tokens, dev, generator)  # (B,)
        t_a = self.sample_t(b, n_tokens, dev, generator)  # (B,)
        u = rand(b)
        clean_v = u < cfg.p_clean_video
        clean_a = (u >= cfg.p_clean_video) & (u < cfg.p_clean_video + cfg.p_clean_audio)
        t_v = torch.where(clean_v, torch.zeros_like(t_v), t_v)
        t_a = torch.where(clean_a, torch.zeros_like(t_a), t_a)
        # 2. Per-frame times: a clean prefix (continuation) for some samples.
        prefix_s = self._prefix_seconds(b, video, video_rate, model, rand) * (~clean_v & ~clean_a)  # (B,)
        tv_f = t_v[:, None] * (_frame_times(video.shape[2], video_rate, dev) >= prefix_s[:, None])  # (B, T_v)
        ta_f = t_a[:, None] * (_frame_times(audio.shape[2], audio_rate, dev) >= prefix_s[:, None])  # (B, T_a)
        per_frame = bool(cfg.p_prefix > 0)
        # 3. Straight path between data and noise.
        eps_v = torch.randn(video.shape, generator=generator, device=g).to(dev, video.dtype)
        eps_a = torch.randn(audio.shape, generator=generator, device=g).to(dev, audio.dtype)
        xt_v = noisy_latents(video, eps_v, tv_f)  # (B, C_v, T_v, H, W)
        xt_a = noisy_latents(audio, eps_a, ta_f)  # (B, C_a, T_a)
        # 4. Text dropout for classifier-free guidance.
        dropped = rand(b) < cfg.p_drop_text
        cond = text.drop(dropped)  # always applied: testing `dropped.any()` would sync with the GPU
        # 5. Predict velocities.
        out = model(xt_v, xt_a, tv_f if per_frame else t_v, ta_f if per_frame else t_a, cond, video_rate, audio_rate)
        # 6. Mean squared error on noisy frames only.
        loss_v, valid_v = velocity_error(out.video, video, eps_v, tv_f)  # (B,), (B,)
        loss_a, valid_a = velocity_error(out.audio, audio, eps_a, ta_f)
        video_loss = (loss_v * valid_v).sum() / valid_v.sum().clamp_min(1)
        audio_loss = (loss_a * valid_a).sum() / valid_a.sum().clamp_min(1)
        flow_loss = cfg.video_weight * video_loss + cfg.audio_weight * audio_loss
        aux_total = sum(out.aux.losses.values(), torch.zeros((), device=dev))
        return FlowLoss(
            loss=flow_loss + aux_total, flow_loss=flow_loss, video_loss=video_loss, audio_loss=audio_loss,
            video=loss_v, audio=loss_a, video_valid=valid_v, audio_valid=valid_a, t_video=t_v, t_audio=t_a,
            prefix_seconds=prefix_s, text_dropped=dropped, aux=out.aux,
        )

    def _prefix_seconds(self, b: int, video: Tensor, video_rate: float, model: nn.Module,
                        rand: Callable[[int], Tensor]) -> Tensor:
        """(B,) clean-prefix length in seconds, a whole number of video tokens (0 where none)."""
        cfg = self.config
        pt = _unwrap(model).cfg.video_patch[0] if hasattr(_unwrap(model), "cfg") else 1
        token_s = pt / video_rate
        n_rows = video.shape[2] // pt
        max_rows = int(cfg.prefix_max_fraction * n_rows)
        if cfg.p_prefix == 0 or max_rows < 1:
            return torch.zeros(b, device=video.device)
        rows = 1 + (rand(b) * max_rows).long().clamp_max(max_rows - 1)  # uniform in [1, max_rows]
        return (rand(b) < cfg.p_prefix) * rows * token_s


def noisy_latents(x0: Tensor, eps: Tensor, t_BT: Tensor) -> Tensor:
    """The straight path x_t = x_0 + t (eps - x_0) at a flow time per latent frame.

    Args:
        x0: (B, C, T, ...) clean latents (frames on axis 2: video (B, C, T_v, H, W), audio (B, C, T_a)).
        eps: noise shaped like `x0`.
        t_BT: (B, T) flow time of each frame (0 keeps the frame clean).

    Returns:
        (B, C, T, ...) noisy latents in the dtype of `x0`.
    """
    t = t_BT.reshape(t_BT.shape[0], 1, t_BT.shape[1], *([1] * (x0.dim() - 3))).to(x0.dtype)
    return x0 + t * (eps - x0)


def velocity_error(pred: Tensor, x0: Tensor, eps: Tensor, t_BT: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample mean squared error of a predicted velocity against eps - x_0, over noisy frames only.

    Clean frames (t = 0) carry no error: their target, the noise they never saw, is unpredictable.

    Args:
        pred: (B, C, T, ...) predicted velocity.
        x0, eps: (B, C, T, ...) the clean latents and the noise of the path.
        t_BT: (B, T) flow time of each frame.

    Returns:
        (B,) float32 mean error per sample (0 where no frame is noisy) and (B,) bool, whether any was.
    """
    frame_axes = tuple(d for d in range(1, pred.dim()) if d != 2)
    err_BT = (pred.float() - (eps - x0).float()).square().mean(dim=frame_axes)  # (B, T)
    return _masked_mean(err_BT, t_BT > 0)


def _frame_times(n: int, rate: float, device: torch.device) -> Tensor:
    """(n,) centre time in seconds of each latent frame."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / rate


def _masked_mean(err_BT: Tensor, mask_BT: Tensor) -> tuple[Tensor, Tensor]:
    count = mask_BT.sum(1)
    return (err_BT * mask_BT).sum(1) / count.clamp_min(1), count > 0


def _unwrap(model: nn.Module) -> Any:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)  # torch.compile wrapper


def num_tokens(model: nn.Module, video_shape: Sequence[int], audio_shape: Sequence[int], video_rate: float,
               audio_rate: float) -> int:
    """Tokens per sample the model makes of latents of these shapes (sets the resolution shift)."""
    inner = _unwrap(model)
    if hasattr(inner, "layout"):
        return int(inner.layout(tuple(video_shape), tuple(audio_shape), video_rate, audio_rate).num_tokens)
    return int(video_shape[2] * video_shape[3] * video_shape[4] + audio_shape[2])


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device

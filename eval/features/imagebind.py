"""ImageBind's vision and audio towers (Girdhar et al., 2023), for the ImageBind audio-video score.

Module and parameter names follow facebookresearch/ImageBind's `ImageBindModel`
(`modality_preprocessors.<m>`, `modality_trunks.<m>`, `modality_heads.<m>`,
`modality_postprocessors.<m>`), so `imagebind_huge.pth` loads unchanged: every `vision` and
`audio` key is matched strictly both ways, and the other modalities' keys (text, depth, thermal,
IMU) are set aside by name. Sizes are read from the file (huge: vision 1280 wide, 32 blocks,
16 heads; audio 768, 12, 12; embeddings 1024), so tests run tiny random towers in the same layout.

Preprocessing follows MMAudio's av-benchmark (its IB-score):

- video: frames at 0.5 fps over the first `duration` seconds (8 s: 4 frames), shorter side resized
  to 224 (bicubic, antialiased, 8-bit), CLIP normalisation, three 224 x 224 crops across the
  longer side (ImageBind's `SpatialCrop`), every pair of consecutive frames a 2-frame clip; the
  video embedding is the mean of the normalised embeddings of all crops and clips;
- audio: 16 kHz, three 2 s clips spread evenly over the clip (pytorchvideo's
  `ConstantClipsPerVideoSampler`), each: mean removed, Kaldi fbank (128 bins, 25 ms Hanning
  window, 10 ms shift, HTK-compatible, no dither), zero-padded or cut to 204 frames,
  (x + 4.268) / 9.138; the first channel (Kaldi's fbank reads channel 0); the audio embedding is
  the mean of the three.

The score of a clip is the cosine between the two embeddings (reported x 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from eval.features.base import WindowedExtractor
from eval.reader import EvalInputError, read_audio, read_video
from eval.sets import ClipRecord

__all__ = ["ImageBindConfig", "ImageBindAV", "ImageBindExtractor", "audio_clips", "video_clips",
           "clip_timepoints"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIZE, V_KERNEL = 224, (2, 14, 14)
MELS, A_FRAMES, A_KERNEL, A_STRIDE = 128, 204, 16, 10
FBANK_MEAN, FBANK_STD = -4.268, 9.138
SAMPLE_RATE, VIDEO_FPS = 16000, 0.5


@dataclass(frozen=True)
class ImageBindConfig:
    """Tower sizes (defaults: imagebind_huge)."""

    vision_dim: int = 1280
    vision_blocks: int = 32
    vision_heads: int = 16
    audio_dim: int = 768
    audio_blocks: int = 12
    audio_heads: int = 12
    out_dim: int = 1024


class _Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """ImageBind's `BlockWithMasking` (pre-norm, torch MultiheadAttention, sequence-first)."""

    def __init__(self, dim: int, heads: int, bias_kv: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, bias=True, add_bias_kv=bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class _Trunk(nn.Module):
    def __init__(self, dim: int, blocks: int, heads: int, pre_ln: bool, bias_kv: bool) -> None:
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6) if pre_ln else nn.Identity())
        self.blocks = nn.Sequential(*[_Block(dim, heads, bias_kv) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_transformer_layer(x).transpose(0, 1)  # (L, B, D): the reference runs sequence-first
        return self.blocks(x).transpose(0, 1)  # (B, L, D)


class _PosEmb(nn.Module):
    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, n, dim))


class _Stem(nn.Module):
    def __init__(self, proj: nn.Module, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        if norm is not None:
            self.norm_layer = norm


class _Preprocessor(nn.Module):
    def __init__(self, stem: _Stem, n_patches: int, dim: int) -> None:
        super().__init__()
        self.rgbt_stem = stem
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding_helper = _PosEmb(n_patches + 1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.rgbt_stem.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if hasattr(self.rgbt_stem, "norm_layer"):
            x = self.rgbt_stem.norm_layer(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embedding_helper.pos_embed  # (B, 1+N, D)


class _Scale(nn.Module):
    def __init__(self, init: float) -> None:
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(math.log(init)))


class ImageBindAV(nn.Module):
    """Vision (B, 3, 2, 224, 224) and audio (B, 1, 128, 204) -> unit embeddings (B, out_dim)."""

    def __init__(self, cfg: ImageBindConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ImageBindConfig()
        vd, ad = cfg.vision_dim, cfg.audio_dim
        # PadIm2Video sits at index 0 of the vision stem (no parameters); the Conv3d is index 1.
        v_stem = _Stem(nn.Sequential(nn.Identity(), nn.Conv3d(3, vd, V_KERNEL, V_KERNEL, bias=False)))
        a_stem = _Stem(nn.Conv2d(1, ad, A_KERNEL, A_STRIDE, bias=False), nn.LayerNorm(ad))
        a_patches = ((MELS - A_KERNEL) // A_STRIDE + 1) * ((A_FRAMES - A_KERNEL) // A_STRIDE + 1)  # 12 * 19
        self.modality_preprocessors = nn.ModuleDict({
            "vision": _Preprocessor(v_stem, (SIZE // V_KERNEL[1]) ** 2, vd),
            "audio": _Preprocessor(a_stem, a_patches, ad),
        })
        self.modality_trunks = nn.ModuleDict({
            "vision": _Trunk(vd, cfg.vision_blocks, cfg.vision_heads, pre_ln=True, bias_kv=False),
            "audio": _Trunk(ad, cfg.audio_blocks, cfg.audio_heads, pre_ln=False, bias_kv=True),
        })
        self.modality_heads = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(d, eps=1e-6), nn.Identity(), nn.Linear(d, cfg.out_dim, bias=False))
            for m, d in (("vision", vd), ("audio", ad))
        })
        # Vision: normalise only; audio: normalise then a fixed scale of 20 (a buffer in the file).
        self.modality_postprocessors = nn.ModuleDict({"audio": nn.Sequential(nn.Identity(), _Scale(20.0))})

    def embed(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        tokens = self.modality_trunks[modality](self.modality_preprocessors[modality](x))  # (B, L, D)
        head: nn.Sequential = self.modality_heads[modality]  # type: ignore[assignment]
        out = head[2](head[0](tokens)[:, 0])  # LayerNorm, CLS, projection -> (B, out_dim)
        return F.normalize(out, dim=-1)  # (the audio scale of 20 does not change a cosine)


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def _heads(dim: int, official: int) -> int:
    return official if dim % official == 0 and dim // official >= 16 else 2


def imagebind_config_from_state(state: dict[str, torch.Tensor]) -> ImageBindConfig:
    """Tower sizes a state dict was saved with (heads: the official count at official widths, else 2)."""
    vd = int(state["modality_preprocessors.vision.cls_token"].shape[-1])
    ad = int(state["modality_preprocessors.audio.cls_token"].shape[-1])
    return ImageBindConfig(
        vision_dim=vd, vision_blocks=_count(state, "modality_trunks.vision.blocks."), vision_heads=_heads(vd, 16),
        audio_dim=ad, audio_blocks=_count(state, "modality_trunks.audio.blocks."), audio_heads=_heads(ad, 12),
        out_dim=int(state["modality_heads.vision.2.weight"].shape[0]),
    )


# ---------------------------------------------------------------------------------------------
# Preprocessing


def clip_timepoints(duration: float, clip_duration: float = 2.0, clips: int = 3) -> list[tuple[float, float]]:
    """pytorchvideo's ConstantClipsPerVideoSampler: `clips` windows spread evenly over the clip."""
    step = Fraction(max(duration - clip_duration, 0)).limit_denominator(10**6) / max(clips - 1, 1)
    return [(float(step * i), float(step * i + Fraction(clip_duration))) for i in range(clips)]


def audio_clips(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(C, N) waveform at 16 kHz -> (3, 1, 128, 204) normalised fbank clips."""
    out = []
    for start, end in clip_timepoints(wav.shape[1] / sample_rate):
        w = wav[:, int(start * sample_rate):int(end * sample_rate)].clone()
        w -= w.mean()
        fb = torchaudio.compliance.kaldi.fbank(w, htk_compat=True, sample_frequency=sample_rate, use_energy=False,
                                               window_type="hanning", num_mel_bins=MELS, dither=0.0,
                                               frame_length=25, frame_shift=10).T  # (128, frames)
        p = A_FRAMES - fb.shape[1]
        fb = F.pad(fb, (0, p)) if p > 0 else fb[:, :A_FRAMES]
        out.append(((fb - FBANK_MEAN) / FBANK_STD)[None])
    return torch.stack(out)


def _uniform_crops(x: torch.Tensor, size: int = SIZE) -> list[torch.Tensor]:
    """ImageBind's SpatialCrop(224, 3) on (T, C, H, W): start, centre and end of the longer side."""
    h, w = x.shape[-2:]
    y0, x0 = int(math.ceil((h - size) / 2)), int(math.ceil((w - size) / 2))
    crops = []
    for idx in (0, 1, 2):
        y, xx = y0, x0
        if h > w:
            y = 0 if idx == 0 else (h - size if idx == 2 else y0)
        else:
            xx = 0 if idx == 0 else (w - size if idx == 2 else x0)
        crops.append(x[..., y:y + size, xx:xx + size])
    return crops


def video_clips(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames at 0.5 fps -> (3 crops * (T-1) pairs, 3, 2, 224, 224)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    h, w = x.shape[-2:]
    nh, nw = (SIZE, int(SIZE * w / h)) if h <= w else (int(SIZE * h / w), SIZE)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 255).round()
    x = (x / 255.0 - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    crops = torch.stack(_uniform_crops(x))  # (3, T, 3, 224, 224)
    pairs = torch.cat([crops[:, i:i + 2] for i in range(x.shape[0] - 1)], dim=0)  # (3*(T-1), 2, 3, 224, 224)
    return pairs.transpose(1, 2)  # (n, 3, 2, 224, 224)


class ImageBindExtractor(WindowedExtractor):
    """ImageBind's vision and audio towers from a local `imagebind_huge.pth`, av-benchmark's inputs.

    Args:
        path: the state dict file.
        device: where the towers run.
        duration: seconds of each clip read (av-benchmark: 8).
        batch_size: clips per forward pass.

    Attributes:
        ignored_modalities: the towers of the file that are not loaded (text, depth, ...).
    """

    name = "imagebind"
    what = "ImageBind state dict"
    layout = "ImageBind's vision/audio layout"
    model: ImageBindAV

    def _load(self, state: dict[str, Any]) -> ImageBindAV:
        ours = {k: v for k, v in state.items() if k.split(".")[1:2] in (["vision"], ["audio"])}
        self.ignored_modalities = sorted({k.split(".")[1] for k in state if k not in ours and "." in k})
        model = ImageBindAV(imagebind_config_from_state(ours))
        model.load_state_dict(ours, strict=True)
        return model

    def preprocess(self, record: ClipRecord) -> tuple[torch.Tensor, torch.Tensor]:
        """A clip -> (vision clips (n, 3, 2, 224, 224), audio clips (3, 1, 128, 204))."""
        frames, _ = read_video(record.path, fps=VIDEO_FPS, start=record.start, duration=record.duration)
        frames = frames[: int(VIDEO_FPS * self.duration)]
        if frames.shape[0] < 2:
            raise EvalInputError(f"{record.path}: gives {frames.shape[0]} frame at 0.5 fps; the ImageBind score "
                                 "needs 2 (clips of at least 2 s).", path=record.path)
        audio, _ = read_audio(record.path, sample_rate=SAMPLE_RATE, start=record.start, duration=record.duration)
        wav = torch.from_numpy(audio[:1, : int(SAMPLE_RATE * self.duration)]).float()
        return video_clips(frames), audio_clips(wav)

    @torch.inference_mode()
    def clip(self, record: ClipRecord) -> tuple[np.ndarray, np.ndarray]:
        """(video embedding (D,), audio embedding (D,)) of one clip: means of unit embeddings."""
        v, a = self.preprocess(record)
        ve = torch.cat([self.model.embed("vision", v[s:s + self.batch_size].to(self.device))
                        for s in range(0, v.shape[0], self.batch_size)]).mean(0)
        ae = self.model.embed("audio", a.to(self.device)).mean(0)
        return ve.float().cpu().numpy(), ae.float().cpu().numpy()

    def preprocessing(self) -> dict[str, Any]:
        return {
            "video": f"0.5 fps over the first {self.duration:g} s, shorter side 224 (bicubic), CLIP normalisation, "
                     "3 crops, consecutive frame pairs",
            "audio": "16 kHz, channel 0, three 2 s clips spread evenly, Kaldi fbank 128 x 204, (x + 4.268) / 9.138",
            "score": "100 * cosine(mean vision embedding, mean audio embedding)",
        }

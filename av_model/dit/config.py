"""`DiTConfig`: the one source of truth for the audio-video diffusion transformer's shape.

Named presets (`PRESETS`, `get_preset`) go from `debug` (a CPU test in seconds) through `tiny` (the
embedded default, ~180 tokens per 2 s clip) to sizes for one H100 and for clusters. YAML configs in
`configs/dit/` select a preset and override fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

Balance = Literal["bias", "aux", "none"]
Dispatch = Literal["grouped", "reference"]


@dataclass
class DiTConfig:
    """Shape and behaviour of `AVDiT`.

    Attributes:
        width: model width D (token embedding size).
        depth: number of transformer blocks.
        num_heads: attention heads; must divide `width`.
        video_channels: channels C_v of the (normalized) video latents.
        audio_channels: channels C_a of the (normalized) audio latents.
        video_patch: (time, height, width) patch of video latents per token.
        audio_group: audio latent frames per token (3 turns EnCodec's 75 Hz into 25 tokens/s).
        text_dims: width of each text encoder's tokens (384 for the packaged MiniLM).
        num_experts: routed experts E per MoE layer; 1 with top_k 1 is the dense baseline (no router).
        top_k: experts each token is routed to.
        num_shared_experts: experts every token goes through (fused into one SwiGLU).
        expert_hidden: hidden size F of each expert's SwiGLU.
        balance: "bias" (DeepSeek-V3 selection bias, no gradient), "aux" (Switch auxiliary loss) or "none".
        bias_update_rate: step of the selection-bias update (coeff * sign(mean load - load)).
        aux_loss_coeff: weight of the auxiliary balance loss (balance="aux").
        z_loss_coeff: weight of the router z-loss (mean squared log-sum-exp of the router logits).
        dispatch: "grouped" (sorted tokens + grouped matmul; the fast path) or "reference" (loop).
        rope_time_fraction: share of each head's dimensions given to the temporal rotary part
            (the rest is split evenly between height and width).
        rope_time_min_period: shortest temporal rotary period, in seconds. Must exceed twice the
            finest token spacing (audio tokens at 25/s are 0.04 s apart) so no frequency aliases.
        rope_time_max_period: longest temporal rotary period, in seconds (longer than any clip).
        rope_space_theta: base of the height/width rotary frequencies (positions in patches).
        time_freq_dim: size of the sinusoidal embedding of the flow time t.
        num_t_buckets: noise-level buckets for routing statistics.
        text_max_tokens_hint: typical text length, used only by FLOP counting.
        ref_video_tokens, ref_audio_tokens: typical tokens per sample, used by FLOP counting.
    """

    width: int = 128
    depth: int = 4
    num_heads: int = 4
    video_channels: int = 8
    audio_channels: int = 128
    video_patch: tuple[int, int, int] = (1, 2, 2)
    audio_group: int = 3
    text_dims: tuple[int, ...] = (384,)
    num_experts: int = 8
    top_k: int = 2
    num_shared_experts: int = 1
    expert_hidden: int = 256
    balance: Balance = "bias"
    bias_update_rate: float = 1e-3
    aux_loss_coeff: float = 1e-2
    z_loss_coeff: float = 1e-3
    dispatch: Dispatch = "grouped"
    rope_time_fraction: float = 0.5
    rope_time_min_period: float = 0.1
    rope_time_max_period: float = 1000.0
    rope_space_theta: float = 100.0
    time_freq_dim: int = 256
    num_t_buckets: int = 4
    text_max_tokens_hint: int = 32
    ref_video_tokens: int = 128
    ref_audio_tokens: int = 50

    def __post_init__(self) -> None:
        self.video_patch = tuple(int(p) for p in self.video_patch)  # type: ignore[assignment]
        self.text_dims = tuple(int(d) for d in self.text_dims)
        for name in ("width", "depth", "num_heads", "video_channels", "audio_channels", "audio_group",
                     "num_experts", "top_k", "expert_hidden", "time_freq_dim", "num_t_buckets"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DiTConfig.{name} must be >= 1; got {getattr(self, name)}.")
        if self.width % self.num_heads:
            divisors = [h for h in range(1, self.width + 1) if self.width % h == 0 and (self.width // h) % 4 == 0]
            raise ValueError(
                f"DiTConfig: num_heads={self.num_heads} does not divide width={self.width}; "
                f"pick num_heads from {divisors[-8:]} or change the width."
            )
        if self.head_dim % 4:
            raise ValueError(
                f"DiTConfig: head size width/num_heads = {self.head_dim} must be a multiple of 4 "
                "(rotary embeddings rotate pairs in time, height and width)."
            )
        if self.top_k > self.num_experts:
            raise ValueError(
                f"DiTConfig: top_k={self.top_k} is larger than num_experts={self.num_experts}; "
                f"use top_k <= {self.num_experts}."
            )
        if self.num_shared_experts < 0:
            raise ValueError(f"DiTConfig.num_shared_experts must be >= 0; got {self.num_shared_experts}.")
        if len(self.video_patch) != 3 or min(self.video_patch) < 1:
            raise ValueError(f"DiTConfig.video_patch must be 3 positive ints (t, h, w); got {self.video_patch}.")
        if not self.text_dims or min(self.text_dims) < 1:
            raise ValueError(f"DiTConfig.text_dims needs one positive width per text encoder; got {self.text_dims}.")
        if self.balance not in ("bias", "aux", "none"):
            raise ValueError(f"DiTConfig.balance must be 'bias', 'aux' or 'none'; got {self.balance!r}.")
        if self.dispatch not in ("grouped", "reference"):
            raise ValueError(f"DiTConfig.dispatch must be 'grouped' or 'reference'; got {self.dispatch!r}.")
        if not 0.0 < self.rope_time_fraction < 1.0:
            raise ValueError(f"DiTConfig.rope_time_fraction must be in (0, 1); got {self.rope_time_fraction}.")
        if not 0.0 < self.rope_time_min_period < self.rope_time_max_period:
            raise ValueError(
                "DiTConfig: need 0 < rope_time_min_period < rope_time_max_period; got "
                f"{self.rope_time_min_period}, {self.rope_time_max_period}."
            )
        if self.time_freq_dim % 2:
            raise ValueError(f"DiTConfig.time_freq_dim must be even; got {self.time_freq_dim}.")
        for name in ("bias_update_rate", "aux_loss_coeff", "z_loss_coeff"):
            if getattr(self, name) < 0:
                raise ValueError(f"DiTConfig.{name} must be >= 0; got {getattr(self, name)}.")
        _ = self.rope_dims  # validates the rotary split

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def is_dense(self) -> bool:
        """One expert and no router: the dense baseline."""
        return self.num_experts == 1

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Head dimensions given to the (time, height, width) rotary parts; each even."""
        hd = self.head_dim
        d_t = max(2, int(round(hd * self.rope_time_fraction / 2)) * 2)
        d_h = ((hd - d_t) // 4) * 2
        d_w = hd - d_t - d_h
        if d_h < 2 or d_w < 2 or d_w % 2:
            raise ValueError(
                f"DiTConfig: head size {hd} with rope_time_fraction={self.rope_time_fraction} leaves no room "
                "for the height/width rotary parts; lower rope_time_fraction or use fewer, wider heads."
            )
        return d_t, d_h, d_w

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"DiTConfig: unknown fields {unknown}; known fields are {sorted(known)}.")
        return cls(**data)


def _preset(**kw: Any) -> DiTConfig:
    return DiTConfig(**kw)


# Sizes. Active FFN width = (top_k + num_shared_experts) * expert_hidden; `tiny_dense` matches `tiny`.
PRESETS: dict[str, DiTConfig] = {
        # A CPU test in seconds.
        "debug": _preset(width=64, depth=2, num_heads=2, num_experts=4, top_k=2, num_shared_experts=1,
                         expert_hidden=128, time_freq_dim=64),
        # The embedded default: 2 s clips, 128 video + 50 audio tokens, trains on a CPU in minutes.
        "tiny": _preset(width=128, depth=4, num_heads=4, num_experts=8, top_k=2, num_shared_experts=1,
                        expert_hidden=256),
        "tiny_dense": _preset(width=128, depth=4, num_heads=4, num_experts=1, top_k=1, num_shared_experts=0,
                              expert_hidden=768),
        "small": _preset(width=384, depth=8, num_heads=6, num_experts=8, top_k=2, num_shared_experts=1,
                         expert_hidden=768, ref_video_tokens=1024, ref_audio_tokens=125),
        # One H100: ~1B active parameters (2.8B total), 128-wide heads, 16 experts.
        "h100_1b": _preset(width=2048, depth=20, num_heads=16, video_channels=16, num_experts=16, top_k=2,
                           num_shared_experts=1, expert_hidden=1024, text_max_tokens_hint=128,
                           ref_video_tokens=8192, ref_audio_tokens=125),
        # Clusters: several billion active parameters over 64 fine-grained experts.
        "cluster_8b": _preset(width=4096, depth=32, num_heads=32, video_channels=16, num_experts=64, top_k=4,
                              num_shared_experts=1, expert_hidden=1536, text_max_tokens_hint=256,
                              ref_video_tokens=32768, ref_audio_tokens=250),
}


def get_preset(name: str, **overrides: Any) -> DiTConfig:
    """A copy of preset `name` with `overrides` applied (validated).

    Raises:
        KeyError: unknown preset (the message lists the known ones).
        ValueError/TypeError: an override names no field or gives an invalid value.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown DiT preset {name!r}; known presets: {', '.join(PRESETS)}.")
    known = {f.name for f in fields(DiTConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"get_preset: unknown DiTConfig fields {unknown}; known fields are {sorted(known)}.")
    return replace(PRESETS[name], **overrides)

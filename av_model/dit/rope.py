"""Token layout and rotary position embedding on one clock in seconds.

Every token carries the time, in seconds, of the middle of the span it covers:
`time = (token index + 0.5) * latent frames per token / latent frame rate`. The temporal rotary
angles are `time_seconds * omega_k` with frequencies `omega_k` defined in radians per second, so a
video token and an audio token of the same instant rotate identically whatever the frame rate,
the latent rate or the grouping. Video tokens also rotate by their height and width (in patches).

Audio tokens have no place in the frame. They sit at the frame centre, `((Hp - 1) / 2, (Wp - 1) / 2)`:
the spatial rotary distance from an audio token is then symmetric over the frame, so no corner of
the picture is favoured; with an even patch grid (the default) that centre falls between patches and
never coincides with a video token, and the modality embedding tells the two apart anyway.

Shapes (legend): B batch, N tokens (video then audio), H heads, Dh head size, R = Dh / 2 rotary pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenLayout:
    """Where each modality's tokens sit in the joint sequence (video first, then audio).

    Attributes:
        video_frames: video tokens along time, Tt = T_v / patch_t.
        video_height, video_width: video tokens along height and width (Hp, Wp).
        audio_tokens: audio tokens Na = ceil(T_a / audio_group).
        video_token_seconds: seconds covered by one video token along time.
        audio_token_seconds: seconds covered by one audio token.
    """

    video_frames: int
    video_height: int
    video_width: int
    audio_tokens: int
    video_token_seconds: float
    audio_token_seconds: float

    @property
    def video_tokens(self) -> int:
        return self.video_frames * self.video_height * self.video_width

    @property
    def num_tokens(self) -> int:
        return self.video_tokens + self.audio_tokens

    @property
    def num_slots(self) -> int:
        """Conditioning slots: one per video time step (shared by its Hp*Wp tokens) and per audio token."""
        return self.video_frames + self.audio_tokens

    def video_times(self, device: torch.device | None = None) -> Tensor:
        """(Tt,) centre time in seconds of each video token row."""
        return (torch.arange(self.video_frames, device=device, dtype=torch.float64) + 0.5) * self.video_token_seconds

    def audio_times(self, device: torch.device | None = None) -> Tensor:
        """(Na,) centre time in seconds of each audio token."""
        return (torch.arange(self.audio_tokens, device=device, dtype=torch.float64) + 0.5) * self.audio_token_seconds

    def positions(self, device: torch.device | None = None, time_offset: float = 0.0) -> Tensor:
        """(N, 3) float64 (time in seconds, height, width) of every token, video then audio."""
        tt, hh, ww = torch.meshgrid(
            self.video_times(device),
            torch.arange(self.video_height, device=device, dtype=torch.float64),
            torch.arange(self.video_width, device=device, dtype=torch.float64),
            indexing="ij",
        )
        video = torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)  # (Nv, 3)
        audio = torch.stack(
            [
                self.audio_times(device),
                torch.full((self.audio_tokens,), (self.video_height - 1) / 2, device=device, dtype=torch.float64),
                torch.full((self.audio_tokens,), (self.video_width - 1) / 2, device=device, dtype=torch.float64),
            ],
            dim=-1,
        )  # (Na, 3)
        pos = torch.cat([video, audio])  # (N, 3)
        pos[:, 0] += time_offset
        return pos

    def split(self, x_BND: Tensor) -> tuple[Tensor, Tensor]:
        """Split tokens into video `(B, Tt, Hp*Wp, D)` and audio `(B, Na, D)` views."""
        b, _, d = x_BND.shape
        video = x_BND[:, : self.video_tokens].reshape(b, self.video_frames, -1, d)
        return video, x_BND[:, self.video_tokens :]

    def split_slots(self, c_BSD: Tensor) -> tuple[Tensor, Tensor]:
        """Split per-slot conditioning into video `(B, Tt, 1, D)` (broadcast over a frame) and audio `(B, Na, D)`."""
        return c_BSD[:, : self.video_frames, None], c_BSD[:, self.video_frames :]

    def modulate(self, x_BND: Tensor, shift_BSD: Tensor, scale_BSD: Tensor) -> Tensor:
        """`x * (1 + scale) + shift` with per-slot shift/scale broadcast to tokens without copying them."""
        xv, xa = self.split(x_BND)
        sv, sa = self.split_slots(shift_BSD)
        kv, ka = self.split_slots(scale_BSD)
        return self.join(xv * (1 + kv) + sv, xa * (1 + ka) + sa)

    def gate(self, x_BND: Tensor, gate_BSD: Tensor) -> Tensor:
        """`x * gate` with the per-slot gate broadcast to tokens."""
        xv, xa = self.split(x_BND)
        gv, ga = self.split_slots(gate_BSD)
        return self.join(xv * gv, xa * ga)

    def join(self, video: Tensor, audio: Tensor) -> Tensor:
        """Inverse of `split`: `(B, Tt, Hp*Wp, D)`, `(B, Na, D)` -> `(B, N, D)`."""
        return torch.cat([video.flatten(1, 2), audio], dim=1)

    def modality_ids(self, device: torch.device | None = None) -> Tensor:
        """(N,) long: 0 for video tokens, 1 for audio tokens."""
        ids = torch.ones(self.num_tokens, dtype=torch.long, device=device)
        ids[: self.video_tokens] = 0
        return ids


@dataclass(frozen=True)
class TokenSpan:
    """Tokens `[start, start + n)` of the joint sequence: one rank's share under sequence parallelism.

    The sequence is zero-padded at its end to a multiple of the ranks, so the last shares may end in
    padding. Modulation is `TokenLayout`'s, with each token's conditioning slot gathered by index
    instead of broadcast over the layout (a shard may cut a video frame anywhere).

    Attributes:
        slot_n: (n,) long conditioning slot of each token of the span (0 for padding).
        valid: tokens of the span that are real (the rest is padding).
    """

    slot_n: Tensor
    valid: int

    @staticmethod
    def of(layout: TokenLayout, start: int, n: int, device: torch.device | None = None) -> TokenSpan:
        slots = torch.cat([
            torch.arange(layout.video_frames, device=device).repeat_interleave(layout.video_height * layout.video_width),
            layout.video_frames + torch.arange(layout.audio_tokens, device=device),
        ])  # (N,) slot of every token
        slots = torch.nn.functional.pad(slots, (0, max(0, start + n - layout.num_tokens)))
        return TokenSpan(slot_n=slots[start : start + n], valid=max(0, min(n, layout.num_tokens - start)))

    def modulate(self, x_BnD: Tensor, shift_BSD: Tensor, scale_BSD: Tensor) -> Tensor:
        """`x * (1 + scale) + shift` with each token's own slot's shift/scale."""
        return x_BnD * (1 + scale_BSD[:, self.slot_n]) + shift_BSD[:, self.slot_n]

    def gate(self, x_BnD: Tensor, gate_BSD: Tensor) -> Tensor:
        """`x * gate` with each token's own slot's gate."""
        return x_BnD * gate_BSD[:, self.slot_n]


class AVRotary(torch.nn.Module):
    """Rotary embedding with a temporal part in seconds and height/width parts in patches.

    Args:
        head_dim: Dh.
        dims: head dimensions for the (time, height, width) parts, each even, summing to Dh.
        time_min_period, time_max_period: range of temporal periods in seconds (geometric).
        space_theta: base of the spatial frequencies (standard RoPE over patch indices).
    """

    omega_time: Tensor
    omega_height: Tensor
    omega_width: Tensor

    def __init__(
        self,
        head_dim: int,
        dims: tuple[int, int, int],
        time_min_period: float,
        time_max_period: float,
        space_theta: float,
    ) -> None:
        super().__init__()
        if sum(dims) != head_dim or any(d % 2 for d in dims):
            raise ValueError(f"rotary dims {dims} must be even and sum to the head size {head_dim}.")
        self.dims = dims
        n_t, n_h, n_w = (d // 2 for d in dims)
        # Temporal frequencies in rad/s: periods spaced geometrically from min to max period.
        periods = torch.logspace(math.log10(time_min_period), math.log10(time_max_period), n_t, dtype=torch.float64)
        self.register_buffer("omega_time", 2 * math.pi / periods, persistent=False)
        self.register_buffer("omega_height", _space_freqs(n_h, space_theta), persistent=False)
        self.register_buffer("omega_width", _space_freqs(n_w, space_theta), persistent=False)

    def angles(self, pos_N3: Tensor) -> Tensor:
        """(N, R) rotation angles (float64) for positions (time seconds, height, width)."""
        return torch.cat(
            [
                pos_N3[:, 0:1] * self.omega_time.to(pos_N3.device),  # (N, n_t)
                pos_N3[:, 1:2] * self.omega_height.to(pos_N3.device),  # (N, n_h)
                pos_N3[:, 2:3] * self.omega_width.to(pos_N3.device),  # (N, n_w)
            ],
            dim=-1,
        )

    def forward(self, pos_N3: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin of the angles, each (N, R) float32.

        Angles are formed in float64 and reduced modulo 2*pi before the float32 cast, so long clips
        (large times x high frequencies) keep their phase precision.
        """
        ang = torch.remainder(self.angles(pos_N3.double()), 2 * math.pi)
        return ang.cos().float(), ang.sin().float()


def apply_rotary(x_BHND: Tensor, cos_NR: Tensor, sin_NR: Tensor) -> Tensor:
    """Rotate consecutive pairs (x[2r], x[2r+1]) of the head dimension by the per-token angles."""
    x = x_BHND.float().unflatten(-1, (-1, 2))  # (B, H, N, R, 2)
    x0, x1 = x[..., 0], x[..., 1]
    out = torch.stack([x0 * cos_NR - x1 * sin_NR, x0 * sin_NR + x1 * cos_NR], dim=-1)  # (B, H, N, R, 2)
    return out.flatten(-2).to(x_BHND.dtype)


def _space_freqs(n: int, theta: float) -> Tensor:
    return theta ** (-torch.arange(n, dtype=torch.float64) / max(n, 1))

"""Building blocks of the factorized ("2.5D") video autoencoder.

Every tensor is a clip `(B, C, T, H, W)`. A "factorized" convolution is a 2D spatial convolution
(kernel 1x3x3) followed by a 1D temporal one (kernel 3x1x1), Movie Gen's TAE design: far cheaper
than a full 3x3x3 kernel, and the temporal kernel is initialized to the identity so a fresh
network starts as a per-frame image autoencoder.

Normalization is an RMS norm over channels only (per position), not GroupNorm: GroupNorm's
statistics span the whole clip, so encoding a clip in chunks or tiles would change every value;
a per-position norm keeps the network local, which is what makes chunked encoding match whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelRMSNorm(nn.Module):
    """RMS normalization over the channel axis of `(B, C, T, H, W)`, with a learned scale and bias."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.float().pow(2).mean(dim=1, keepdim=True).add(self.eps).rsqrt()  # (B, 1, T, H, W)
        return (x * rms.to(x.dtype)) * self.weight + self.bias


class ChannelNormAct(nn.Sequential):
    """Channel RMS norm then SiLU, before an output convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__(ChannelRMSNorm(channels), nn.SiLU())


class TemporalConv(nn.Module):
    """1D convolution over time, `(B, C, T, H, W) -> (B, C_out, T / stride, H, W)`.

    The clip is padded by repeating its first and last frames: a clip is assumed to continue
    unchanged beyond its ends, which suits both stills and the boundaries of temporal chunks.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, identity_init: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel_size=(3, 1, 1), stride=(stride, 1, 1))
        if identity_init:
            if in_ch != out_ch:
                raise ValueError("identity_init needs in_ch == out_ch")
            # Centre tap = identity: a new temporal layer passes frames through untouched.
            assert self.conv.bias is not None
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[:, :, 1, 0, 0] = torch.eye(in_ch)
                self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, 0, 1, 1), mode="replicate")  # (B, C, T + 2, H, W)
        return self.conv(x)  # (B, C_out, T / stride, H, W)


class FactorizedConv(nn.Module):
    """Spatial 1x3x3 convolution then temporal 3x1x1 convolution (a "2.5D" 3x3x3)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.spatial = nn.Conv3d(in_ch, out_ch, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        self.temporal = TemporalConv(out_ch, out_ch, identity_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.spatial(x))  # (B, C_out, T, H, W)


def match_channels(x: torch.Tensor, out_ch: int) -> torch.Tensor:
    """Parameter-free channel change: average groups of channels, or repeat each channel.

    Used by the resampling shortcuts. Raises ValueError if neither channel count divides the other.
    """
    c = x.shape[1]
    if c == out_ch:
        return x
    if c % out_ch == 0:
        b, _, *rest = x.shape
        return x.reshape(b, out_ch, c // out_ch, *rest).mean(dim=2)
    if out_ch % c == 0:
        return x.repeat_interleave(out_ch // c, dim=1)
    raise ValueError(f"cannot match {c} channels to {out_ch}: neither divides the other.")


def scale_chroma(x: torch.Tensor, gain: float) -> torch.Tensor:
    """`(B, 3, ...)`: each pixel's chroma (its RGB values less their mean) multiplied by `gain`, its
    grey level (the mean) kept."""
    grey = x.mean(dim=1, keepdim=True)  # (B, 1, ...)
    return grey + gain * (x - grey)


def space_to_depth(x: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """`(B, C, T, H, W) -> (B, C * t * s * s, T / t, H / s, W / s)`, channel-major within each block."""
    b, c, tt, h, w = x.shape
    x = x.reshape(b, c, tt // t, t, h // s, s, w // s, s)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # (B, C, t, s, s, T/t, H/s, W/s)
    return x.reshape(b, c * t * s * s, tt // t, h // s, w // s)


def depth_to_space(x: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """Inverse of `space_to_depth`: `(B, C * t * s * s, T, H, W) -> (B, C, T * t, H * s, W * s)`."""
    b, cf, tt, h, w = x.shape
    c = cf // (t * s * s)
    x = x.reshape(b, c, t, s, s, tt, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C, T, t, H, s, W, s)
    return x.reshape(b, c, tt * t, h * s, w * s)


class ResBlock(nn.Module):
    """Pre-norm residual block of two factorized convolutions."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_ch)
        self.conv1 = FactorizedConv(in_ch, out_ch)
        self.norm2 = ChannelRMSNorm(out_ch)
        self.conv2 = FactorizedConv(out_ch, out_ch)
        self.skip = nn.Conv3d(in_ch, out_ch, kernel_size=1) if in_ch != out_ch else nn.Identity()
        # The last spatial convolution starts at zero so each block starts as the identity: deep
        # stacks then train from the first step without a warm-up of their own.
        assert self.conv2.spatial.bias is not None
        nn.init.zeros_(self.conv2.spatial.weight)
        nn.init.zeros_(self.conv2.spatial.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, T, H, W)
        h = self.conv2(F.silu(self.norm2(h)))  # (B, C_out, T, H, W)
        return self.skip(x) + h


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame (used at the coarsest level)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, kernel_size=1)
        self.proj = nn.Conv3d(channels, channels, kernel_size=1)
        assert self.proj.bias is not None
        nn.init.zeros_(self.proj.weight)  # starts as the identity, like the residual blocks
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        qkv = self.qkv(self.norm(x))  # (B, 3C, T, H, W)
        qkv = qkv.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, 3, c)  # (B*T, HW, 3, C)
        q, k, v = qkv.unbind(dim=2)  # each (B*T, HW, C)
        o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B*T, HW, C)
        o = o.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
        return x + self.proj(o)


class Downsample(nn.Module):
    """Halve height and width (and time when `temporal`), with a space-to-channel shortcut.

    `(B, C_in, T, H, W) -> (B, C_out, T / t, H / 2, W / 2)` with t = 2 if temporal else 1.
    """

    def __init__(self, in_ch: int, out_ch: int, temporal: bool, shortcut: bool) -> None:
        super().__init__()
        self.t = 2 if temporal else 1
        self.spatial = nn.Conv3d(in_ch, out_ch, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.temporal = TemporalConv(out_ch, out_ch, stride=2) if temporal else None
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.spatial(x)  # (B, C_out, T, H/2, W/2)
        if self.temporal is not None:
            h = self.temporal(h)  # (B, C_out, T/2, H/2, W/2)
        if self.shortcut:
            # DC-AE's residual autoencoding: the strided convolutions only learn a correction
            # to a lossless rearrangement, which converges far faster from scratch.
            s = space_to_depth(x, self.t, 2)  # (B, C_in * t * 4, T/t, H/2, W/2)
            h = h + match_channels(s, h.shape[1])
        return h


class Upsample(nn.Module):
    """Double height and width (and time when `temporal`): nearest upsampling then a factorized conv.

    `(B, C_in, T, H, W) -> (B, C_out, T * t, H * 2, W * 2)`.
    """

    def __init__(self, in_ch: int, out_ch: int, temporal: bool, shortcut: bool) -> None:
        super().__init__()
        self.scale = (2 if temporal else 1, 2, 2)
        self.conv = FactorizedConv(in_ch, out_ch)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Nearest upsampling before the convolution avoids the checkerboard of transposed convs.
        up = F.interpolate(x, scale_factor=self.scale, mode="nearest")  # (B, C_in, T*t, 2H, 2W)
        h = self.conv(up)  # (B, C_out, T*t, 2H, 2W)
        if self.shortcut:
            h = h + match_channels(up, h.shape[1])
        return h

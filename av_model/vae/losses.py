"""Training losses of the video autoencoder and its 3D patch discriminator.

Reconstruction (L1, spatial-gradient L1, frame-difference L1), KL to N(0, I), Movie Gen's outlier
penalty on latents, and a hinge GAN with a 3D patch discriminator. Kept apart from the model so
that `VideoAutoencoder` is a plain inference network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ReconstructionLosses:
    """Per-term reconstruction losses (scalars): pixel L1 and MSE, spatial-gradient L1, frame-difference L1."""

    l1: torch.Tensor
    l2: torch.Tensor
    gradient: torch.Tensor
    temporal: torch.Tensor


def reconstruction_losses(x: torch.Tensor, recon: torch.Tensor) -> ReconstructionLosses:
    """Compare a clip with its reconstruction, both `(B, 3, T, H, W)`.

    The gradient and frame-difference terms are cheap stand-ins for a perceptual network (none
    can be downloaded on a fresh machine): they weigh edges and motion, where the L1 of a mostly
    flat frame puts little weight, and edges and motion are what place an object in a frame.
    """
    x, recon = x.float(), recon.float()
    l1 = (x - recon).abs().mean()
    l2 = (x - recon).square().mean()
    dx = lambda v: v[..., :, 1:] - v[..., :, :-1]  # noqa: E731 - (B, 3, T, H, W-1)
    dy = lambda v: v[..., 1:, :] - v[..., :-1, :]  # noqa: E731 - (B, 3, T, H-1, W)
    gradient = 0.5 * ((dx(x) - dx(recon)).abs().mean() + (dy(x) - dy(recon)).abs().mean())
    if x.shape[2] > 1:
        dt = lambda v: v[:, :, 1:] - v[:, :, :-1]  # noqa: E731 - (B, 3, T-1, H, W)
        temporal = (dt(x) - dt(recon)).abs().mean()
    else:
        temporal = x.new_zeros(())
    return ReconstructionLosses(l1=l1, l2=l2, gradient=gradient, temporal=temporal)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) averaged over every latent element (scalar)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def outlier_penalty(z: torch.Tensor, r: float = 3.0) -> torch.Tensor:
    """Movie Gen's outlier penalty loss on latents `(B, C, T', H', W')` (scalar).

    For each clip and channel, the distance of each latent value from the channel's mean over
    (T', H', W') beyond `r` standard deviations is penalized linearly:
    mean(max(|z - mean| - r * std, 0)). It removes the rare high-norm latent "spots" that the
    decoder otherwise learns to use and that show as artifacts in generated videos.
    """
    z = z.float()
    dims = (2, 3, 4)
    mean = z.mean(dim=dims, keepdim=True)  # (B, C, 1, 1, 1)
    std = z.std(dim=dims, keepdim=True) if z[0, 0].numel() > 1 else torch.zeros_like(mean)
    return F.relu((z - mean).abs() - r * std).mean()


class PatchDiscriminator3D(nn.Module):
    """3D patch discriminator: `(B, 3, T, H, W) -> (B, 1, T'', H'', W'')` real/fake logits per patch.

    Strided 3D convolutions (time stride 1 on the first layer so fast motion is seen at full frame
    rate), GroupNorm (batches are tiny; BatchNorm would be noisy), LeakyReLU.
    """

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [
            nn.Conv3d(3, channels, kernel_size=(3, 4, 4), stride=(1, 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        ]
        c = channels
        for _ in range(1, layers):
            c_out = min(c * 2, 8 * channels)
            mods += [
                nn.Conv3d(c, c_out, kernel_size=(3, 4, 4), stride=(2, 2, 2), padding=1),
                nn.GroupNorm(min(32, c_out // 4) or 1, c_out),
                nn.LeakyReLU(0.2),
            ]
            c = c_out
        mods.append(nn.Conv3d(c, 1, kernel_size=3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, T'', H'', W'')


def discriminator_hinge_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator (scalar)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Adversarial loss of the autoencoder against the hinge discriminator (scalar)."""
    return -logits_fake.mean()


def adaptive_adversarial_weight(
    rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """VQGAN's balance: ||d rec / d w|| / ||d adv / d w|| at the decoder's last layer (detached scalar).

    Keeps the adversarial gradient on the same scale as the reconstruction gradient however the
    discriminator's logits drift.
    """
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0]
    w = g_rec.norm() / (g_adv.norm() + 1e-4)
    return w.clamp(0.0, max_weight).detach()

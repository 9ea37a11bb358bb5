"""LightningModule that trains the video autoencoder (manual optimization: autoencoder + discriminator).

Each step:
  1. crop `train_frames` frames from every clip (the offset depends on the step only, so a resumed
     run sees the same crops as an uninterrupted one);
  2. encode, sample the posterior, decode;
  3. reconstruction (L1, gradient, frame difference) + KL + outlier penalty, plus the adversarial
     loss of a 3D patch discriminator once `loss.disc_start_step` is reached;
  4. an autoencoder optimizer step, then a discriminator step on the detached reconstruction.

Validation reconstructs whole clips with the posterior mean and logs L1, PSNR and SSIM.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, cast

import lightning as L
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from avtrain.optim import OptimConfig, adamw

from .callbacks import ExportAutoencoder, ReconstructionVideos
from .config import VAE_OPTIMIZER, LossConfig, VAEConfig
from .losses import (
    PatchDiscriminator3D,
    adaptive_adversarial_weight,
    discriminator_hinge_loss,
    generator_adversarial_loss,
    kl_divergence,
    outlier_penalty,
    reconstruction_losses,
)
from .model import VideoAutoencoder


class VideoAutoencoderModule(L.LightningModule):
    """Trains a `VideoAutoencoder` on batches `{"video": (B, 3, T, H, W) in [-1, 1], ...}`.

    Args:
        vae: the architecture (see `av_model.vae.PRESETS`).
        loss: loss weights and the discriminator schedule.
        optimizer: AdamW and its learning-rate curve for both networks (`avtrain.optim.OptimConfig`).
        train_frames: frames of the random temporal crop trained on (a multiple of the temporal
            compression; None trains on whole clips). Short crops cost less per step, and a
            convolutional model does not need whole clips to learn.
        seed: seeds the crops and the posterior noise (with the step number).
        stats_batches: training batches encoded at the end of fit for the latent mean/std.
        recon_every_n_val: write side-by-side reconstruction videos every this many validation
            runs (0 disables them).
        recon_clips: clips per reconstruction video set.
    """

    def __init__(
        self,
        vae: VAEConfig | None = None,
        loss: LossConfig | None = None,
        optimizer: OptimConfig = VAE_OPTIMIZER,
        train_frames: int | None = 8,
        seed: int = 0,
        stats_batches: int = 16,
        recon_every_n_val: int = 1,
        recon_clips: int = 2,
    ) -> None:
        super().__init__()
        self.vae_config = vae if vae is not None else VAEConfig()
        self.loss_config = loss if loss is not None else LossConfig()
        self.optim_config = replace(optimizer)
        tc = self.vae_config.temporal_compression
        if train_frames is not None and (train_frames < tc or train_frames % tc):
            raise ValueError(
                f"train_frames must be a positive multiple of the temporal compression {tc} (or null "
                f"for whole clips), got {train_frames}."
            )
        if stats_batches < 1 or recon_every_n_val < 0 or recon_clips < 1:
            raise ValueError("stats_batches and recon_clips must be >= 1 and recon_every_n_val >= 0.")
        self.train_frames = train_frames
        self.seed = seed
        self.stats_batches = stats_batches
        self.recon_every_n_val = recon_every_n_val
        self.recon_clips = recon_clips
        # Plain dicts, not dataclasses, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "vae": self.vae_config.to_dict(),
                "loss": asdict(self.loss_config),
                "optimizer": asdict(self.optim_config),
                "train_frames": train_frames,
                "seed": seed,
            }
        )
        self.vae = VideoAutoencoder(self.vae_config)
        lc = self.loss_config
        self.discriminator = (
            PatchDiscriminator3D(lc.disc_channels, lc.disc_layers) if lc.adversarial_weight > 0 else None
        )
        # Manual optimization: two optimizers, stepped in one training_step.
        self.automatic_optimization = False

    # ------------------------------------------------------------------------------- helpers
    def _generator(self, step: int, salt: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed((self.seed * 1_000_003 + step * 7919 + salt) % (2**63))
        return g

    def _crop(self, video: torch.Tensor, step: int) -> torch.Tensor:
        """`(B, 3, T, H, W) -> (B, 3, train_frames, H, W)`: the same offset for the whole batch."""
        t = video.shape[2]
        if self.train_frames is None or t <= self.train_frames:
            usable = t if t == 1 else t // self.vae.temporal_compression * self.vae.temporal_compression
            return video[:, :, :usable]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        start = int(torch.randint(0, t - self.train_frames + 1, (1,), generator=g))
        return video[:, :, start : start + self.train_frames]

    @staticmethod
    def _video(batch: dict[str, Any]) -> torch.Tensor:
        if "video" not in batch:
            raise KeyError(f"batches must hold 'video' (B, 3, T, H, W) in [-1, 1]; got keys {sorted(batch)}.")
        return batch["video"]

    def gan_active(self, step: int | None = None) -> bool:
        step = self.global_step if step is None else step
        return self.discriminator is not None and step >= self.loss_config.disc_start_step

    # ------------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        opt_ae, opt_d = self._optimizers()
        step = self.global_step
        lc, oc = self.loss_config, self.optim_config
        x = self._crop(self._video(batch), step)  # (B, 3, t, H, W)

        out = self.vae(x, sample=True, generator=self._generator(step, 1))
        rec = reconstruction_losses(x, out.recon)
        rec_total = (lc.l1_weight * rec.l1 + lc.l2_weight * rec.l2 + lc.gradient_weight * rec.gradient
                     + lc.temporal_weight * rec.temporal)
        kl = kl_divergence(out.mean, out.logvar)
        opl = outlier_penalty(out.mean, lc.outlier_r)
        loss = rec_total + lc.kl_weight * kl + lc.outlier_weight * opl
        gan = self.gan_active(step)
        logs = {"l1": rec.l1, "l2": rec.l2, "grad": rec.gradient, "temporal": rec.temporal, "kl": kl, "outlier": opl}
        if gan:
            assert self.discriminator is not None
            self.discriminator.requires_grad_(False)  # the autoencoder step must not train D
            g_loss = generator_adversarial_loss(self.discriminator(out.recon))
            weight = torch.ones((), device=x.device)
            if lc.adaptive_adversarial and torch.is_grad_enabled():
                weight = adaptive_adversarial_weight(rec_total, g_loss, self.vae.decoder.last_layer)
            loss = loss + lc.adversarial_weight * weight * g_loss
            logs.update({"g_adv": g_loss, "adv_weight": weight})

        oc.set_lrs(step, self.trainer.max_steps if self._trainer is not None else None, opt_ae, opt_d)
        opt_ae.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if oc.grad_clip > 0:
            self.clip_gradients(opt_ae, gradient_clip_val=oc.grad_clip, gradient_clip_algorithm="norm")
        opt_ae.step()

        if gan and opt_d is not None:
            assert self.discriminator is not None
            self.discriminator.requires_grad_(True)
            real, fake = x, out.recon.detach()
            d_loss = discriminator_hinge_loss(self.discriminator(real), self.discriminator(fake))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            if oc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), oc.grad_clip)
            # The raw optimizer: Lightning counts every LightningOptimizer.step as a global step,
            # which would make `max_steps` count discriminator steps too.
            opt_d.optimizer.step()
            logs["d_loss"] = d_loss

        b = x.shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, prog_bar=False, batch_size=b)
        self.log("train/lr", opt_ae.param_groups[0]["lr"], prog_bar=False, batch_size=b)
        return loss.detach()

    def _optimizers(self) -> tuple[Any, Any]:
        opts = self.optimizers()
        if isinstance(opts, list):
            return opts[0], opts[1]
        return opts, None

    # ---------------------------------------------------------------------------- validation
    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        """Posterior-mean reconstruction of whole clips `(B, 3, T, H, W) -> (B, 3, T, H, W)` in [-1, 1]."""
        usable = video.shape[2] // self.vae.temporal_compression * self.vae.temporal_compression
        video = video[:, :, : max(usable, 1)]
        return self.vae.decode(self.vae.encode(video)).clamp(-1, 1)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video = self._video(batch)
        recon = self.reconstruct(video)  # (B, 3, T, H, W)
        video = video[:, :, : recon.shape[2]].float()
        frames = lambda v: ((v.clamp(-1, 1) + 1) / 2).transpose(1, 2).flatten(0, 1)  # noqa: E731 - (B*T, 3, H, W)
        b = video.shape[0]
        self.log("val/l1", (recon - video).abs().mean(), prog_bar=True, sync_dist=True, batch_size=b)
        self.log("val/psnr", peak_signal_noise_ratio(frames(recon), frames(video), data_range=1.0),
                 prog_bar=True, sync_dist=True, batch_size=b)
        ssim = cast(torch.Tensor, structural_similarity_index_measure(frames(recon), frames(video), data_range=1.0))
        self.log("val/ssim", ssim, sync_dist=True, batch_size=b)

    # ---------------------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        oc = self.optim_config
        opt_ae = adamw(self.vae.parameters(), oc)  # not fused: Lightning clips only unfused optimizers by hand
        if self.discriminator is None:
            return opt_ae
        opt_d = adamw(self.discriminator.parameters(), oc, discriminator=True)
        return [opt_ae, opt_d]

    def configure_callbacks(self) -> list[L.Callback]:
        # Part of the module, not of the YAML, so that overriding trainer.callbacks on the command
        # line cannot drop the export of vae.pt.
        callbacks: list[L.Callback] = [ExportAutoencoder(stats_batches=self.stats_batches)]
        if self.recon_every_n_val > 0:
            callbacks.append(ReconstructionVideos(every_n_val=self.recon_every_n_val, num_clips=self.recon_clips))
        return callbacks

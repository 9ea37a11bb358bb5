"""Lightning training of an EnCodec codec: reconstruction losses, MS-STFT GAN, commitment.

The generator (encoder + decoder) and the discriminator have one optimizer each, stepped by hand
(`automatic_optimization = False`), as GAN training needs. Lightning's step counter
(`trainer.global_step`, and so `max_steps`) counts generator updates only: the discriminator's
optimizer is stepped directly rather than through Lightning's wrapper, which would count it too.
A loss scaler would then be skipped for it, so `16-mixed` precision is refused; use `bf16-mixed`
on GPUs (float16 overflows in these losses anyway).

Each step goes through the quantizer with probability `quantize_prob` (with a bandwidth drawn from
the codec's list, as EnCodec does) and bypasses it otherwise, so the decoder learns to decode the
continuous latents the generator produces as well as the discrete codes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from encodec.msstftd import MultiScaleSTFTDiscriminator

from audio_codec.checkpoint import load_codec
from audio_codec.config import OFFICIAL_CHECKPOINTS, CodecConfig
from audio_codec.encodec_codec import EncodecCodec, quiet_weight_norm
from audio_codec.losses import (
    BandRiseLoss,
    EnvelopeLoss,
    MultiScaleMelLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from audio_codec.metrics import MelDistance, si_snr
from avtrain.optim import OptimConfig, adamw

logger = logging.getLogger("audio_codec")


@dataclass
class LossConfig:
    """Loss weights and the discriminator of codec training.

    Attributes:
        l1_weight: time-domain L1.
        l2_weight: time-domain MSE (gets level and phase of tonal sounds early; 0 in EnCodec).
        envelope_weight: log energy envelope loss (`EnvelopeLoss`: sharp attacks in place).
        band_rise_weight: band-wise level-rise loss (`BandRiseLoss`: every sound's attack, the
            quiet ones under louder sounds included).
        mel_weight: multi-scale mel loss.
        mel_windows: window sizes of the mel loss (short ones keep onsets sharp).
        mel_bands: mel bands per scale (fewer at short windows, so no band is empty).
        mel_floor: magnitude floor before the log of the mel loss.
        mel_l2_weight: weight of the MSE term of the mel loss (next to its L1 term).
        adv_weight: adversarial loss; 0 turns the discriminator off (no second optimizer).
        feat_weight: feature matching loss (used with the discriminator).
        commit_weight: commitment loss of quantized steps.
        quantize_prob: fraction of steps that go through the quantizer (0: continuous only).
        disc_filters: base width of the MS-STFT discriminator.
        disc_n_ffts: FFT sizes of its scales (hop n_fft / 4).
        disc_start_step: generator steps before adversarial training starts (the reconstruction
            losses first give the discriminator something worth judging).
        disc_clips: clips of each batch the discriminator judges (0: all); fewer make a CPU step
            cheaper.
        disc_seconds: length of the random window (the same for real and reconstructed audio) the
            discriminator judges (0: the whole training segment).
        disc_bf16: run the discriminator under bf16 autocast whatever the trainer's precision (its
            losses stay fp32); on CPUs with AMX it runs about 2x faster.
    """

    l1_weight: float = 0.1
    l2_weight: float = 0.0
    envelope_weight: float = 0.0
    band_rise_weight: float = 0.0
    mel_weight: float = 1.0
    mel_windows: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024, 2048])
    mel_bands: int = 64
    mel_floor: float = 1e-5
    mel_l2_weight: float = 1.0
    adv_weight: float = 3.0
    feat_weight: float = 3.0
    commit_weight: float = 1.0
    quantize_prob: float = 0.5
    disc_filters: int = 32
    disc_n_ffts: list[int] = field(default_factory=lambda: [1024, 2048, 512])
    disc_start_step: int = 0
    disc_clips: int = 0
    disc_seconds: float = 0.0
    disc_bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("l1_weight", "l2_weight", "envelope_weight", "band_rise_weight", "mel_weight", "adv_weight",
                     "feat_weight", "commit_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"loss.{name} must be a finite number >= 0, got {value!r}.")
        if self.l1_weight + self.l2_weight + self.mel_weight <= 0:
            raise ValueError("loss.l1_weight, l2_weight and mel_weight are all 0: nothing would teach reconstruction.")
        if not 0 <= self.quantize_prob <= 1:
            raise ValueError(f"loss.quantize_prob must lie in [0, 1], got {self.quantize_prob!r}.")
        if any(w < 16 for w in self.mel_windows) or not self.mel_windows:
            raise ValueError(f"loss.mel_windows must be window sizes >= 16, got {self.mel_windows!r}.")
        if self.disc_filters <= 0 or any(n < 16 for n in self.disc_n_ffts) or not self.disc_n_ffts:
            raise ValueError("loss.disc_filters must be > 0 and loss.disc_n_ffts sizes >= 16.")
        if not self.mel_floor > 0 or self.mel_l2_weight < 0:
            raise ValueError(f"loss.mel_floor must be > 0 and loss.mel_l2_weight >= 0, got {self.mel_floor}, {self.mel_l2_weight}.")
        if self.disc_start_step < 0:
            raise ValueError(f"loss.disc_start_step must be >= 0, got {self.disc_start_step}.")
        if self.disc_clips < 0 or not (math.isfinite(self.disc_seconds) and self.disc_seconds >= 0):
            raise ValueError(f"loss.disc_clips and loss.disc_seconds must be >= 0 (0: all), got {self.disc_clips}, "
                             f"{self.disc_seconds}.")


# The codec's optimizer defaults (`avtrain.optim.OptimConfig`; a config's `model.optimizer` section
# overrides fields of it). EnCodec's recipe: Adam (AdamW without decay), lr 3e-4, betas (0.5, 0.9)
# for both networks; the discriminator's learning rate stays constant.
CODEC_OPTIMIZER = OptimConfig(
    lr=3e-4, betas=(0.5, 0.9), weight_decay=0.0, warmup_steps=0, warmup_start_factor=None, schedule="constant",
    min_lr_ratio=0.0, grad_clip=1.0, disc_lr=3e-4, disc_follows_schedule=False,
)


def _load_initial_weights(codec: EncodecCodec, init_from: str) -> None:
    """Copy weights (and statistics) from a codec file or official EnCodec weights into `codec`."""
    source = load_codec(init_from) if init_from not in OFFICIAL_CHECKPOINTS else EncodecCodec.from_pretrained(init_from)
    if not isinstance(source, EncodecCodec):
        raise ValueError(f"init_from {init_from} is a {type(source).__name__}, not an EnCodec codec.")
    codec.load_model_weights(source.model.state_dict(), source=init_from)
    if source.latent_dim == codec.latent_dim and source.has_latent_stats:
        codec.set_latent_stats(source.latent_mean, source.latent_std, int(source.latent_stats_frames))


class CodecLitModule(L.LightningModule):
    """Trains an `EncodecCodec`.

    Args:
        codec: architecture (default: the `small` preset; see `audio_codec.config.PRESETS`).
        loss: loss weights and discriminator.
        optimizer: Adam(W) and the generator's learning-rate curve (`avtrain.optim.OptimConfig`).
        init_from: fine-tune from these weights: a codec `.pt`, an official EnCodec file, or
            "encodec_24khz" / "encodec_48khz" (official file in the torch hub cache). The
            architecture must match `codec`.
        log_audio_clips: validation clips whose reconstructions are written as wav files to
            `<log_dir>/audio/step_<N>/`.
    """

    def __init__(self, codec: CodecConfig = CodecConfig(), loss: LossConfig = LossConfig(),
                 optimizer: OptimConfig = CODEC_OPTIMIZER, init_from: str | None = None, log_audio_clips: int = 2) -> None:
        super().__init__()
        # Copies, so the shared defaults in the signature are never touched.
        codec = CodecConfig.from_dict(codec.to_dict())
        loss, optim = dataclasses.replace(loss), dataclasses.replace(optimizer)
        # Plain dicts, so checkpoints load with weights_only=True and `avgen codec export` can
        # rebuild the architecture without this module's classes.
        self.save_hyperparameters({"codec": codec.to_dict(), "loss": dataclasses.asdict(loss),
                                   "optimizer": dataclasses.asdict(optim), "init_from": init_from,
                                   "log_audio_clips": log_audio_clips})
        self.automatic_optimization = False
        self.loss_cfg, self.optim_cfg = loss, optim
        self.log_audio_clips = log_audio_clips
        self.codec = EncodecCodec(codec)
        if init_from:
            _load_initial_weights(self.codec, init_from)
        self.disc: MultiScaleSTFTDiscriminator | None = None
        if loss.adv_weight > 0:
            window = round(loss.disc_seconds * codec.sample_rate)
            if 0 < window < max(loss.disc_n_ffts):
                raise ValueError(f"loss.disc_seconds={loss.disc_seconds} is {window} samples, shorter than the "
                                 f"discriminator's largest FFT ({max(loss.disc_n_ffts)}); use a longer window or 0.")
            with quiet_weight_norm():
                self.disc = MultiScaleSTFTDiscriminator(
                    filters=loss.disc_filters, in_channels=codec.channels, n_ffts=list(loss.disc_n_ffts),
                    hop_lengths=[n // 4 for n in loss.disc_n_ffts], win_lengths=list(loss.disc_n_ffts))
        self.mel_loss = MultiScaleMelLoss(codec.sample_rate, list(loss.mel_windows), n_mels=loss.mel_bands,
                                          floor=loss.mel_floor, l2_weight=loss.mel_l2_weight)
        self.envelope_loss = EnvelopeLoss(codec.sample_rate)
        self.band_rise_loss = BandRiseLoss(codec.sample_rate)
        self.mel_distance = MelDistance(codec.sample_rate)
        self._reference_written: set[str] = set()

    # -- setup ----------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        precision = str(getattr(self.trainer, "precision", "32"))
        if precision.startswith("16"):
            raise ValueError(
                f"trainer.precision={precision!r} is not supported for codec training (the discriminator step "
                "bypasses the loss scaler and float16 overflows in the spectral losses); use bf16-mixed or 32-true."
            )

    def configure_optimizers(self) -> Any:
        gen_params = [p for p in self.codec.parameters() if p.requires_grad]
        opt_g = adamw(gen_params, self.optim_cfg)  # not fused: Lightning clips only unfused optimizers by hand
        if self.disc is None:
            return opt_g
        return [opt_g, adamw(self.disc.parameters(), self.optim_cfg, discriminator=True)]

    # -- training -------------------------------------------------------------------------------------
    def _draw_codebooks(self) -> int:
        """Codebooks for this step: 0 (bypass) or the count of a random target bandwidth."""
        if self.loss_cfg.quantize_prob <= 0 or float(torch.rand(())) >= self.loss_cfg.quantize_prob:
            return 0
        bandwidths = self.codec.bandwidths
        pick = bandwidths[int(torch.randint(len(bandwidths), ()))]
        return self.codec.config.codebooks_for_bandwidth(pick)

    def _judge(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """The discriminator's logits and feature maps of `audio` (B, C, S), as fp32."""
        assert self.disc is not None
        # Without disc_bf16 the trainer's own precision applies (an autocast(enabled=False) here
        # would switch a bf16-mixed trainer's autocast off).
        amp = (torch.autocast(audio.device.type, dtype=torch.bfloat16) if self.loss_cfg.disc_bf16
               else contextlib.nullcontext())
        with amp:
            logits, maps = self.disc(audio)
        return [t.float() for t in logits], [[t.float() for t in scale] for scale in maps]

    def _disc_window(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The clips and random time window of (real, reconstructed) audio the discriminator judges."""
        cfg = self.loss_cfg
        if cfg.disc_clips:
            x, y = x[:cfg.disc_clips], y[:cfg.disc_clips]
        window = round(cfg.disc_seconds * self.codec.sample_rate)
        if 0 < window < x.shape[-1]:
            start = int(torch.randint(x.shape[-1] - window + 1, ()))
            x, y = x[..., start:start + window], y[..., start:start + window]
        return x, y

    def _adversarial_active(self) -> bool:
        return self.disc is not None and self.global_step >= self.loss_cfg.disc_start_step

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:  # every clip of the batch failed to decode (already warned)
            return None
        opts = self.optimizers()
        opt_g, opt_d = (opts if isinstance(opts, list) else (opts, None))
        x = self.codec.prepare_audio(batch["audio"])  # (B, C, S), S a multiple of the hop
        cfg = self.loss_cfg

        # 1. Generator: reconstruction, commitment and (once active) adversarial losses.
        out = self.codec(x, n_q=self._draw_codebooks())
        y = out.audio  # (B, C, S)
        l1 = (y.float() - x).abs().mean()
        l2 = (y.float() - x).pow(2).mean()
        mel = self.mel_loss(y, x)
        total = (cfg.l1_weight * l1 + cfg.l2_weight * l2 + cfg.mel_weight * mel
                 + cfg.commit_weight * out.commit_loss)
        logs = {"train/l1": l1, "train/l2": l2, "train/mel": mel, "train/commit": out.commit_loss}
        if cfg.envelope_weight > 0:
            envelope = self.envelope_loss(y, x)
            total = total + cfg.envelope_weight * envelope
            logs["train/envelope"] = envelope
        if cfg.band_rise_weight > 0:
            band_rise = self.band_rise_loss(y, x)
            total = total + cfg.band_rise_weight * band_rise
            logs["train/band_rise"] = band_rise
        adversarial = self._adversarial_active()
        if adversarial:
            assert self.disc is not None and opt_d is not None
            self.toggle_optimizer(opt_g)  # no gradients into the discriminator from this loss
            x_d, y_d = self._disc_window(x, y)
            fake_logits, fake_maps = self._judge(y_d.float())
            with torch.no_grad():
                _, real_maps = self._judge(x_d)
            adv = generator_hinge_loss(fake_logits)
            feat = feature_matching_loss(real_maps, fake_maps)
            total = total + cfg.adv_weight * adv + cfg.feat_weight * feat
            logs.update({"train/adv": adv, "train/feat": feat})
        self.optim_cfg.set_lrs(self.global_step, self.trainer.max_steps if self._trainer is not None else None,
                               opt_g, opt_d)
        opt_g.zero_grad()
        self.manual_backward(total)
        if self.optim_cfg.grad_clip:
            self.clip_gradients(opt_g, self.optim_cfg.grad_clip, "norm")  # type: ignore[arg-type]
        opt_g.step()
        if adversarial:
            self.untoggle_optimizer(opt_g)

        # 2. Discriminator: hinge loss on real vs detached reconstructions.
        if adversarial:
            assert self.disc is not None and opt_d is not None
            self.toggle_optimizer(opt_d)
            real_logits, _ = self._judge(x_d)
            fake_logits, _ = self._judge(y_d.detach().float())
            d_loss = discriminator_hinge_loss(real_logits, fake_logits)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            if self.optim_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), self.optim_cfg.grad_clip)
            opt_d.optimizer.step()  # the raw optimizer: keeps global_step counting generator steps
            self.untoggle_optimizer(opt_d)
            logs["train/disc"] = d_loss
        logs["train/loss"] = total
        self.log_dict({k: v.detach() for k, v in logs.items()}, prog_bar=False, batch_size=x.shape[0])
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=x.shape[0])
        self.log("mel", mel.detach(), prog_bar=True, logger=False, batch_size=x.shape[0])
        return None

    # -- validation -----------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:
            return None
        length = batch["audio"].shape[-1]
        x = self.codec.prepare_audio(batch["audio"])  # (B, C, S'), padded to whole frames
        y = self.codec(x, n_q=0).audio.float()[..., :length]  # continuous latents: what the generator uses
        x = x[..., :length]  # (B, C, S)
        n = x.shape[0]
        self.log("val/mel_distance", self.mel_distance(y, x).mean(), prog_bar=True, batch_size=n)
        self.log("val/l1", (y - x).abs().mean(), batch_size=n)
        self.log("val/si_snr", si_snr(y, x).mean(), prog_bar=True, batch_size=n)
        if batch_idx < self.log_audio_clips and self.trainer.is_global_zero:
            self._write_audio(batch["id"][0], x[0], y[0])
        return None

    def _write_audio(self, clip_id: str, reference: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """Write the reconstruction (and once, the reference) of one clip as wav files."""
        from avio import write_audio

        root = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "audio"
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in clip_id)
        sr = self.codec.sample_rate
        write_audio(root / f"step_{self.global_step:06d}" / f"{safe}.wav", reconstruction.clamp(-1, 1).cpu(), sr)
        if safe not in self._reference_written:
            write_audio(root / "reference" / f"{safe}.wav", reference.clamp(-1, 1).cpu(), sr)
            self._reference_written.add(safe)

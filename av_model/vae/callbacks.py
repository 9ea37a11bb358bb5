"""Lightning callbacks of autoencoder training: export `vae.pt` with latent statistics; reconstruction videos."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .lit import VideoAutoencoderModule

log = logging.getLogger(__name__)


def _train_batches(trainer: L.Trainer) -> Iterator[dict[str, Any]]:
    """Batches of the training data, from the datamodule when there is one."""
    dm = getattr(trainer, "datamodule", None)
    loader: Any = dm.train_dataloader() if dm is not None else trainer.train_dataloader
    loader = getattr(loader, "iterables", loader)  # a CombinedLoader wraps the real loader
    if isinstance(loader, list | tuple):
        loader = loader[0]
    if isinstance(loader, dict):
        loader = next(iter(loader.values()))
    yield from loader


@torch.no_grad()
def latent_statistics(
    module: VideoAutoencoderModule, batches: Iterable[dict[str, Any]], max_batches: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel mean and std `(C,)` of posterior means over whole clips, and the clip count.

    Sums are kept in float64: the latent count reaches millions and float32 sums lose digits.

    Args:
        device: where to encode (default: the module's). At the end of fit Lightning may already
            have moved the module to the CPU; pass the training device so the statistics run there.
    """
    vae = module.vae
    device = device or module.device
    home = next(vae.parameters()).device
    vae.to(device)
    c = vae.latent_dim
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count, clips = 0, 0
    was_training = vae.training
    vae.eval()
    for i, batch in enumerate(tqdm(batches, total=max_batches, desc="latent statistics", leave=False)):
        if i >= max_batches:
            break
        video = batch["video"].to(device)
        usable = video.shape[2] // vae.temporal_compression * vae.temporal_compression
        z = vae.encode(video[:, :, : max(usable, 1)]).double().cpu()  # (B, C, T', H', W')
        total += z.sum(dim=(0, 2, 3, 4))
        total_sq += z.pow(2).sum(dim=(0, 2, 3, 4))
        count += z[:, 0].numel()
        clips += z.shape[0]
    vae.train(was_training)
    vae.to(home)
    if count == 0:
        raise RuntimeError("no training batches to compute latent statistics from.")
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.float(), std.float(), clips


class ExportAutoencoder(L.Callback):
    """At the end of fit: measure latent mean/std per channel and write `<default_root_dir>/vae.pt`."""

    def __init__(self, stats_batches: int = 16, filename: str = "vae.pt") -> None:
        self.stats_batches = stats_batches
        self.filename = filename

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.interrupted:
            log.warning("training was interrupted: %s not written (resume with --ckpt_path last).", self.filename)
            return
        module: VideoAutoencoderModule = pl_module  # type: ignore[assignment]
        mean, std, clips = latent_statistics(module, _train_batches(trainer), self.stats_batches,
                                             device=trainer.strategy.root_device)
        vae = module.vae
        vae.set_latent_stats(mean.to(vae.latent_mean.device), std.to(vae.latent_std.device))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        vae.metadata = {
            "global_step": int(trainer.global_step),
            "stats_clips": clips,
            "validation": metrics,
            "train_frames": module.train_frames,
        }
        path = Path(trainer.default_root_dir) / self.filename
        vae.save(str(path))
        print(f"wrote {path} (fingerprint {vae.fingerprint}, latent std {[round(s, 3) for s in std.tolist()]})")


class ReconstructionVideos(L.Callback):
    """Write validation clips side by side with their reconstructions (input left) as mp4.

    Files go to `<log_dir>/reconstructions/step<NNNNNN>_<clip id>.mp4`, every `every_n_val`
    validation runs and once at the end of fit.
    """

    def __init__(self, every_n_val: int = 1, num_clips: int = 2) -> None:
        self.every_n_val = every_n_val
        self.num_clips = num_clips
        self._batch: dict[str, Any] | None = None
        self._runs = 0
        self._last_written_step = -1

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and self._batch is None and isinstance(batch, dict):
            n = self.num_clips
            ids = batch.get("id") or [f"clip{i}" for i in range(batch["video"].shape[0])]
            self._batch = {"video": batch["video"][:n].detach().cpu(), "id": list(ids)[:n]}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._batch is None:
            return
        self._runs += 1
        if self._runs % self.every_n_val == 0:
            self._write(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.interrupted and self._last_written_step != trainer.global_step:
            if self._batch is None:
                batch = next(iter(_train_batches(trainer)), None)
                if batch is None:
                    return
                self.on_validation_batch_end(trainer, pl_module, None, batch, 0)
            self._write(trainer, pl_module)

    @rank_zero_only
    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from avio import write_clip

        assert self._batch is not None
        module: VideoAutoencoderModule = pl_module  # type: ignore[assignment]
        video = self._batch["video"].to(module.device)
        was_training = module.training
        module.eval()
        recon = module.reconstruct(video).cpu()  # (B, 3, T, H, W)
        module.train(was_training)
        video = video[:, :, : recon.shape[2]].cpu()
        side = torch.cat([video.float(), recon], dim=-1)  # (B, 3, T, H, 2W): input | reconstruction
        frames = ((side.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)  # (B, T, H, 2W, 3)
        fps = float(getattr(getattr(trainer, "datamodule", None), "fps", None) or 16.0)
        out_dir = Path(trainer.log_dir or trainer.default_root_dir) / "reconstructions"
        for clip_id, clip in zip(self._batch["id"], frames):
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(clip_id))
            write_clip(out_dir / f"step{trainer.global_step:06d}_{safe}.mp4", clip, fps=fps)
        self._last_written_step = trainer.global_step

"""Callbacks of diffusion training: EMA, throughput and MFU, the NaN guard, router bias, sample clips,
conditioning diagnostics.

`AVDiffusion` publishes what these read: `loss_terms` (the last step's detached losses),
`flops_per_batch` and `tokens_in_batch(batch)`; the generator's MoE layers expose `update_bias()`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor, WeightAveraging
from lightning.pytorch.utilities import rank_zero_info
from torch.optim.swa_utils import get_ema_multi_avg_fn

__all__ = ["EMA", "ConditioningDiagnostics", "NaNGuard", "NonFiniteLossError", "RouterBiasUpdate", "SampleWriter",
           "ThroughputMFU"]


class NonFiniteLossError(FloatingPointError):
    """Training stopped because a loss became NaN or infinite."""


class NaNGuard(L.Callback):
    """Stops training, before the bad step updates any weight, when a loss is NaN or infinite.

    The check runs before `backward`, so the weights and the last checkpoint stay clean, and the
    error names the step and every loss term with its value.

    Args:
        check_every_n_steps: check every this many steps (each check waits for the GPU).
        check_grad_norm: also stop when the gradient norm is not finite (before the optimizer step).
    """

    def __init__(self, check_every_n_steps: int = 1, check_grad_norm: bool = True) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1; got {check_every_n_steps}.")
        self.check_every_n_steps = check_every_n_steps
        self.check_grad_norm = check_grad_norm

    def _where(self, trainer: L.Trainer) -> str:
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", "")
        hint = f" The last checkpoint is {ckpt}." if ckpt else ""
        return (f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch "
                f"{trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1}).{hint}")

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if trainer.global_step % self.check_every_n_steps:
            return
        terms: dict[str, torch.Tensor] = dict(getattr(pl_module, "loss_terms", {}) or {})
        terms.setdefault("train/loss", loss.detach())
        values = torch.stack([t.float().reshape(()) for t in terms.values()])
        if bool(torch.isfinite(values).all()):  # one host sync for all terms
            return
        bad = [f"{name}={v:.4g}" for name, v in zip(terms, values.tolist()) if not math.isfinite(v)]
        good = [f"{name}={v:.4g}" for name, v in zip(terms, values.tolist()) if math.isfinite(v)]
        raise NonFiniteLossError(
            f"the loss became non-finite at {self._where(trainer)} Non-finite: {', '.join(bad)}"
            + (f"; finite: {', '.join(good)}" if good else "")
            + ". Lower the learning rate, raise warm-up, check gradient clipping, or check the latent cache "
            "(`avgen cache check --deep`), then resume from the last checkpoint."
        )

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        norm = getattr(pl_module, "last_grad_norm", None)
        if not self.check_grad_norm or norm is None or trainer.global_step % self.check_every_n_steps:
            return
        if not bool(torch.isfinite(norm)):
            raise NonFiniteLossError(
                f"the gradient norm became non-finite ({float(norm)}) at {self._where(trainer)} The losses were "
                f"finite; this points at an overflow in backward: try bf16-mixed instead of 16-mixed, or a lower "
                "learning rate."
            )


class EMA(WeightAveraging):
    """Exponential moving average of the weights (Lightning's `WeightAveraging`), used for sampling.

    Validation, the sample clips and the weights left at the end of training are the EMA's. A
    checkpoint keeps both: `state_dict` holds the EMA weights (what `load_from_checkpoint` and
    `avgen sample` read) and `current_model_state` the raw ones (what resuming continues from).
    When fine-tuning (`model.freeze`, `model.lora`) only the trainable weights are averaged: a frozen
    weight's average is the weight itself, so its update is skipped (the copy still holds the whole
    model; `device: cpu` or `enabled: false` save that memory).

    Args:
        decay: EMA decay per update (0.999 ~ an average over the last 1000 updates).
        start_step: optimizer step of the first update; the EMA copies the weights then.
        warmup: use decay min(decay, (1 + k) / (10 + k)) at the k-th update, so short runs are not
            dominated by the first weights: without it, after 1000 updates at decay 0.999 the
            average still holds 0.999^1000 = 37% of the weights it started from.
        every_n_steps: update every this many optimizer steps.
        enabled: False turns the callback off (sharded models, or to save the memory of a copy).
        device: keep the averaged copy there ("cpu" saves GPU memory); None: the model's device.
    """

    def __init__(
        self, decay: float = 0.999, start_step: int = 0, every_n_steps: int = 1, enabled: bool = True,
        device: str | None = None, warmup: bool = True,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1]; got {decay}.")
        if every_n_steps < 1 or start_step < 0:
            raise ValueError(f"need every_n_steps >= 1 and start_step >= 0; got {every_n_steps}, {start_step}.")
        # multi_avg_fn: one fused foreach lerp over all tensors instead of a Python loop per tensor.
        super().__init__(device=device, use_buffers=True, multi_avg_fn=self._lerp)
        self.decay, self.start_step, self.every_n_steps, self.enabled = decay, start_step, every_n_steps, enabled
        self.warmup = warmup
        self._update_index = 0  # k of the update under way, from the step (so a resumed run continues it)
        self._frozen_ptrs: set[int] = set()  # storage of the averaged copies of frozen weights

    def decay_at(self, k: int) -> float:
        """Decay of the k-th update after the copy (k >= 1)."""
        return min(self.decay, (1 + k) / (10 + k)) if self.warmup else self.decay

    @torch.no_grad()
    def _lerp(self, ema: list[torch.Tensor], current: list[torch.Tensor], _n_averaged: Any) -> None:
        # The decay comes from the step, not from `n_averaged` (a device tensor: reading it would sync).
        if self._frozen_ptrs:
            # Frozen weights (model.freeze, LoRA's base) would average to themselves: only the trainable
            # ones are updated. The lists hold detached views of the averaged copies, so storage identifies them.
            keep = [i for i, t in enumerate(ema) if t.data_ptr() not in self._frozen_ptrs]
            if not keep:
                return
            ema, current = [ema[i] for i in keep], [current[i] for i in keep]
        get_ema_multi_avg_fn(self.decay_at(self._update_index))(ema, current, _n_averaged)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        ok = step_idx is not None and step_idx >= self.start_step and step_idx % self.every_n_steps == 0
        if ok:
            self._update_index = (step_idx - self.start_step) // self.every_n_steps  # type: ignore[operator]
        return ok

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.enabled:
            return
        from lightning.pytorch.strategies import ModelParallelStrategy

        if isinstance(trainer.strategy, ModelParallelStrategy):
            raise ValueError(
                "the EMA callback keeps a full copy of the model, which does not work with the sharded "
                "ModelParallelStrategy; set `ema.enabled: false` for sharded runs."
            )
        if stage == "fit":
            from torch.optim.swa_utils import AveragedModel

            materialize = getattr(pl_module, "materialize", None)
            if callable(materialize):  # built on the meta device (parallel.meta_init): weights first
                materialize()

            # Not `super().setup`: it would call `configure_model` outside the strategy (a warning and
            # no effect here, since `AVDiffusion.configure_model` only acts under ModelParallelStrategy).
            self._average_model = AveragedModel(
                model=pl_module, device=self._device or pl_module.device, use_buffers=self._use_buffers,
                **self._kwargs,
            )
            self._frozen_ptrs = {
                avg.data_ptr() for avg, cur in zip(self._average_model.module.parameters(), pl_module.parameters())
                if not cur.requires_grad
            }

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.enabled:
            super().on_train_batch_end(trainer, pl_module, *args)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled:
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled and self._average_model is not None:
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.enabled and self._average_model is not None:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.enabled and self._average_model is not None:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class RouterBiasUpdate(L.Callback):
    """Applies the mixture-of-experts selection-bias step (DeepSeek-V3 balancing) after each optimizer step.

    The generator's MoE layers accumulate expert loads during forward passes; `AVDiT.update_router_bias()`
    must run exactly once per optimizer step, outside autograd (so gradient accumulation and
    activation-checkpoint recomputation cannot disturb it). The imbalance of the loads that drove
    the step (max load / mean load, averaged over layers) is logged as `moe/load_imbalance`.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.fit_loop._should_accumulate():
            return
        model: Any = getattr(pl_module, "model", pl_module)
        loads = model.update_router_bias()  # (layers, E) routed slots since the last step
        if trainer._logger_connector.should_update_logs and loads.numel():
            ratio = (loads.amax(-1) / loads.mean(-1).clamp_min(1e-9)).mean()
            pl_module.log("moe/load_imbalance", ratio, on_step=True, on_epoch=False)


class ThroughputMFU(ThroughputMonitor):
    """Tokens per second, TFLOP/s and model FLOPs utilization (Lightning's `ThroughputMonitor`).

    FLOPs per batch come from `AVDiffusion.flops_per_batch` (forward and backward of the active
    parameters plus attention, counted for the batch's token counts); tokens from
    `AVDiffusion.tokens_in_batch`. Logged as `train|device/items_per_sec` (tokens/s),
    `train|device/flops_per_sec` and `train|device/mfu`.

    Args:
        peak_tflops: the hardware peak MFU is measured against (dense bf16 TFLOP/s per device); None
            uses Lightning's table for known GPUs, or a measured matmul peak when `measure_peak`.
        measure_peak: time a large matmul at start-up to find the peak (for devices not in the table).
        window_size: steps in the rolling average.
    """

    def __init__(self, peak_tflops: float | None = None, measure_peak: bool = False, window_size: int = 20) -> None:
        if window_size < 2:
            raise ValueError(f"window_size must be >= 2; got {window_size}.")
        if peak_tflops is not None and peak_tflops <= 0:
            raise ValueError(f"peak_tflops must be > 0; got {peak_tflops}.")
        super().__init__(batch_size_fn=lambda batch: int(batch["video"].shape[0]), window_size=window_size)
        self.peak_tflops, self.measure_peak = peak_tflops, measure_peak

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        tokens: Any = getattr(pl_module, "tokens_in_batch", None)
        self.length_fn = tokens if callable(tokens) else None
        super().setup(trainer, pl_module, stage)
        if self.peak_tflops is not None:
            peak: float | None = self.peak_tflops * 1e12
        elif self.measure_peak:
            peak = measure_matmul_flops(trainer.strategy.root_device)
        else:
            peak = self.available_flops  # Lightning's table; None for devices it does not know
        self.available_flops = int(peak) if peak else None
        for throughput in self._throughputs.values():
            throughput.available_flops = self.available_flops
        if self.available_flops:
            rank_zero_info(f"MFU is measured against a peak of {self.available_flops / 1e12:.1f} TFLOP/s per device")


def measure_matmul_flops(device: torch.device, size: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of a square matmul on `device` (bf16 on CUDA, fp32 on CPU): a measured peak for MFU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = size if device.type == "cuda" else min(size, 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


class SampleWriter(L.Callback):
    """Writes a few mp4 clips with sound to `<log_dir>/samples/step_XXXXXXX/` at validation.

    Latents are decoded with the audio codec and the video autoencoder given by path; without them
    the callback logs one note and does nothing. Sampling runs right after the first validation
    batch, while validation holds the weights it evaluates (the EMA's when the EMA callback is on),
    at that batch's clip duration.

    Args:
        codec: the codec file the cache was built with (`codec.pt`).
        vae: the video autoencoder file the cache was built with (`vae.pt`).
        prompts: prompts to sample; None takes the captions of the first validation batch.
        num_samples: clips per validation run.
        every_n_validations: write samples at every n-th validation run.
        steps: sampler steps (None: the model's sampler config).
        seed: sampling seed (fixed, so clips of successive validations are comparable).
    """

    def __init__(
        self, codec: str | None = None, vae: str | None = None, prompts: list[str] | None = None,
        num_samples: int = 2, every_n_validations: int = 1, steps: int | None = None, seed: int = 0,
    ) -> None:
        if num_samples < 1 or every_n_validations < 1:
            raise ValueError(f"need num_samples >= 1 and every_n_validations >= 1; got {num_samples}, "
                             f"{every_n_validations}.")
        self.codec, self.vae, self.prompts = codec, vae, prompts
        self.num_samples, self.every_n_validations, self.steps, self.seed = num_samples, every_n_validations, steps, seed
        self._validations = 0
        self._decoders: tuple[Any, Any] | None = None
        self._noted = False

    def _enabled(self) -> bool:
        if self.codec and self.vae:
            return True
        if not self._noted:
            rank_zero_info("SampleWriter: no codec/vae paths given (samples.codec, samples.vae), so no sample "
                           "clips are written during training.")
            self._noted = True
        return False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validations += 1

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or (self._validations - 1) % self.every_n_validations:
            return
        if not self._enabled():
            return
        from lightning.pytorch.strategies import ModelParallelStrategy

        # A sharded model's forward needs every rank; otherwise rank 0 samples alone.
        sharded = isinstance(trainer.strategy, ModelParallelStrategy)
        if not (sharded or trainer.is_global_zero):
            return
        prompts = list(self.prompts or batch["caption"])[: self.num_samples]
        duration = batch["video"].shape[2] / pl_module.video_rate
        from av_model.sample.pipeline import AVPipeline, load_decoders

        if self._decoders is None:
            assert self.codec is not None and self.vae is not None  # checked by _enabled
            meta: dict[str, Any] = getattr(pl_module, "cache_meta")  # noqa: B009 - AVDiffusion's, not LightningModule's
            self._decoders = load_decoders(self.codec, self.vae, pl_module.device, expect=meta)
        codec, vae = self._decoders
        pipe = AVPipeline.from_module(pl_module, codec=codec, vae=vae)
        with torch.no_grad():
            clips = pipe(prompts, duration=duration, steps=self.steps, seed=self.seed, progress=False)
        if trainer.is_global_zero:
            out = Path(trainer.log_dir or trainer.default_root_dir) / "samples" / f"step_{trainer.global_step:07d}"
            pipe.save(clips, out)
            rank_zero_info(f"SampleWriter: wrote {len(clips)} clips to {out}")


class ConditioningDiagnostics(L.Callback):
    """Logs whether the model uses its conditions (`av_model.train.diagnostics`) at each validation.

    The first `max_clips` validation clips (the validation loader's order is fixed, so the same clips
    every time) are kept as they pass; right after the validation batch that completes them (or
    after the last batch), while validation still holds the weights it evaluates (the EMA's when
    that callback is on), the losses with own and wrong conditions are measured under the trainer's
    precision context and the gaps logged: `diag/v2a_gap@t0.9`, `diag/a2v_gap@t0.6`,
    `diag/text_gap_audio@t0.6`, `diag/text_gap_video@t0.6`, and the grid means `diag/v2a_gap`, ...
    Under data parallelism each rank measures its own clips and the logged value is their mean.

    Args:
        config: clips, noise levels, frequency and seed (`model.diagnostics`).
    """

    def __init__(self, config: Any = None) -> None:
        from av_model.train.diagnostics import DiagnosticsConfig

        self.config = config if isinstance(config, DiagnosticsConfig) else DiagnosticsConfig(**(config or {}))
        self._validations = 0
        self._clips: list[dict[str, Any]] = []
        self._done = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.strategies import ModelParallelStrategy

        if self.config.enabled and isinstance(trainer.strategy, ModelParallelStrategy) and trainer.world_size > 1:
            # Ranks would measure different clip batches and wait for each other's sharded forwards.
            raise ValueError("conditioning diagnostics do not run under the sharded ModelParallelStrategy; set "
                             "`model.diagnostics.enabled: false` and measure checkpoints with `avgen diagnose`.")

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.config.enabled:
            self._done = True
            return
        self._validations += 1
        self._clips = []
        self._done = (self._validations - 1) % self.config.every_n_validations != 0

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._done:
            return
        for i in range(len(batch["id"])):
            if len(self._clips) >= self.config.max_clips:
                break
            # Single-clip CPU copies: validation batches may be of several buckets (shapes).
            self._clips.append({"id": [batch["id"][i]], "caption": [batch["caption"][i]],
                                "video": batch["video"][i: i + 1].detach().cpu(),
                                "audio": batch["audio"][i: i + 1].detach().cpu(),
                                "text": batch["text"].index(i).to("cpu")})
        last = batch_idx + 1 >= _num_batches(trainer, dataloader_idx)
        if len(self._clips) >= self.config.max_clips or last:
            self._run(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._done and self._clips:  # a loader whose length was unknown
            self._run(trainer, pl_module)

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from av_model.train.diagnostics import batches_from_clips, log_metrics, measure, summarize

        self._done = True
        batches, left_out = batches_from_clips(self._clips)
        self._clips = []
        if not batches:
            rank_zero_info(f"ConditioningDiagnostics: no two validation clips share latent shapes (left out "
                           f"{left_out}); nothing measured.")
            return
        cfg = self.config
        model: Any = getattr(pl_module, "model", pl_module)
        start = time.perf_counter()
        losses = measure(model, batches, float(getattr(pl_module, "video_rate")),  # noqa: B009 - AVDiffusion's
                         float(getattr(pl_module, "audio_rate")), cfg.t, seed=cfg.seed,  # noqa: B009
                         autocast=trainer.precision_plugin.forward_context)
        metrics = log_metrics(summarize(losses, n_boot=cfg.n_boot, seed=cfg.seed))
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(losses.clip_ids))
        rank_zero_info(f"ConditioningDiagnostics: {len(losses.clip_ids)} clips in {time.perf_counter() - start:.1f} s; "
                       + ", ".join(f"{k.removeprefix('diag/')} {v:+.4f}" for k, v in metrics.items() if "@" not in k))


def _num_batches(trainer: L.Trainer, dataloader_idx: int) -> float:
    counts = trainer.num_val_batches
    if isinstance(counts, list | tuple):
        return float(counts[dataloader_idx]) if dataloader_idx < len(counts) else math.inf
    return float(counts)

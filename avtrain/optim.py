"""The one optimizer and learning-rate schedule config of every trainer (codec, autoencoder, generator, distillation).

All of them train with AdamW (Adam is AdamW with `weight_decay: 0`) and one learning-rate curve:

    factor(step) = warm-up over `warmup_steps`, then `schedule` over `decay_steps`

- warm-up: linear from `warmup_start_factor` to 1 (step 0 trains at `lr * warmup_start_factor`);
  with `warmup_start_factor: null`, `(step + 1) / warmup_steps`, so the first step already moves;
- "cosine": half a cosine from 1 down to `min_lr_ratio`, then flat; "constant": 1;
- `decay_steps: null` decays until the trainer's last step (`trainer.max_steps`); an unbounded run
  (no `max_steps`) stays at 1 after the warm-up.

Each component keeps its own defaults (an instance of this class in its LightningModule's
signature, e.g. the GAN trainers' Adam betas (0.5, 0.9)); a YAML section overrides fields of it.
The generators step the curve through `schedule_for` (a torch scheduler, saved in checkpoints); the
GAN trainers, which step their optimizers by hand, set their learning rates with `set_lrs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["OptimConfig", "ScheduleLR", "adamw", "schedule_for"]

Schedule = Literal["cosine", "constant"]


@dataclass
class OptimConfig:
    """AdamW and its learning-rate curve (the `model.optimizer` section of a trainer's config).

    Attributes:
        lr: peak learning rate.
        betas: AdamW betas.
        eps: AdamW epsilon.
        weight_decay: decoupled weight decay (the generators exempt biases, norms and embeddings).
        warmup_steps: optimizer steps of linear warm-up.
        warmup_start_factor: learning-rate factor at step 0; null: `(step + 1) / warmup_steps`.
        schedule: "cosine" (to `lr * min_lr_ratio`) or "constant" after the warm-up.
        decay_steps: length of the cosine after the warm-up; null: to the trainer's last step.
        min_lr_ratio: where the cosine ends, as a fraction of `lr`.
        grad_clip: clip the gradient norm to this (0: off). Trainers that step by hand (the GAN
            trainers) clip each network; the generators use it when `trainer.gradient_clip_val` is unset.
        fused: fused AdamW kernel; null: on CUDA.
        disc_lr: learning rate of a discriminator; null: `lr`.
        disc_betas: Adam betas of a discriminator; null: `betas`.
        disc_follows_schedule: a discriminator's learning rate follows the curve too (else constant).
    """

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_steps: int = 100
    warmup_start_factor: float | None = 0.01
    schedule: Schedule = "cosine"
    decay_steps: int | None = None
    min_lr_ratio: float = 0.1
    grad_clip: float = 0.0
    fused: bool | None = None
    disc_lr: float | None = None
    disc_betas: tuple[float, float] | None = None
    disc_follows_schedule: bool = True

    def __post_init__(self) -> None:
        self.betas = _betas(self.betas, "betas")
        if self.disc_betas is not None:
            self.disc_betas = _betas(self.disc_betas, "disc_betas")
        if not self.lr > 0:
            raise ValueError(f"optimizer.lr must be > 0; got {self.lr}.")
        if self.disc_lr is not None and not self.disc_lr > 0:
            raise ValueError(f"optimizer.disc_lr must be > 0 or null (= lr); got {self.disc_lr}.")
        if self.weight_decay < 0 or not self.eps > 0 or self.grad_clip < 0:
            raise ValueError(f"need weight_decay >= 0, eps > 0 and grad_clip >= 0; got {self.weight_decay}, "
                             f"{self.eps}, {self.grad_clip}.")
        if self.warmup_steps < 0:
            raise ValueError(f"optimizer.warmup_steps must be >= 0; got {self.warmup_steps}.")
        if self.warmup_start_factor is not None and not 0.0 < self.warmup_start_factor <= 1.0:
            raise ValueError(f"optimizer.warmup_start_factor must be in (0, 1] or null; got {self.warmup_start_factor}.")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optimizer.schedule must be 'cosine' or 'constant'; got {self.schedule!r}.")
        if self.decay_steps is not None and self.decay_steps < 1:
            raise ValueError(f"optimizer.decay_steps must be >= 1 or null; got {self.decay_steps}.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optimizer.min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio}.")

    @property
    def discriminator_lr(self) -> float:
        return self.disc_lr if self.disc_lr is not None else self.lr

    @property
    def discriminator_betas(self) -> tuple[float, float]:
        return self.disc_betas if self.disc_betas is not None else self.betas

    def lr_factor(self, step: int, total_steps: int | None = None) -> float:
        """The learning rate at optimizer step `step` as a fraction of the peak, for a run of
        `total_steps` steps (None or <= 0: unbounded)."""
        warm = self.warmup_steps
        if step < warm:
            if self.warmup_start_factor is None:
                return (step + 1) / warm
            return self.warmup_start_factor + (1.0 - self.warmup_start_factor) * step / warm
        if self.schedule == "constant":
            return 1.0
        length = self.decay_steps
        if length is None:
            if not total_steps or total_steps <= warm:
                return 1.0
            length = total_steps - warm
        progress = min(step - warm, length) / length
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def set_lrs(self, step: int, total_steps: int | None, opt: Any, disc_opt: Any = None) -> None:
        """For trainers that step by hand: set `opt`'s learning rate (and a discriminator's, when it
        follows the schedule) for optimizer step `step`; torch optimizers or Lightning's wrappers of
        them. From the configured peaks (so a checkpoint
        whose optimizer state predates `initial_lr` resumes on the same curve)."""
        factor = self.lr_factor(step, total_steps)
        pairs = [(opt, self.lr)]
        if disc_opt is not None and self.disc_follows_schedule:
            pairs.append((disc_opt, self.discriminator_lr))
        for o, peak in pairs:
            for group in o.param_groups:
                group["lr"] = peak * factor


def _betas(value: Any, name: str) -> tuple[float, float]:
    pair = tuple(float(b) for b in value)
    if len(pair) != 2 or not all(0.0 <= b < 1.0 for b in pair):
        raise ValueError(f"optimizer.{name} must be two numbers in [0, 1); got {value!r}.")
    return (pair[0], pair[1])


def adamw(params: Iterable[Any], cfg: OptimConfig, *, device: torch.device | None = None,
          discriminator: bool = False) -> torch.optim.AdamW:
    """AdamW over `params` (tensors or param-group dicts) with `cfg`'s settings (the discriminator's
    learning rate and betas with `discriminator=True`). Each group records its peak as `initial_lr`."""
    fused = cfg.fused if cfg.fused is not None else (device is not None and device.type == "cuda")
    lr = cfg.discriminator_lr if discriminator else cfg.lr
    betas = cfg.discriminator_betas if discriminator else cfg.betas
    opt = torch.optim.AdamW(params, lr=lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=fused)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return opt


class ScheduleLR(LambdaLR):
    """`OptimConfig.lr_factor` as a torch scheduler (each group's peak times the factor).

    The factor depends on the step alone, so the state that matters is `last_epoch`; loading reads
    that from any step-based scheduler's state (e.g. the warm-up + cosine `SequentialLR` that
    generator checkpoints written before this class hold), so older runs resume on the same curve.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        if "lr_lambdas" in state and "_schedulers" not in state:
            super().load_state_dict(state)
            return
        self.last_epoch = int(state["last_epoch"])
        self._step_count = int(state.get("_step_count", self.last_epoch + 1))
        if "_last_lr" in state:
            self._last_lr = list(state["_last_lr"])


def schedule_for(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int | None) -> ScheduleLR:
    """The scheduler that steps `opt` along `cfg`'s curve for a run of `total_steps` optimizer steps."""
    return ScheduleLR(opt, partial(cfg.lr_factor, total_steps=total_steps))

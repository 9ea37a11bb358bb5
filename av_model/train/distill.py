"""Few-step students of a trained generator: guided trajectory distillation for both modalities at once.

Method (`avgen distill`, issue 25). The student is the teacher's network, initialised from the
teacher's weights, trained to take the *same* step the guided teacher takes over a whole interval
of the student's coarse time grid:

    grid       t_0 = 1 > t_1 > ... > t_K = 0        (K = 4 or 8; the sampler's shifted grid)
    start      x_t = (1 - t_i) x_0 + t_i eps         (x_0 from the latent cache, t_i a grid point)
    teacher    n = teacher_steps / K guided ODE sub-steps from t_i to t_{i+1}  ->  x'
    target     u = (x' - x_t) / (t_{i+1} - t_i)      (the teacher's average guided velocity)
    loss       w_v |v_student(x_t, t_i) - u_v|^2 + w_a |v_student(x_t, t_i) - u_a|^2

so one student Euler step from t_i lands where the teacher's n guided steps land. This is
progressive distillation (Salimans & Ho, 2022) collapsed into one stage, with classifier-free
guidance distilled in as in guided distillation (Meng et al., 2023), and it is the "average
velocity over an interval" target of shortcut models / MeanFlow written for a fixed grid.

Why this and not the others, on this project's constraints:
  * It trains in few steps from the teacher's weights: at initialisation the student *is* the
    teacher (the target differs only by guidance and by the curvature of the path inside an
    interval), so a few hundred updates move it, where consistency distillation (LCM) needs a
    target network and many more updates and DMD needs a second "fake score" network plus a GAN-like
    two-model loop (double the memory; a poor fit for the CPU profile).
  * The start points x_t come from the same latent cache the teacher trained on: for flow matching
    the marginals of the teacher's ODE are the forward-noised data, so no rollouts from pure noise
    are needed (they would cost K times the teacher calls per update); t_0 = 1 is pure noise anyway.
  * Both modalities are handled as the sampler handles them: one clock for video and audio, the
    teacher guided with its own scale per modality, one loss per modality with its own weight.
  * One student serves several step counts (`student_steps: [4, 8]`): each update draws a grid.

Guidance is *fixed at distillation* (folded in), not a student input: the student is trained at
`guidance_video`/`guidance_audio` and samples with guidance 1 (one model call per step, no
unconditional pass). Making the scales inputs would need a guidance embedding the teacher lacks
(new weights that start from nothing); folding keeps the student exactly the teacher's architecture,
so `avgen sample`, LoRA, diagnostics and the pipeline read it as any generator. The scales used are
stored in the checkpoint (`avgen.distill`), with the teacher's path and hash.

Only text-to-audio-video (both modalities noisy) is distilled; the conditioning tasks (v2a, a2v,
extend, ...) still run with the student but are not its target (use the teacher for them).

Shapes (legend): B batch, C channels, T_v/T_a latent frames, H/W latent size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from av_model.cache.format import LatentSpec
from av_model.dit.model import AVDiT
from av_model.dit.params import count_params
from av_model.flow.matching import num_tokens
from av_model.flow.sampling import SamplerConfig
from av_model.sample.generator_file import CHECKPOINT_KEY, load_generator
from av_model.text.batch import TextBatch
from avtrain.optim import OptimConfig, adamw, schedule_for

__all__ = ["AVDistillation", "DistillConfig", "DistillLoss", "teacher_target"]


@dataclass
class DistillConfig:
    """What the student learns from the teacher.

    Attributes:
        student_steps: the step counts the student is trained for (each update draws one); the first
            is the student's default number of steps in `avgen sample`.
        teacher_steps: guided teacher steps over the whole trajectory; each student interval gets
            `ceil(teacher_steps / K)` of them (32 gives 8 per interval at K = 4, 4 at K = 8).
        teacher_solver: "euler" or "heun" for the teacher's sub-steps (heun: twice the calls).
        guidance_video, guidance_audio: the teacher's classifier-free guidance scales, folded into
            the student (it samples with guidance 1).
        shift: fixed shift of the student's time grid; None uses the token-count rule (the
            sampler's), so the grid trained on is the one `avgen sample` uses.
        shift_base_tokens, shift_exponent: that rule (`SamplerConfig`).
        video_weight, audio_weight: loss weights per modality.
    """

    student_steps: list[int] = field(default_factory=lambda: [4, 8])
    teacher_steps: int = 32
    teacher_solver: str = "euler"
    guidance_video: float = 3.0
    guidance_audio: float = 3.0
    shift: float | None = None
    shift_base_tokens: int = 256
    shift_exponent: float = 0.5
    video_weight: float = 1.0
    audio_weight: float = 1.0

    def __post_init__(self) -> None:
        self.student_steps = [int(s) for s in self.student_steps]
        if not self.student_steps or min(self.student_steps) < 1:
            raise ValueError(f"distill.student_steps must be a non-empty list of step counts >= 1; got "
                             f"{self.student_steps}.")
        if self.teacher_steps < max(self.student_steps):
            raise ValueError(f"distill.teacher_steps ({self.teacher_steps}) must be at least the largest student step "
                             f"count ({max(self.student_steps)}): the teacher takes several steps per student step.")
        if self.teacher_solver not in ("euler", "heun"):
            raise ValueError(f"distill.teacher_solver must be 'euler' or 'heun'; got {self.teacher_solver!r}.")
        if self.guidance_video < 0 or self.guidance_audio < 0:
            raise ValueError(f"distill guidance scales must be >= 0 (1 = none); got {self.guidance_video}, "
                             f"{self.guidance_audio}.")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"distill.shift must be > 0 or null; got {self.shift}.")
        if self.video_weight < 0 or self.audio_weight < 0 or self.video_weight + self.audio_weight == 0:
            raise ValueError(f"distill loss weights must be >= 0 and not both 0; got {self.video_weight}, "
                             f"{self.audio_weight}.")

    def grid(self, steps: int) -> SamplerConfig:
        """The sampler config of a `steps`-step student: its time grid is the one trained on."""
        return SamplerConfig(steps=steps, solver="euler", guidance_video=1.0, guidance_audio=1.0, shift=self.shift,
                             shift_base_tokens=self.shift_base_tokens, shift_exponent=self.shift_exponent)

    def sub_steps(self, steps: int) -> int:
        return math.ceil(self.teacher_steps / steps)


@dataclass
class DistillLoss:
    """One distillation step's loss.

    Attributes:
        loss: scalar to backpropagate (weighted modality losses plus the student's MoE losses).
        video_loss, audio_loss: mean squared error of the student's velocity against the teacher's
            average guided velocity over the interval.
        steps: the student step count drawn for this batch.
        t: (B,) start time of each sample's interval.
        aux: the student's MoE auxiliary losses.
    """

    loss: Tensor
    video_loss: Tensor
    audio_loss: Tensor
    steps: int
    t: Tensor
    aux: dict[str, Tensor]


def _guided_velocity(teacher: nn.Module, xv: Tensor, xa: Tensor, t_B: Tensor, text: TextBatch, null: TextBatch | None,
                     cfg: DistillConfig, video_rate: float, audio_rate: float) -> tuple[Tensor, Tensor]:
    """The teacher's velocity with per-modality guidance (one batch of 2B when guided)."""
    if null is None:
        out = teacher(xv, xa, t_B, t_B, text, video_rate, audio_rate)
        return out.video.float(), out.audio.float()
    out = teacher(torch.cat([xv, xv]), torch.cat([xa, xa]), torch.cat([t_B, t_B]), torch.cat([t_B, t_B]),
                  TextBatch.cat([text, null]), video_rate, audio_rate)
    (vc, vu), (ac, au) = out.video.float().chunk(2), out.audio.float().chunk(2)
    return vu + cfg.guidance_video * (vc - vu), au + cfg.guidance_audio * (ac - au)


@torch.no_grad()
def teacher_target(teacher: nn.Module, xv: Tensor, xa: Tensor, t_B: Tensor, t_next_B: Tensor, text: TextBatch,
                   cfg: DistillConfig, sub_steps: int, video_rate: float, audio_rate: float) -> tuple[Tensor, Tensor]:
    """The teacher's average guided velocity from t to t_next, in `sub_steps` ODE steps.

    Args:
        xv, xa: (B, C_v, T_v, H, W), (B, C_a, T_a) latents at time t_B.
        t_B, t_next_B: (B,) start and end time of each sample's interval (t_next < t).

    Returns:
        (B, C_v, T_v, H, W), (B, C_a, T_a) float32: (x_teacher(t_next) - x(t)) / (t_next - t).
    """
    guided = cfg.guidance_video != 1.0 or cfg.guidance_audio != 1.0
    null = text.null_like() if guided else None
    x_v, x_a = xv.float(), xa.float()
    view_v, view_a = (-1, 1, 1, 1, 1), (-1, 1, 1)
    for j in range(sub_steps):
        s = t_B + (t_next_B - t_B) * (j / sub_steps)  # (B,)
        s2 = t_B + (t_next_B - t_B) * ((j + 1) / sub_steps)
        dt = s2 - s
        dv, da = _guided_velocity(teacher, x_v.to(xv.dtype), x_a.to(xa.dtype), s, text, null, cfg, video_rate,
                                  audio_rate)
        nv, na = x_v + dt.view(view_v) * dv, x_a + dt.view(view_a) * da
        if cfg.teacher_solver == "heun" and bool((s2 > 0).all()):
            dv2, da2 = _guided_velocity(teacher, nv.to(xv.dtype), na.to(xa.dtype), s2, text, null, cfg, video_rate,
                                        audio_rate)
            nv = x_v + dt.view(view_v) * 0.5 * (dv + dv2)
            na = x_a + dt.view(view_a) * 0.5 * (da + da2)
        x_v, x_a = nv, na
    span = t_next_B - t_B  # (B,), negative
    return (x_v - xv.float()) / span.view(view_v), (x_a - xa.float()) / span.view(view_a)


class _Frozen:
    """Holds the teacher outside the module tree: not in the state dict (the student checkpoint stays
    the student's size), not averaged by EMA, and shared, not copied, when EMA deep-copies the module."""

    def __init__(self, model: AVDiT) -> None:
        self.model = model

    def __deepcopy__(self, memo: dict[int, Any]) -> _Frozen:
        return self


def _step_seed(*parts: int) -> int:
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def load_teacher(path: str | None) -> Any:
    """The teacher's `GeneratorBundle`, with errors that say what to pass."""
    if path is None or not str(path).strip():
        raise ValueError("model.teacher is required: the teacher generator's checkpoint (final.ckpt of `avgen fit`, "
                         "or an exported generator), e.g. --model.teacher runs/dit/tiny_moe/final.ckpt.")
    if not Path(path).exists():
        raise FileNotFoundError(f"model.teacher {path} does not exist; give the teacher's final.ckpt (written by "
                                "`avgen fit` in its trainer.default_root_dir).")
    return load_generator(path, map_location="cpu")


def check_same_cache(teacher_meta: dict[str, Any], cache_meta: dict[str, Any], teacher: str) -> None:
    """Refuse a cache other than the one the teacher trained on (other encoders or geometry)."""
    want, have = LatentSpec.from_meta(teacher_meta), LatentSpec.from_meta(cache_meta)
    diffs = [name for name in ("codec", "vae", "text") if want.fingerprint(name) != have.fingerprint(name)]
    for name in ("video_latent_dim", "audio_latent_dim", "video_rate", "audio_rate", "text_dims", "size"):
        if getattr(want, name) != getattr(have, name):
            diffs.append(f"{name} ({getattr(want, name)} vs {getattr(have, name)})")
    if diffs:
        raise ValueError(f"the latent cache differs from the one the teacher {teacher} was trained on: "
                         f"{', '.join(diffs)}. Distil on the teacher's own cache (its data.cache_dir).")


class AVDistillation(L.LightningModule):
    """Trains a few-step student of a generator by guided trajectory distillation (module docstring).

    The student (`self.model`) starts as a copy of the teacher's weights; the teacher is frozen and
    kept out of the checkpoint. A checkpoint of this module is a generator file: `avgen sample
    --ckpt` reads it, with the student's step count, Euler and guidance 1 as its sampler defaults.

    Args:
        teacher: the teacher's checkpoint (`avgen fit` final.ckpt or an exported generator).
        distill: the distillation settings (`DistillConfig`).
        optimizer: AdamW and schedule (`avtrain.optim.OptimConfig`; a lower lr than training).
        seed: seed of the noise, intervals and step counts drawn.
        cache_meta: the latent cache's metadata (linked from the data module by the CLI).
    """

    def __init__(
        self,
        teacher: str | None = None,
        distill: DistillConfig | None = None,
        optimizer: OptimConfig | None = None,
        seed: int = 0,
        cache_meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if cache_meta is None:
            raise ValueError("AVDistillation needs cache_meta (the latent cache's metadata); the CLI links it from "
                             "`data.cache_dir`; in Python pass `LatentDataModule(...).meta_dict`.")
        distill = distill if isinstance(distill, DistillConfig) else DistillConfig(**(distill or {}))
        optimizer = optimizer if isinstance(optimizer, OptimConfig) else OptimConfig(**(optimizer or {}))
        bundle = load_teacher(teacher)
        check_same_cache(bundle.cache_meta, cache_meta, str(teacher))
        self.save_hyperparameters()
        self.hparams["distill"], self.hparams["optimizer"] = asdict(distill), asdict(optimizer)
        self.distill_config, self.optim_config = distill, optimizer
        self.teacher_path, self.teacher_sha256 = str(teacher), bundle.sha256
        self._teacher = _Frozen(bundle.model.eval().requires_grad_(False))
        # 1. The student: the teacher's architecture and weights (a LoRA teacher comes merged).
        self.dit_config = bundle.model.cfg
        self.model = AVDiT(self.dit_config)
        self.model.load_state_dict(bundle.model.state_dict())
        self.cache_meta = cache_meta
        spec = LatentSpec.from_meta(cache_meta)
        self.video_rate, self.audio_rate = spec.video_rate, spec.audio_rate
        # What `avgen sample` and the SampleWriter use: K steps of Euler, guidance folded in.
        self.sampler_config = distill.grid(distill.student_steps[0])
        self.lora_config = None  # read by the CLI's after_fit (no adapters here)
        self.loss_terms: dict[str, Tensor] = {}
        self.flops_per_batch = 0

    @property
    def teacher(self) -> AVDiT:
        return self._teacher.model

    def on_fit_start(self) -> None:
        self.teacher.to(self.device)

    def on_validation_start(self) -> None:
        self.teacher.to(self.device)

    # ------------------------------------------------------------------------------- counting
    def tokens_in_batch(self, batch: dict[str, Any]) -> int:
        lay = self.model.layout(tuple(batch["video"].shape), tuple(batch["audio"].shape), self.video_rate,
                                self.audio_rate)
        return int(batch["video"].shape[0] * lay.num_tokens)

    def _flops(self, batch: dict[str, Any], steps: int) -> int:
        """Student forward + backward plus the teacher's forward passes (a third of a training step each)."""
        b = int(batch["video"].shape[0])
        n = self.tokens_in_batch(batch) // b
        text_len = sum(int(e.shape[1]) for e in batch["text"].embeddings)
        per_token = count_params(self.dit_config, seq_len=n, text_len=text_len).flops_per_token
        cfg = self.distill_config
        calls = cfg.sub_steps(steps) * (2 if cfg.teacher_solver == "heun" else 1)
        calls *= 2 if (cfg.guidance_video != 1.0 or cfg.guidance_audio != 1.0) else 1
        return int(b * n * per_token * (1 + calls / 3))

    # ---------------------------------------------------------------------------------- steps
    def distill_loss(self, video: Tensor, audio: Tensor, text: TextBatch, generator: torch.Generator) -> DistillLoss:
        """The student's error against the teacher's average guided velocity (module docstring).

        Args:
            video: (B, C_v, T_v, H, W) clean normalized video latents.
            audio: (B, C_a, T_a) clean normalized audio latents.
            text: B samples of text conditioning (never dropped: the student is always conditional).
            generator: CPU generator of the step count, intervals and noise.
        """
        cfg = self.distill_config
        b, dev = video.shape[0], video.device
        # 1. A step count, and an interval of its grid per sample.
        steps = cfg.student_steps[int(torch.randint(len(cfg.student_steps), (1,), generator=generator))]
        n_tok = num_tokens(self.model, video.shape, audio.shape, self.video_rate, self.audio_rate)
        grid = cfg.grid(steps).time_grid(n_tok)  # (K + 1,) from 1 to 0
        i = torch.randint(steps, (b,), generator=generator)
        t, t_next = grid[i].to(dev), grid[i + 1].to(dev)  # (B,), (B,)
        # 2. Start points on the data's noise path (the teacher ODE's marginals).
        eps_v = torch.randn(video.shape, generator=generator).to(dev, video.dtype)
        eps_a = torch.randn(audio.shape, generator=generator).to(dev, audio.dtype)
        xt_v = video + t.view(-1, 1, 1, 1, 1).to(video.dtype) * (eps_v - video)  # (B, C_v, T_v, H, W)
        xt_a = audio + t.view(-1, 1, 1).to(audio.dtype) * (eps_a - audio)  # (B, C_a, T_a)
        # 3. The guided teacher's average velocity over the interval.
        self.teacher.eval()
        u_v, u_a = teacher_target(self.teacher, xt_v, xt_a, t, t_next, text, cfg, cfg.sub_steps(steps),
                                  self.video_rate, self.audio_rate)
        # 4. The student's one step from the same point.
        out = self.model(xt_v, xt_a, t, t, text, self.video_rate, self.audio_rate)
        video_loss = (out.video.float() - u_v).square().mean()
        audio_loss = (out.audio.float() - u_a).square().mean()
        aux = dict(out.aux.losses)
        loss = cfg.video_weight * video_loss + cfg.audio_weight * audio_loss
        loss = loss + sum(aux.values(), torch.zeros((), device=dev))
        return DistillLoss(loss=loss, video_loss=video_loss, audio_loss=audio_loss, steps=steps, t=t, aux=aux)

    def _generator(self, *stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(_step_seed(self.hparams["seed"], *stream))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        micro = batch_idx % self.trainer.accumulate_grad_batches
        out = self.distill_loss(batch["video"], batch["audio"], batch["text"],
                                self._generator(0, self.global_step, micro, self.global_rank))
        self.flops_per_batch = self._flops(batch, out.steps)
        b = batch["video"].shape[0]
        terms = {"train/loss": out.loss.detach(), "train/loss_video": out.video_loss.detach(),
                 "train/loss_audio": out.audio_loss.detach(), **{f"train/{k}": v.detach() for k, v in out.aux.items()}}
        self.loss_terms = terms
        self.log("train/loss", terms["train/loss"], prog_bar=True, batch_size=b)
        self.log_dict({k: v for k, v in terms.items() if k != "train/loss"}, batch_size=b)
        self.log(f"train/loss_k{out.steps}", out.loss.detach(), batch_size=b)
        return out.loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        # Fixed noise and intervals per batch: successive validations differ only by the weights.
        out = self.distill_loss(batch["video"], batch["audio"], batch["text"],
                                self._generator(1, batch_idx, self.global_rank))
        b = batch["video"].shape[0]
        self.log_dict({"val/loss": out.loss, "val/loss_video": out.video_loss, "val/loss_audio": out.audio_loss},
                      on_epoch=True, sync_dist=True, batch_size=b)
        return out.loss

    # ------------------------------------------------------------------------- optimization
    def configure_optimizers(self) -> Any:
        cfg = self.optim_config
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        opt = adamw([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                    cfg, device=self.device)
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else None
        scheduler = schedule_for(opt, cfg, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self) -> list[L.Callback]:
        from av_model.train.callbacks import RouterBiasUpdate

        if self.dit_config.num_experts > 1 and self.dit_config.balance == "bias":
            return [RouterBiasUpdate()]
        return []

    # -------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What `load_generator` needs (as `AVDiffusion` writes it), plus where the student came from.
        checkpoint[CHECKPOINT_KEY] = {
            "dit_config": self.dit_config.to_dict(), "cache_meta": self.cache_meta,
            "sampler": asdict(self.sampler_config),
            "distill": {"teacher": self.teacher_path, "teacher_sha256": self.teacher_sha256,
                        **asdict(self.distill_config)},
        }

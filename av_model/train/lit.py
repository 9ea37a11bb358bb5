"""`AVDiffusion`: the LightningModule that trains the audio-video diffusion transformer on cached latents.

It holds the training step and the optimizer; the model (`AVDiT`) is plain PyTorch, the noise
path and loss live in `FlowMatching`, and parallelism is applied from `av_model.train.parallel`.

Reproducibility: the flow noise of each micro-batch comes from a generator seeded by
`(seed, global_step, place of the micro-batch in the step's global batch)`, so a resumed run draws
exactly the noise an uninterrupted run would have drawn (Lightning does not restore global RNG
states), and N data-parallel ranks draw what one process accumulating N micro-batches draws.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import grad_norm

from av_model.cache.format import LatentSpec
from av_model.dit.config import DiTConfig, get_preset
from av_model.dit.lora import LoRAConfig, apply_lora
from av_model.dit.model import AVDiT
from av_model.dit.params import count_params
from av_model.flow.matching import FlowConfig, FlowMatching
from av_model.flow.sampling import SamplerConfig
from av_model.sample.generator_file import CHECKPOINT_KEY, load_generator, read_generator_weights
from av_model.train.diagnostics import DiagnosticsConfig
from av_model.train.expert_parallel import clip_grads_with_norm_, split_by_layout, total_norm
from av_model.train.finetune import (
    InitReport,
    ParamGroupConfig,
    assign_groups,
    file_exists,
    freeze_parameters,
    load_init_weights,
)
from av_model.train.meta_init import InitPlan, build_on_meta, has_meta_parameters, materialize_and_initialize
from av_model.train.parallel import ParallelConfig, apply_parallelism
from avtrain.optim import OptimConfig, adamw, schedule_for

__all__ = ["AVDiffusion", "OptimConfig"]


def build_dit_config(preset: str, overrides: dict[str, Any] | None, spec: LatentSpec) -> DiTConfig:
    """The preset with the YAML overrides, its input widths taken from the latent cache."""
    overrides = dict(overrides or {})
    from_cache = {
        "video_channels": spec.video_latent_dim,
        "audio_channels": spec.audio_latent_dim,
        "text_dims": spec.text_dims,
    }
    for key, value in from_cache.items():
        given = overrides.get(key)
        if given is not None and (tuple(given) if isinstance(given, list | tuple) else given) != value:
            raise ValueError(
                f"model.overrides.{key}={given} contradicts the latent cache ({value}); the cache decides the "
                f"input widths, so remove the override."
            )
        overrides[key] = value
    return get_preset(preset, **overrides)


def _step_seed(*parts: int) -> int:
    """A 63-bit seed mixing `parts` (numpy's SeedSequence hashing, so nearby inputs give unrelated seeds)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


class AVDiffusion(L.LightningModule):
    """Flow-matching training of `AVDiT` on latent-cache batches (see `av_model.cache.latents`).

    Args:
        preset: DiT size preset (`av_model.dit.config.PRESETS`).
        overrides: DiTConfig fields changed from the preset (input widths come from the cache).
        flow: noise process and loss weights.
        optimizer: AdamW and learning-rate schedule.
        sampler: sampler used for sample clips at validation and as the default of `avgen sample`.
        parallel: activation checkpointing, compile, FSDP2 (applied in `configure_model`).
        seed: seed of the flow noise (the model's initial weights follow `seed_everything`).
        loss_buckets: noise-level buckets for the per-bucket loss logs.
        diagnostics: conditioning diagnostics logged at validation (`ConditioningDiagnostics`).
        cache_meta: the latent cache's metadata (linked from the data module by the CLI): latent
            widths and rates, frame geometry, encoders' fingerprints.
        init_from: start from the weights of this checkpoint (`avgen fit` or exported), weights only:
            the optimizer, schedule and step start fresh. Shapes and names are checked
            (`av_model.train.finetune.load_init_weights`).
        init_skip: weight-name prefixes not taken from `init_from` (they keep their fresh
            initialization), e.g. ["audio_in.", "audio_out."] for a new audio codec.
        freeze: glob patterns of weight names that do not train (`blocks.*.attn.*`).
        param_groups: groups of weights with their own learning rate (`ParamGroupConfig`).
        lora: train low-rank adapters instead of the weights (`av_model.dit.lora.LoRAConfig`); every
            weight of the generator is frozen, and the adapters are saved alone after `avgen fit`.
    """

    def __init__(
        self,
        preset: str = "debug",
        overrides: dict[str, Any] | None = None,
        flow: FlowConfig | None = None,
        optimizer: OptimConfig | None = None,
        sampler: SamplerConfig | None = None,
        parallel: ParallelConfig | None = None,
        seed: int = 0,
        loss_buckets: int = 4,
        cache_meta: dict[str, Any] | None = None,
        diagnostics: DiagnosticsConfig | None = None,
        init_from: str | None = None,
        init_skip: list[str] | None = None,
        freeze: list[str] | None = None,
        param_groups: list[ParamGroupConfig] | None = None,
        lora: LoRAConfig | None = None,
    ) -> None:
        super().__init__()
        if cache_meta is None:
            raise ValueError(
                "AVDiffusion needs cache_meta (the latent cache's metadata); the CLI links it from "
                "`data.cache_dir`; in Python pass `LatentDataModule(...).meta_dict`."
            )
        if loss_buckets < 1:
            raise ValueError(f"loss_buckets must be >= 1; got {loss_buckets}.")
        flow, optimizer = _as(FlowConfig, flow), _as(OptimConfig, optimizer)
        sampler, parallel = _as(SamplerConfig, sampler), _as(ParallelConfig, parallel)
        diagnostics = _as(DiagnosticsConfig, diagnostics)
        groups = [_as(ParamGroupConfig, g) for g in param_groups or []]
        lora = _as(LoRAConfig, lora) if lora is not None else None
        if lora is not None and freeze:
            raise ValueError("model.freeze has no effect with model.lora (LoRA freezes every weight of the "
                             "generator); choose the adapted layers with lora.targets instead.")
        self.save_hyperparameters()
        # Plain dicts in the checkpoint, so it loads with `torch.load(weights_only=True)` (the default
        # of torch >= 2.6, which Lightning uses to resume) and without these classes.
        for key, value in (("flow", flow), ("optimizer", optimizer), ("sampler", sampler), ("parallel", parallel),
                           ("diagnostics", diagnostics)):
            self.hparams[key] = asdict(value)
        self.hparams["param_groups"] = [asdict(g) for g in groups] or None
        self.hparams["lora"] = asdict(lora) if lora is not None else None
        self.cache_meta = cache_meta  # kept as JSON in the checkpoint; read through `latent_spec`
        self.latent_spec = LatentSpec.from_meta(cache_meta)
        self.dit_config = build_dit_config(preset, overrides, self.latent_spec)
        parallel.check_model(self.dit_config.num_experts, self.dit_config.num_heads)
        # With meta_init the weights exist only once `configure_model` has sharded the model.
        self._init_plan: InitPlan | None = None
        self._deferred_init: tuple[str, list[str]] | None = None
        if parallel.meta_init:
            if lora is not None:
                raise ValueError("model.parallel.meta_init does not work with model.lora (the adapters wrap weights "
                                 "that do not exist yet); set meta_init: false.")
            self.model, self._init_plan = build_on_meta(lambda: AVDiT(self.dit_config))
        else:
            self.model = AVDiT(self.dit_config)
        # Fine-tuning, in this order: base weights, then what trains (docs/training.md, "Fine-tuning").
        self.init_report: InitReport | None = None
        if init_from is not None and self._init_plan is not None:
            self._deferred_init = (str(file_exists(init_from)), list(init_skip or []))
        elif init_from is not None:
            self.init_report = self._load_init(init_from, list(init_skip or []))
        elif init_skip:
            raise ValueError("model.init_skip is set but model.init_from is not; init_skip names weights not "
                             "taken from init_from.")
        self.frozen_names = freeze_parameters(self.model, list(freeze)) if freeze else []
        self.param_group_configs = groups
        self.lora_config = lora
        if lora is not None:
            apply_lora(self.model, lora)
        self.flow = FlowMatching(flow)
        self.optim_config, self.sampler_config, self.parallel_config = optimizer, sampler, parallel
        self.diagnostics_config = diagnostics
        self.video_rate, self.audio_rate = self.latent_spec.video_rate, self.latent_spec.audio_rate
        # Read by callbacks: the last step's losses (NaN guard), FLOPs (throughput), grad norm.
        self.loss_terms: dict[str, torch.Tensor] = {}
        self.flops_per_batch = 0
        self._flops_cache: dict[tuple[int, int], float] = {}
        self.last_grad_norm: torch.Tensor | None = None

    def _load_init(self, path: str, skip: list[str]) -> InitReport:
        from lightning.pytorch.utilities import rank_zero_info

        bundle = load_generator(file_exists(path))  # any generator file; a LoRA run's comes merged
        report = load_init_weights(self.model, bundle.model.state_dict(), skip, str(path), bundle.sha256)
        rank_zero_info(report.summary())
        return report

    # ------------------------------------------------------------------------------- counting
    def tokens_in_batch(self, batch: dict[str, Any]) -> int:
        """Video plus audio tokens of a batch that this rank computes (what throughput is counted in):
        with `parallel.sequence_parallel: N` each rank of a group computes 1 / N of every clip."""
        return int(batch["video"].shape[0]) * self._clip_tokens(batch) // self.parallel_config.sequence_parallel

    def _clip_tokens(self, batch: dict[str, Any]) -> int:
        lay = self.model.layout(tuple(batch["video"].shape), tuple(batch["audio"].shape), self.video_rate,
                                self.audio_rate)
        return lay.num_tokens

    def training_flops(self, batch: dict[str, Any]) -> int:
        """FLOPs of one training step on `batch` (forward + backward), from `count_params` at the
        batch's token and text lengths: active weights plus self- and cross-attention."""
        b = int(batch["video"].shape[0])
        n = self._clip_tokens(batch)
        text_len = sum(int(e.shape[1]) for e in batch["text"].embeddings)
        key = (n, text_len)
        if key not in self._flops_cache:  # count_params builds the model on the meta device: cache it
            self._flops_cache[key] = count_params(self.dit_config, seq_len=n, text_len=text_len).flops_per_token
        return int(b * n * self._flops_cache[key])

    # ---------------------------------------------------------------------------------- steps
    @property
    def data_rank(self) -> int:
        """Rank among the data-parallel replicas: the ranks of a sequence-parallel group share one
        batch, so they must also draw the same noise and flow times."""
        return self.global_rank // self.parallel_config.sequence_parallel

    def _generator(self, *stream: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(_step_seed(self.hparams["seed"], *stream))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        micro = batch_idx % self.trainer.accumulate_grad_batches
        # The batch's place in the step's global batch: the sampler deals global batches to the
        # data-parallel replicas in turn, so micro-batch m of replica r is global batch m * replicas + r.
        # Seeding the noise by that place (not by rank) gives N replicas the noise one process draws
        # with N-fold accumulation, so data-parallel runs and single-process runs of the same global
        # batch train the same model; the ranks of a sequence-parallel group share their replica's.
        replicas = self.trainer.world_size // self.parallel_config.sequence_parallel
        slot = micro * replicas + self.data_rank
        gen = self._generator(0, self.global_step, slot, 0)  # stream 0: training
        out = self.flow.loss(self.model, batch["video"], batch["audio"], batch["text"], self.video_rate,
                             self.audio_rate, generator=gen)
        # Sequence parallelism: this rank computes 1 / N of each clip's tokens.
        self.flops_per_batch = self.training_flops(batch) // self.parallel_config.sequence_parallel
        terms = {
            "train/loss": out.loss.detach(),
            "train/loss_video": out.video_loss.detach(),
            "train/loss_audio": out.audio_loss.detach(),
            **{f"train/{k}": v.detach() for k, v in out.aux.losses.items()},
        }
        self.loss_terms = terms
        b = batch["video"].shape[0]
        self.log("train/loss", terms.pop("train/loss"), prog_bar=True, batch_size=b)
        self.log_dict(terms, batch_size=b)
        if self._logging_step():
            self._log_details(out)
        return out.loss

    def _logging_step(self) -> bool:
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 50)))  # set by Lightning's logger connector
        return (self.global_step + 1) % every == 0 or self.global_step == 0

    def _log_details(self, out: Any) -> None:
        """Loss per noise-level bucket and expert load per modality (host syncs: only on logging steps)."""
        details = {}
        for key, value in out.by_t_bucket(self.hparams["loss_buckets"]).items():
            if not math.isnan(float(value)):  # empty bucket in this batch
                details[f"loss_by_t/{key}"] = value
        stats = out.aux.stats
        if self.dit_config.num_experts > 1:
            # Per modality and per noise-level bucket: whether experts specialise by either.
            groups = [(m, f"moe/load_{m}") for m in ("video", "audio")]
            groups += [(f"t{q}", f"moe/load_t{q}") for q in range(self.dit_config.num_t_buckets)
                       if f"moe/load_t{q}" in stats]
            for name, key in groups:
                load = stats[key]  # (layers, E), rows sum to 1 (all zero for a bucket with no token)
                details[f"moe/imbalance_{name}"] = (load.amax(-1) * load.shape[-1]).mean()
                if load.shape[-1] <= 16:
                    for e, share in enumerate(load.mean(0)):
                        details[f"moe_load_{name}/expert_{e:02d}"] = share
            details["moe/imbalance"] = stats["moe/imbalance"]
        self.log_dict(details, on_step=True, on_epoch=False)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # Fixed noise per batch: validation numbers of successive runs differ only by the weights.
        gen = self._generator(1, batch_idx, self.data_rank)  # stream 1: validation
        out = self.flow.loss(self.model, batch["video"], batch["audio"], batch["text"], self.video_rate,
                             self.audio_rate, generator=gen)
        b = batch["video"].shape[0]
        self.log_dict({"val/loss": out.flow_loss, "val/loss_video": out.video_loss, "val/loss_audio": out.audio_loss},
                      on_epoch=True, sync_dist=True, batch_size=b, prog_bar=False)
        return out.flow_loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        # One fused kernel per layout and no host sync (the NaN guard and the logger read it later);
        # works on the DTensor gradients of FSDP2 and on expert parallelism's mix of meshes too.
        self.last_grad_norm = total_norm(grads, 2.0)
        self.log("train/grad_norm", self.last_grad_norm)
        if self._logging_step() and not _is_sharded(grads):
            # Per-module norms from Lightning's grad_norm, summed per block for a readable log.
            per_param = grad_norm(self.model, norm_type=2)
            groups: dict[str, float] = defaultdict(float)
            for name, value in per_param.items():
                if name.endswith("_total"):
                    continue
                parts = name.split("/", 1)[-1].split(".")
                key = ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]
                groups[key] += float(value) ** 2
            self.log_dict({f"grad_norm/{k}": math.sqrt(v) for k, v in groups.items()}, on_step=True, on_epoch=False)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by the Trainer's `gradient_clip_val` (else `optimizer.grad_clip`), reusing the norm
        computed before the step.

        Lightning's mixed-precision plugin refuses to clip for fused optimizers because of fp16 loss
        scaling; bf16 has no scaling, so the gradients can be clipped here directly (fp16 keeps
        Lightning's path).
        """
        gradient_clip_val = gradient_clip_val or self.optim_config.grad_clip
        if not gradient_clip_val:
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None or gradient_clip_algorithm not in (None, "norm") or self.last_grad_norm is None:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        clip_grads_with_norm_(params, gradient_clip_val, self.last_grad_norm)

    # ------------------------------------------------------------------------- optimization
    def configure_optimizers(self) -> Any:
        cfg = self.optim_config
        # Trainable weights by their `AVDiT` names (what `freeze` and `param_groups` patterns match).
        named = [(n.removeprefix("model."), p) for n, p in self.named_parameters() if p.requires_grad]
        settings = {g.name: g for g in self.param_group_configs}
        param_groups: list[dict[str, Any]] = []
        for group, pairs in assign_groups(named, self.param_group_configs).items():
            decay: list[torch.nn.Parameter] = []
            no_decay: list[torch.nn.Parameter] = []
            for name, p in pairs:
                # Matrices decay; biases, norms, embeddings and router offsets do not (they set scales
                # and offsets whose size is meaningful, not capacity to regularize).
                leaf = name.rsplit(".", 1)[-1]
                (no_decay if p.ndim < 2 or "modality" in leaf or leaf.startswith("router_bias") else decay).append(p)
            own = settings.get(group)
            lr = own.lr if own is not None and own.lr is not None else cfg.lr
            wd = own.weight_decay if own is not None and own.weight_decay is not None else cfg.weight_decay
            if group == "default" or decay:  # the default pair always exists: old checkpoints' optimizer state fits
                param_groups.append({"params": decay, "weight_decay": wd, "lr": lr, "name": group})
            if group == "default" or no_decay:
                param_groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr, "name": f"{group}/no_decay"})
        # Configured groups first, the default pair last; without groups it is [decay, no_decay] as before.
        # Under expert parallelism weights live on several meshes: one layout per group for foreach/fused.
        opt = adamw(split_by_layout(param_groups), cfg, device=self.device)
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else None
        # A factor of each group's own peak, so groups with their own lr end at their own lr * min_lr_ratio.
        scheduler = schedule_for(opt, cfg, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_model(self) -> None:
        """Apply checkpointing/compile (any strategy) and FSDP2 (ModelParallelStrategy) from `parallel`."""
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = self._trainer.strategy if self._trainer is not None else None
        mesh = self.device_mesh if isinstance(strategy, ModelParallelStrategy) else None
        cfg = self.parallel_config
        if mesh is not None and self.lora_config is not None:
            raise ValueError("model.lora does not work with ModelParallelStrategy (FSDP2) yet: the expert adapters "
                             "are parametrizations that fully_shard does not shard. Train LoRA with DDP "
                             "(`--trainer.strategy ddp`); the frozen base needs no optimizer state.")
        if mesh is not None or cfg.activation_checkpointing != "none" or cfg.compile:
            apply_parallelism(self.model, cfg, mesh)
        self.materialize()

    def materialize(self) -> None:
        """With `parallel.meta_init`: allocate the weights (this rank's shards, when sharded) and fill
        them with the seed's initial weights, then `init_from`'s. Does nothing once done or without
        meta_init. Called by `configure_model`, and earlier by a callback that must copy the weights
        (the EMA, under unsharded strategies)."""
        from lightning.pytorch.utilities import rank_zero_info

        if self._init_plan is None or not has_meta_parameters(self.model):
            return
        # The strategy's device (the FSDP2 mesh's): the module itself is still on the CPU here.
        device = self._trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        materialize_and_initialize(self.model, self._init_plan, device)
        if self._deferred_init is not None:
            path, skip = self._deferred_init
            state, _, digest = read_generator_weights(path)  # memory-mapped: each rank reads its shards
            self.init_report = load_init_weights(self.model, state, skip, path, digest)
            rank_zero_info(self.init_report.summary())
            self._deferred_init = None

    def configure_callbacks(self) -> list[L.Callback]:
        """Callbacks the model needs to train correctly, whatever the config says."""
        from av_model.train.callbacks import ConditioningDiagnostics, RouterBiasUpdate

        callbacks: list[L.Callback] = []
        if self.dit_config.num_experts > 1 and self.dit_config.balance == "bias":
            callbacks.append(RouterBiasUpdate())
        if self.diagnostics_config.enabled:
            callbacks.append(ConditioningDiagnostics(self.diagnostics_config))
        return callbacks

    # -------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain-data copies so `load_generator` can rebuild the model without the training config.
        checkpoint[CHECKPOINT_KEY] = {"dit_config": self.dit_config.to_dict(), "cache_meta": self.cache_meta,
                               "sampler": asdict(self.sampler_config)}
        if self.lora_config is not None:  # the weights have adapters: `load_generator` merges them
            checkpoint["avgen"]["lora"] = asdict(self.lora_config)
        if self.init_report is not None:
            checkpoint["avgen"]["init_from"] = self.base_record()

    def base_record(self) -> dict[str, Any]:
        """Where the starting weights came from (`init_from` path and sha256), or {} for a fresh model."""
        if self.init_report is None:
            return {}
        return {"path": self.init_report.path, "sha256": self.init_report.sha256}


def _as(cls: type, value: Any) -> Any:
    """`value` as an instance of the dataclass `cls` (None: defaults; a dict: its fields)."""
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    if not isinstance(value, cls):
        raise TypeError(f"expected {cls.__name__}, a dict of its fields, or None; got {type(value).__name__}.")
    return value


def _is_sharded(tensors: list[torch.Tensor]) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(t, DTensor) for t in tensors)

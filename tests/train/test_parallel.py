"""Parallelism applied from outside the model: activation checkpointing and FSDP2 under ModelParallelStrategy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from av_model.dit import AVDiT, get_preset
from av_model.sample.generator_file import load_generator
from av_model.text.batch import TextBatch
from av_model.train.cli import fit_main
from av_model.train.parallel import ParallelConfig, apply_parallelism, expert_parameters

from .conftest import fit_args


def _inputs() -> tuple:
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(2, 4, 4, 4, 4, generator=g), torch.randn(2, 8, 75, generator=g)
    text = TextBatch((torch.randn(2, 5, 384, generator=g),), (torch.ones(2, 5, dtype=torch.bool),))
    t = torch.rand(2, generator=g)
    return video, audio, t, t.flip(0), text, 4.0, 75.0


def test_activation_checkpointing_keeps_outputs_gradients_and_keys() -> None:
    torch.manual_seed(0)
    cfg = get_preset("debug", video_channels=4, audio_channels=8)
    ref = AVDiT(cfg)
    with torch.no_grad():
        for p in ref.parameters():  # leave the zero-initialized outputs: compare a non-trivial function
            p.add_(0.05 * torch.randn_like(p))
    wrapped = AVDiT(cfg)
    wrapped.load_state_dict(ref.state_dict())
    apply_parallelism(wrapped, ParallelConfig(activation_checkpointing="selective", ac_every=2))
    assert type(wrapped.blocks[0]).__name__ == "CheckpointWrapper" and type(wrapped.blocks[1]) is type(ref.blocks[1])
    assert list(wrapped.state_dict()) == list(ref.state_dict())
    outs = []
    for model in (ref, wrapped):
        out = model(*_inputs())
        (out.video.square().mean() + out.audio.square().mean()).backward()
        outs.append((out.video.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for g1, g2 in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(g1, g2)
    assert len(expert_parameters(ref)) == 2 * cfg.depth  # w13 (gate|up) and w2 per MoE layer
    assert expert_parameters(AVDiT(get_preset("tiny_dense", video_channels=4, audio_channels=8))) == []


def test_fsdp2_through_model_parallel_strategy(fake_cache: Path, tmp_path: Path) -> None:
    strategy = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
                "init_args": {"save_distributed_checkpoint": False}}
    parallel = {"activation_checkpointing": "full", "param_dtype": "float32", "sharding": "full"}
    try:
        rc = fit_main(fit_args(fake_cache, tmp_path, "--trainer.max_steps", "2", "--trainer.accelerator", "cpu",
                               "--trainer.strategy", json.dumps(strategy), "--model.parallel", json.dumps(parallel),
                               "--ema.enabled", "false", "--trainer.limit_val_batches", "0"))
    finally:
        if torch.distributed.is_initialized():  # the strategy's gloo group must not leak into other tests
            torch.distributed.destroy_process_group()
    assert rc == 0
    bundle = load_generator(tmp_path / "final.ckpt")  # full weights gathered into one file
    assert bundle.model.cfg.depth == 2 and bundle.cache_meta["video"]["latent_rate"] == 4.0


def test_ema_refuses_sharded_training(fake_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strategy = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy"}
    try:
        rc = fit_main(fit_args(fake_cache, tmp_path, "--trainer.max_steps", "1", "--trainer.accelerator", "cpu",
                               "--trainer.strategy", json.dumps(strategy)))
        assert rc == 1 and "ema.enabled: false" in capsys.readouterr().err
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    with pytest.raises(ValueError, match="activation_checkpointing"):
        ParallelConfig(activation_checkpointing="some")
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        ParallelConfig(compile_mode="fast")  # type: ignore[arg-type]


def test_memory_per_rank_from_parameter_counts() -> None:
    from av_model.dit.params import count_params
    from av_model.train.parallel import rank_memory

    cfg = get_preset("small")
    n = count_params(cfg).total
    model = AVDiT(get_preset("small"))
    block = sum(p.numel() for p in model.blocks[0].parameters())
    root = n - cfg.depth * block
    assert rank_memory(cfg, "single").total == 16 * n  # fp32 weights, grads, two AdamW moments
    assert rank_memory(cfg, "single", ema=True).total == 20 * n
    assert rank_memory(cfg, "ddp", 8).total == 20 * n  # plus DDP's gradient buckets
    assert rank_memory(cfg, "fsdp", 8).total == 16 * n / 8 + 2 * (root + 2 * block)  # bf16 gathered
    assert rank_memory(cfg, "hsdp", 32, 8).total == rank_memory(cfg, "fsdp", 8).total
    assert rank_memory(cfg, "single", precision="bf16-true").total == 8 * n
    with pytest.raises(ValueError, match="shard_size that divides world_size 32"):
        rank_memory(cfg, "hsdp", 32, 6)
    with pytest.raises(ValueError, match="layout must be one of"):
        rank_memory(cfg, "zero3", 8)
    with pytest.raises(ValueError, match="refused under sharding"):
        rank_memory(cfg, "fsdp", 8, ema=True)

"""Sequence (Ulysses) parallelism on 2 CPU processes (gloo) equals one process: outputs, losses, gradients, sampling.

Both ranks get the same clips; the test splits the joint sequence of 16 video + 24 audio tokens
(even) and of 16 + 25 tokens (odd: the second rank's share ends in one padded token). Gradients are
averaged over the ranks, as FSDP2 and DDP do.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from av_model.dit import AVDiT, get_preset
from av_model.dit import model as dit_model
from av_model.dit.model import BlockContext
from av_model.flow.sampling import SamplerConfig, sample
from av_model.text.batch import TextBatch
from av_model.train.context_parallel import apply_sequence_parallel
from av_model.train.parallel import ParallelConfig

from .spawned import expert_and_sequence_runs, load_ranks

WORLD = 2
AUDIO_FRAMES = {"even": 72, "padded": 75}  # 24 or 25 audio tokens (group 3) beside 16 video tokens
_SHARD = dit_model._shard_sequence


def _model() -> AVDiT:
    torch.manual_seed(0)
    model = AVDiT(get_preset("debug", video_channels=4, audio_channels=8, balance="aux"))
    with torch.no_grad():
        for p in model.parameters():  # leave the zero-initialized outputs: compare a non-trivial function
            p.add_(0.05 * torch.randn_like(p))
    return model


def _inputs(audio_frames: int) -> tuple:
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(2, 4, 4, 4, 4, generator=g), torch.randn(2, 8, audio_frames, generator=g)
    text = TextBatch((torch.randn(2, 5, 384, generator=g),), (torch.tensor([[True] * 5, [True] * 3 + [False] * 2]),))
    t = torch.rand(2, generator=g)
    return video, audio, t, t.flip(0), text, 4.0, 75.0


def _run(model: AVDiT, audio_frames: int) -> dict[str, Any]:
    model.zero_grad()
    out = model(*_inputs(audio_frames))
    (out.video.square().mean() + out.audio.square().mean() + sum(out.aux.losses.values())).backward()
    return {"video": out.video.detach(), "audio": out.audio.detach(), "counts": out.aux.stats["moe/counts"],
            "losses": {k: v.detach() for k, v in out.aux.losses.items()},
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}}


def _sample(model: AVDiT) -> tuple[torch.Tensor, torch.Tensor]:
    text = _inputs(72)[4]
    with torch.no_grad():
        return sample(model, text, video_shape=(2, 4, 4, 4, 4), audio_shape=(2, 8, 75), video_rate=4.0,
                      audio_rate=75.0, config=SamplerConfig(steps=2, solver="heun", guidance_video=2.0,
                                                            guidance_audio=2.0), seed=3)


def _local_positions(x: torch.Tensor, bc: BlockContext, bucket: torch.Tensor, seq: Any) -> tuple:
    """Planted error: every shard rotated as if its tokens started the clip (positions from local indices)."""
    x, bc = _SHARD(x, bc, bucket, seq)
    local = torch.arange(len(bc.cos_NR)) % x.shape[1]
    return x, dataclasses.replace(bc, cos_NR=bc.cos_NR[local], sin_NR=bc.sin_NR[local])


def _padding_as_keys(x: torch.Tensor, bc: BlockContext, bucket: torch.Tensor, seq: Any) -> tuple:
    """Planted error: the padded tokens are not masked out of attention."""
    x, bc = _SHARD(x, bc, bucket, seq)
    return x, dataclasses.replace(bc, key_mask_N=None)


PLANTS = {"local_positions": (_local_positions, "even"), "padding_as_keys": (_padding_as_keys, "padded")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return expert_and_sequence_runs(tmp_path_factory)


def worker(rank: int, world: int, folder: Path) -> None:
    """Every 2-process case of this file (run with test_expert_parallel's in one spawn: `runs`)."""
    from torch.distributed.device_mesh import init_device_mesh

    model = apply_sequence_parallel(_model(), init_device_mesh("cpu", (world,), mesh_dim_names=("sp",)))
    shapes: list[tuple[int, ...]] = []
    model.block_list()[0].attn.register_forward_hook(lambda mod, args, out: shapes.append(tuple(args[0].shape)))
    for case, frames in AUDIO_FRAMES.items():
        torch.save({**_run(model, frames), "attn_input": shapes[-1]}, folder / f"{case}_rank{rank}.pt")
    torch.save(dict(zip(("video", "audio"), _sample(model))), folder / f"sample_rank{rank}.pt")
    for plant, (shard, case) in PLANTS.items():
        dit_model._shard_sequence = shard  # type: ignore[assignment]
        try:
            torch.save(_run(model, AUDIO_FRAMES[case]), folder / f"{plant}_rank{rank}.pt")
        finally:
            dit_model._shard_sequence = _SHARD


def _compare(ranks: list[dict[str, Any]], ref: dict[str, Any]) -> None:
    for r in ranks:  # every rank has the whole output and the whole sequence's routing record
        torch.testing.assert_close(r["video"], ref["video"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(r["audio"], ref["audio"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(r["counts"], ref["counts"], atol=1e-5, rtol=1e-4)
        for key, value in ref["losses"].items():
            torch.testing.assert_close(r["losses"][key], value, atol=1e-5, rtol=1e-4, msg=key)
    assert ranks[0]["grads"].keys() == ref["grads"].keys()
    for name, g in ref["grads"].items():
        mean = (ranks[0]["grads"][name] + ranks[1]["grads"][name]) / 2
        torch.testing.assert_close(mean, g, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


@pytest.mark.parametrize("case", list(AUDIO_FRAMES))
def test_sequence_parallel_equals_one_process(runs: Path, case: str) -> None:
    ranks, ref = load_ranks(runs, case, WORLD), _run(_model(), AUDIO_FRAMES[case])
    tokens = 16 + AUDIO_FRAMES[case] // 3
    assert [r["attn_input"] for r in ranks] == [(2, -(-tokens // 2), 64)] * 2  # each rank attends from its half
    assert ref["counts"].sum() == 2 * 2 * tokens * 2  # layers x batch x tokens x top-k: padding is not routed
    _compare(ranks, ref)


@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_sequence_errors_are_caught(runs: Path, plant: str) -> None:
    with pytest.raises(AssertionError):
        _compare(load_ranks(runs, plant, WORLD), _run(_model(), AUDIO_FRAMES[PLANTS[plant][1]]))


def test_sequence_parallel_sampling_equals_one_process(runs: Path) -> None:
    video, audio = _sample(_model())
    for r in load_ranks(runs, "sample", WORLD):
        torch.testing.assert_close(r["video"], video, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(r["audio"], audio, atol=1e-5, rtol=1e-4)


def test_sequence_parallel_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="sequence_parallel must be >= 1"):
        ParallelConfig(sequence_parallel=0)
    with pytest.raises(ValueError, match=r"sequence_parallel=3 must divide the 2 attention heads; use one of \[1, 2\]"):
        ParallelConfig(sequence_parallel=3).check_model(num_experts=4, num_heads=2)
    with pytest.raises(ValueError, match=r"expert_parallel=3 must divide the 4 experts"):
        ParallelConfig(expert_parallel=3).check_model(num_experts=4, num_heads=2)
    with pytest.raises(ValueError, match=r"expert_parallel=4 must divide the 6 ranks"):
        ParallelConfig(expert_parallel=4).check_model(num_experts=8, num_heads=2, world_size=6)

"""Expert parallelism on 2 CPU processes (gloo) equals the single-device MoE: outputs, losses, counts, gradients.

Gradient convention (what data parallelism applies): each rank's loss is its own tokens' loss plus
the global routing losses; gradients are averaged over the ranks. The reference is the one-device
layer on all ranks' tokens with the loss `mean over ranks of each rank's token loss + routing losses`.
Without FSDP (the layer-level cases) nothing averages, so the test does: per-rank gradients of
replicated weights are averaged, an expert's gradient on its owner (which already sums all ranks'
contributions) is divided by the world size, and so is the gradient of a rank's own tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.distributed.tensor import DTensor

from av_model.dit import AVDiT, get_preset
from av_model.dit.moe import MoEFeedForward
from av_model.text.batch import TextBatch
from av_model.train import expert_parallel
from av_model.train.parallel import ParallelConfig, apply_parallelism

from .spawned import expert_and_sequence_runs, load_ranks, run_spawned

WORLD = 2
TOKENS = 24  # per rank
PLANTS = ("no_combine_permutation", "counts_misread")
_ORIGINALS = expert_parallel.to_source_order, expert_parallel.exchange_counts


def _misread_counts(send: torch.Tensor, group: Any) -> torch.Tensor:
    return _ORIGINALS[1](send, group).flip(1)


# ---------------------------------------------------------------------------------- layer level
def _layer() -> MoEFeedForward:
    torch.manual_seed(0)
    layer = MoEFeedForward(width=16, hidden=24, num_experts=4, top_k=2, num_shared=1, balance="aux",
                           aux_loss_coeff=0.1, z_loss_coeff=0.01)
    with torch.no_grad():
        layer.router_DE.normal_(std=0.5)  # decisive routing: every rank sends rows to every expert
    return layer


def _tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = WORLD * TOKENS
    x = torch.randn(n, 16, generator=g)
    modality = torch.randint(0, 2, (n,), generator=g)
    bucket = torch.randint(0, 4, (n,), generator=g)
    weight = torch.randn(n, 16, generator=g)  # a non-uniform output gradient
    return x, modality, bucket, weight


def _step(layer: MoEFeedForward, x: torch.Tensor, modality: torch.Tensor, bucket: torch.Tensor,
          weight: torch.Tensor, token_scale: float) -> dict[str, Any]:
    x = x.clone().requires_grad_(True)
    out = layer(x, modality, bucket)
    (token_scale * (out.out_TD * weight).sum() + out.aux_loss + out.z_loss).backward()
    grads = {n: _local(p.grad) for n, p in layer.named_parameters() if p.grad is not None}
    return {"out": out.out_TD.detach(), "aux": out.aux_loss.detach(), "z": out.z_loss.detach(),
            "counts": out.counts_E, "counts_modality": out.counts_ME, "x_grad": x.grad, "grads": grads}


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local().clone() if isinstance(t, DTensor) else t.clone()


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t.clone()


def _layer_worker(rank: int, world: int, folder: Path) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (1, world), mesh_dim_names=("dp_shard", "ep"))
    x, modality, bucket, weight = _tokens()
    mine = slice(rank * TOKENS, (rank + 1) * TOKENS)
    for plant in (None, *PLANTS):
        layer = expert_parallel.apply_expert_parallel(_layer(), mesh)
        if plant == "no_combine_permutation":  # outputs go home in expert order, not in the order they came
            expert_parallel.to_source_order = lambda y, perm, inv: y  # type: ignore[assignment]
        elif plant == "counts_misread":  # the right totals per source, but the experts' counts swapped
            expert_parallel.exchange_counts = _misread_counts  # type: ignore[assignment]
        try:
            result = _step(layer, x[mine], modality[mine], bucket[mine], weight[mine], token_scale=1.0)
        finally:
            expert_parallel.to_source_order, expert_parallel.exchange_counts = _ORIGINALS
        torch.save(result, folder / f"{plant or 'ep'}_rank{rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return expert_and_sequence_runs(tmp_path_factory)


def worker(rank: int, world: int, folder: Path) -> None:
    """Every 2-process case of this file (run with test_sequence_parallel's in one spawn: `runs`)."""
    _layer_worker(rank, world, folder)
    _model_worker(rank, world, folder)


def _reference() -> dict[str, Any]:
    x, modality, bucket, weight = _tokens()
    return _step(_layer(), x, modality, bucket, weight, token_scale=1.0 / WORLD)


def _compare(ranks: list[dict[str, Any]], ref: dict[str, Any]) -> None:
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), ref["out"], atol=1e-5, rtol=1e-4)
    for r in ranks:  # the routing losses and logged counts are the whole batch's on every rank
        for key in ("aux", "z", "counts", "counts_modality"):
            torch.testing.assert_close(r[key], ref[key], atol=1e-5, rtol=1e-4, msg=key)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]) / WORLD, ref["x_grad"], atol=1e-5, rtol=1e-4)
    for name, g_ref in ref["grads"].items():
        if name in ("w13_ED2F", "w2_EFD"):  # each rank holds its experts' gradient, summed over ranks
            g = torch.cat([r["grads"][name] for r in ranks]) / WORLD
        else:
            g = torch.stack([r["grads"][name] for r in ranks]).mean(0)
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


def test_expert_parallel_layer_equals_single_device(runs: Path) -> None:
    ranks = load_ranks(runs, "ep", WORLD)
    assert ranks[0]["grads"]["w13_ED2F"].shape[0] == 2  # 4 experts over 2 ranks: 2 whole experts each
    ref = _reference()
    assert (ref["counts"] > 0).all() and ref["aux"] > 0  # every expert used; the balance loss is live
    _compare(ranks, ref)


@pytest.mark.parametrize("plant", PLANTS)
def test_planted_dispatch_errors_are_caught(runs: Path, plant: str) -> None:
    with pytest.raises(AssertionError):
        _compare(load_ranks(runs, plant, WORLD), _reference())


# ---------------------------------------------------------------------------------- model level
def _model(num_experts: int = 4) -> AVDiT:
    torch.manual_seed(0)
    model = AVDiT(get_preset("debug", video_channels=4, audio_channels=8, balance="aux", num_experts=num_experts))
    with torch.no_grad():
        for p in model.parameters():  # leave the zero-initialized outputs: compare a non-trivial function
            p.add_(0.05 * torch.randn_like(p))
    return model


def _inputs(n: int = WORLD) -> tuple:
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(n, 4, 4, 4, 4, generator=g), torch.randn(n, 8, 75, generator=g)
    text = TextBatch((torch.randn(n, 5, 384, generator=g),), (torch.ones(n, 5, dtype=torch.bool),))
    t = torch.rand(n, generator=g)
    return video, audio, t, t.flip(0), text


def _sample(inputs: tuple, i: int, size: int = 1) -> tuple:
    video, audio, tv, ta, text = inputs
    some = slice(i, i + size)
    return (video[some], audio[some], tv[some], ta[some],
            TextBatch(tuple(e[some] for e in text.embeddings), tuple(m[some] for m in text.masks)), 4.0, 75.0)


def _sample_loss(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    return video.square().mean() + audio.square().mean()


def _model_worker(rank: int, world: int, folder: Path, ep: int | None = None, tag: str = "fsdp",
                  num_experts: int = 4) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    model = _model(num_experts)
    lightning_mesh = init_device_mesh("cpu", (1, world), mesh_dim_names=("data_parallel", "tensor_parallel"))
    apply_parallelism(model, ParallelConfig(expert_parallel=ep or world, param_dtype="float32"), lightning_mesh)
    out = model(*_sample(_inputs(world), rank))  # each rank its own clip: data parallel
    (_sample_loss(out.video, out.audio) + sum(out.aux.losses.values())).backward()
    grads = {n: _full(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    norm = expert_parallel.total_norm([p.grad for p in model.parameters() if p.grad is not None])
    expert_parallel.clip_grads_with_norm_(list(model.parameters()), 0.5 * float(norm), norm)  # halves every gradient
    clipped = {n: _full(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    opt = torch.optim.AdamW(expert_parallel.split_by_layout([{"params": list(model.parameters())}]), lr=0.01, foreach=True)
    opt.step()  # foreach kernels need one mesh per group: the split makes experts, router and the rest apart
    stepped = {n: _full(p.detach()) for n, p in model.named_parameters()}
    torch.save({"video": out.video.detach(), "audio": out.audio.detach(), "grads": grads,
                "losses": {k: v.detach() for k, v in out.aux.losses.items()}, "counts": out.aux.stats["moe/counts"],
                "norm": norm, "clipped": clipped, "stepped": stepped},
               folder / f"{tag}_rank{rank}.pt")


def _check_fsdp(ranks: list[dict[str, Any]], ep: int, num_experts: int = 4) -> None:
    """One process's model on the same clips: each expert-parallel group of `ep` ranks is one routing
    batch, so the reference runs each group's clips as one batch, with the loss
    `mean over ranks of each clip's loss + mean over groups of the group's routing losses`."""
    world = len(ranks)
    model, inputs = _model(num_experts), _inputs(world)
    for first in range(0, world, ep):
        out = model(*_sample(inputs, first, ep))
        flow = sum(_sample_loss(out.video[i], out.audio[i]) for i in range(ep))
        (flow / world + sum(out.aux.losses.values()) * ep / world).backward()
        for i, r in enumerate(ranks[first : first + ep]):
            torch.testing.assert_close(r["video"][0], out.video[i].detach(), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(r["audio"][0], out.audio[i].detach(), atol=1e-5, rtol=1e-4)
            for key, value in out.aux.losses.items():  # the group's routing losses and counts on every rank
                torch.testing.assert_close(r["losses"][key], value.detach(), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(r["counts"], out.aux.stats["moe/counts"], atol=1e-5, rtol=1e-4)
    ref_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert ranks[0]["grads"].keys() == ref_grads.keys()  # same names: checkpoints stay interchangeable
    for name, g in ref_grads.items():
        torch.testing.assert_close(ranks[0]["grads"][name], g, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")
    torch.testing.assert_close(ranks[0]["norm"], torch.nn.utils.get_total_norm(list(ref_grads.values())), atol=1e-5, rtol=1e-4)
    for name, g in ref_grads.items():  # clipping reaches the experts, the router and the FSDP weights alike
        torch.testing.assert_close(ranks[0]["clipped"][name], 0.5 * g, atol=1e-5, rtol=1e-4, msg=f"clipped {name}")
    for p in model.parameters():
        p.grad = None if p.grad is None else 0.5 * p.grad
    torch.optim.AdamW(model.parameters(), lr=0.01, foreach=True).step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(ranks[0]["stepped"][name], p.detach(), atol=1e-5, rtol=1e-4, msg=f"updated {name}")


def test_expert_parallel_with_fsdp2_equals_single_device(runs: Path) -> None:
    _check_fsdp(load_ranks(runs, "fsdp", WORLD), ep=WORLD)  # mesh ("dp_shard", "ep") = (1, 2)


def _worker_2x2(rank: int, world: int, folder: Path, num_experts: int) -> None:
    _model_worker(rank, world, folder, ep=2, tag="fsdp4", num_experts=num_experts)


@pytest.mark.slow
@pytest.mark.parametrize("num_experts", [4, 2])
def test_expert_parallel_on_a_2x2_mesh_with_fsdp2(tmp_path: Path, num_experts: int) -> None:
    """4 processes, mesh ("dp_shard", "ep") = (2, 2): each rank's experts are further sharded by FSDP2,
    along the expert axis (2 local experts) or, with 1 local expert for 2 shards, along the width."""
    run_spawned(_worker_2x2, 4, tmp_path, num_experts, timeout_s=120)
    _check_fsdp(load_ranks(tmp_path, "fsdp4", 4), ep=2, num_experts=num_experts)


def test_expert_parallel_config_is_validated() -> None:
    with pytest.raises(ValueError, match="expert_parallel must be >= 1"):
        ParallelConfig(expert_parallel=0)
    with pytest.raises(ValueError, match="needs fsdp"):
        ParallelConfig(expert_parallel=2, fsdp=False)

"""Meta-device initialization: the replayed weights are the ordinary build's, bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from av_model.dit import AVDiT, get_preset
from av_model.train.meta_init import build_on_meta, has_meta_parameters, materialize_and_initialize


@pytest.mark.parametrize("preset", ["debug", "tiny", "tiny_dense"])
def test_replay_equals_the_ordinary_build(preset: str) -> None:
    cfg = get_preset(preset, video_channels=4, audio_channels=8)
    torch.manual_seed(7)
    ref = AVDiT(cfg)
    torch.manual_seed(7)
    model, plan = build_on_meta(lambda: AVDiT(cfg))
    assert has_meta_parameters(model) and not any(b.is_meta for b in model.buffers())
    assert plan.constants and plan.writes  # null_kv comes from torch.zeros, the rest from init writes
    materialize_and_initialize(model, plan)
    assert not has_meta_parameters(model)
    own, want = model.state_dict(), ref.state_dict()
    assert own.keys() == want.keys()
    assert [k for k in want if not torch.equal(own[k], want[k])] == []
    # Buffers computed in constructors (rotary frequencies) survive to_empty.
    torch.testing.assert_close(model.rotary.omega_time, ref.rotary.omega_time, rtol=0, atol=0)
    # Another seed gives other weights: the plan really starts from the generator's state.
    torch.manual_seed(8)
    other, plan8 = build_on_meta(lambda: AVDiT(cfg))
    materialize_and_initialize(other, plan8)
    assert not torch.equal(other.state_dict()["blocks.0.attn.qkv.weight"], want["blocks.0.attn.qkv.weight"])


class _Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(3, 3))
        with torch.no_grad():
            self.w.exponential_()  # an init the replay does not know


class _Unwritten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.arange(4.0))  # neither constant nor written: cannot be replayed


def test_unreplayable_initializations_are_refused() -> None:
    with pytest.raises(NotImplementedError, match="cannot replay `exponential_`.*meta_init: false"):
        build_on_meta(_Odd)
    with pytest.raises(NotImplementedError, match="parameter w is neither"):
        build_on_meta(_Unwritten)


def test_replay_through_activation_checkpointing_wrappers() -> None:
    from av_model.train.parallel import ParallelConfig, apply_parallelism

    cfg = get_preset("debug", video_channels=4, audio_channels=8)
    torch.manual_seed(1)
    ref = AVDiT(cfg)
    torch.manual_seed(1)
    model, plan = build_on_meta(lambda: AVDiT(cfg))
    apply_parallelism(model, ParallelConfig(activation_checkpointing="full"))
    materialize_and_initialize(model, plan)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())


def test_each_rank_gets_its_slice_of_the_ordinary_weights() -> None:
    """Rank 1 of 3 (uneven shards), played in this process through torch's fake process group."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from av_model.train.parallel import ParallelConfig, apply_parallelism

    cfg = get_preset("debug", video_channels=4, audio_channels=8)
    torch.manual_seed(2)
    ref = AVDiT(cfg).state_dict()
    torch.manual_seed(2)
    model, plan = build_on_meta(lambda: AVDiT(cfg))
    dist.init_process_group("fake", rank=1, world_size=3, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (3,), mesh_dim_names=("data_parallel",))
        with pytest.warns(UserWarning, match="4 experts do not divide over 3 shards"):
            apply_parallelism(model, ParallelConfig(param_dtype="float32"), mesh)
        materialize_and_initialize(model, plan)
        checked = 0
        for name, p in model.named_parameters():
            assert isinstance(p, DTensor)
            want = ref[name].chunk(3)[1] if ref[name].shape[0] >= 2 else ref[name][:0]
            local = p.to_local()
            assert torch.equal(local, want[: local.shape[0]]) and local.shape[0] == want.shape[0], name
            checked += 1
        assert checked == len(plan.shapes)
    finally:
        dist.destroy_process_group()


def test_fit_with_meta_init_in_one_process(fake_cache, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`avgen fit` with `parallel.meta_init` and no sharding: the same initial weights and losses."""
    import json

    from av_model.train.cli import run_cli

    from .conftest import fit_args
    from .mp_fit import recording_cli

    runs = {}
    for meta in (False, True):
        out = tmp_path / f"meta_{meta}"
        argv = fit_args(fake_cache, out, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
                        "--trainer.accelerator", "cpu", "--model.parallel", json.dumps({"meta_init": meta}))
        assert run_cli("fit", argv, cli_class=recording_cli(out)) == 0
        runs[meta] = out
    for name in ("initial.pt", "weights.pt"):
        a, b = torch.load(runs[False] / name), torch.load(runs[True] / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

"""Data parallelism in real processes (torchrun, gloo on CPU): DDP, FSDP2 full and hybrid train the
model one process trains on the same global batch; distributed checkpoints resume exactly after a
rank is killed and convert to the single file `avgen sample` reads; planted errors are caught.

The reference is one process with batch 4 and `accumulate_grad_batches 2`; the parallel runs have
two ranks of batch 4. The bucketing sampler deals global batches to ranks in turn and the flow noise
is seeded by a batch's place in the global batch, so both see the same clips with the same noise,
and only the order of floating-point sums differs (hence the tolerance, 1e-5 relative).

All scenarios of one launch run in the same two processes (tests/train/mp_fit.py), so torch and
Lightning start once: one launch of eight scenarios (the last one killed mid-run) and one launch of
the resume, about 40 s together on two shared cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from av_model.sample.generator_file import load_generator
from av_model.train.cli import run_cli

from .conftest import fit_args
from .mp_fit import recording_cli

REPO = Path(__file__).resolve().parents[2]
STEPS = 6
RTOL = 1e-5  # fp32, the same arithmetic summed in another order
FSDP = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
        "init_args": {"save_distributed_checkpoint": True}}
HSDP = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
        "init_args": {"data_parallel_size": 1, "tensor_parallel_size": 2, "save_distributed_checkpoint": True}}


def _argv(cache: Path, root: Path, *extra: str) -> list[str]:
    # 16 clips in two buckets, batches of 4: 4 global batches per epoch, so 6 steps of 2 batches
    # cross epoch boundaries. Checkpoints every 3 steps; no EMA and no conditioning diagnostics
    # (both refused under FSDP), no validation.
    return fit_args(cache, root, "--trainer.accelerator", "cpu", "--trainer.log_every_n_steps", "1",
                    "--trainer.limit_val_batches", "0", "--checkpoint.every_n_train_steps", "3",
                    "--model.optimizer.decay_steps", "40", "--ema.enabled", "false", "--data.batch_size", "4",
                    "--model.diagnostics.enabled", "false",
                    *extra)


def _parallel(strategy: Any, sharding: str = "full", **parallel: Any) -> list[str]:
    s = strategy if isinstance(strategy, str) else json.dumps(strategy)
    return ["--trainer.strategy", s, "--trainer.devices", "2",
            "--model.parallel", json.dumps({"param_dtype": "float32", "sharding": sharding, **parallel})]


def _launch(spec: list[dict[str, Any]], path: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
         str(REPO / "tests" / "train" / "mp_fit.py"), str(path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


def _record(root: Path) -> dict[str, Any]:
    path = root / "record.json"
    assert path.is_file(), f"{root.name} wrote no record"
    return json.loads(path.read_text())


def _losses(root: Path) -> dict[int, float]:
    return {int(k): v for k, v in _record(root)["loss"].items()}


def _weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = RTOL) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=rtol, atol=rtol) for k in a)


@pytest.fixture(scope="module")
def runs(fake_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process reference (here) and the two-process launch of eight scenarios."""
    root = tmp_path_factory.mktemp("mp")
    ref = root / "reference"
    rc = run_cli("fit", _argv(fake_cache, ref, "--trainer.max_steps", str(STEPS), "--trainer.devices", "1",
                              "--trainer.accumulate_grad_batches", "2"), cli_class=recording_cli(ref))
    assert rc == 0

    def scenario(name: str, *extra: str, plant: str | None = None, kill: dict[str, int] | None = None) -> dict:
        return {"name": name, "out": str(root / name), "plant": plant, "kill_rank": kill,
                "argv": _argv(fake_cache, root / name, "--trainer.max_steps", str(STEPS), *extra)}

    spec = [
        scenario("ddp", *_parallel("ddp")),
        scenario("ddp_no_allreduce", *_parallel("ddp"), plant="no_allreduce"),
        scenario("fsdp", *_parallel(FSDP)),
        scenario("hsdp", *_parallel(HSDP, "hybrid")),
        scenario("fsdp_same_data", *_parallel(FSDP), plant="same_data"),
        # Meta init composed with activation checkpointing (which renames the blocks' weights).
        scenario("fsdp_meta", *_parallel(FSDP, meta_init=True, activation_checkpointing="full")),
        # Meta init, then the reference's trained weights streamed into the shards.
        scenario("fsdp_meta_init_from", *_parallel(FSDP, meta_init=True), "--model.init_from",
                 str(ref / "final.ckpt")),
        # Killed last (the launch ends with it): rank 1 dies after step 4, past the step-3 checkpoint.
        {**scenario("victim", *_parallel(FSDP)), "kill_rank": {"rank": 1, "at_step": 4},
         "argv": _argv(fake_cache, root / "victim", "--trainer.max_steps", "1000", *_parallel(FSDP))},
    ]
    proc = _launch(spec, root / "spec.json")
    assert proc.returncode != 0 and "Signal 9 (SIGKILL)" in proc.stderr + proc.stdout, proc.stderr[-3000:]
    return root


def test_ddp_matches_one_process(runs: Path) -> None:
    ref = _losses(runs / "reference")
    assert sorted(ref) == list(range(STEPS)) and _record(runs / "ddp")["world_size"] == 2
    assert _record(runs / "reference")["losses_per_step"] == _record(runs / "ddp")["losses_per_step"]
    assert _losses(runs / "ddp") == pytest.approx(ref, rel=RTOL)
    assert _weights_close(torch.load(runs / "ddp" / "weights.pt"), torch.load(runs / "reference" / "weights.pt"))


@pytest.mark.parametrize("layout", ["fsdp", "hsdp"])
def test_fsdp2_full_and_hybrid_match_one_process(runs: Path, layout: str) -> None:
    assert _losses(runs / layout) == pytest.approx(_losses(runs / "reference"), rel=RTOL)
    assert _weights_close(torch.load(runs / layout / "weights.pt"), torch.load(runs / "reference" / "weights.pt"))
    assert (runs / layout / "checkpoints" / "last.ckpt").is_dir()  # distributed: one file per rank


@pytest.mark.parametrize("planted", ["ddp_no_allreduce", "fsdp_same_data"])
def test_the_comparison_catches_planted_errors(runs: Path, planted: str) -> None:
    ref, bad = _losses(runs / "reference"), _losses(runs / planted)
    # Step 0 is before any update: without the all-reduce the first losses still agree.
    assert bad != pytest.approx(ref, rel=RTOL)
    assert not _weights_close(torch.load(runs / planted / "weights.pt"), torch.load(runs / "reference" / "weights.pt"))


def test_meta_init_gives_the_ordinary_weights_sharded(runs: Path) -> None:
    ref = runs / "reference"
    # Bit for bit at the start, so the whole curve is the reference's.
    assert _weights_close(torch.load(runs / "fsdp_meta" / "initial.pt"), torch.load(ref / "initial.pt"), rtol=0.0)
    assert _losses(runs / "fsdp_meta") == pytest.approx(_losses(ref), rel=RTOL)
    # init_from into a model built on meta: each rank's shards come from the memory-mapped file.
    assert _weights_close(torch.load(runs / "fsdp_meta_init_from" / "initial.pt"), torch.load(ref / "weights.pt"),
                          rtol=0.0)


def test_killed_rank_resumes_from_the_distributed_checkpoint(runs: Path, fake_cache: Path) -> None:
    victim = runs / "victim"
    last = victim / "checkpoints" / "last.ckpt"
    assert last.is_dir() and not (victim / "record.json").exists()  # killed before its end
    meta = torch.load(last / "meta.pt", weights_only=False)
    assert meta["global_step"] == 3
    step3 = victim / "checkpoints" / "step0000003.ckpt"  # the same checkpoint, kept for the planted run
    planted = runs / "resumed_forgetting"
    spec = [{"name": "resumed", "out": str(victim), "plant": None, "kill_rank": None,
             "argv": _argv(fake_cache, victim, "--trainer.max_steps", str(STEPS), *_parallel(FSDP),
                           "--ckpt_path", str(last))},
            {"name": "resumed_forgetting", "out": str(planted), "plant": "forget_data_position", "kill_rank": None,
             "argv": _argv(fake_cache, planted, "--trainer.max_steps", str(STEPS), *_parallel(FSDP),
                           "--ckpt_path", str(step3))}]
    proc = _launch(spec, runs / "resume.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed, ref = _losses(victim), _losses(runs / "fsdp")
    assert sorted(resumed) == list(range(3, STEPS))
    assert resumed == pytest.approx({s: ref[s] for s in resumed}, rel=1e-6)
    assert _weights_close(torch.load(victim / "weights.pt"), torch.load(runs / "fsdp" / "weights.pt"), rtol=1e-6)
    # Planted: a resume that forgets where in the epoch it was trains other batches, and is caught.
    assert _losses(planted) != pytest.approx({s: ref[s] for s in resumed}, rel=1e-6)


def test_distributed_checkpoint_exports_to_one_file(runs: Path, tmp_path: Path) -> None:
    from av_model.cli import main as avgen

    final = runs / "fsdp" / "final.ckpt"
    assert final.is_dir()
    out = tmp_path / "generator.pt"
    assert avgen(["export", str(final), str(out)]) == 0
    bundle = load_generator(out)
    trained = torch.load(runs / "fsdp" / "weights.pt")
    state = bundle.model.state_dict()
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    assert bundle.cache_meta["video"]["latent_rate"] == 4.0
    # The folder reads directly too, and a missing one says what to do.
    assert torch.equal(load_generator(final).model.state_dict()["blocks.0.attn.qkv.weight"],
                       trained["blocks.0.attn.qkv.weight"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_generator(runs / "fsdp" / "no_such.ckpt")
    with pytest.raises(ValueError, match="not a distributed checkpoint"):
        load_generator(runs / "fsdp" / "checkpoints")
    assert avgen(["export", str(runs / "fsdp" / "missing"), str(out)]) == 1


@pytest.mark.slow
def test_hsdp_on_a_2x2_mesh_matches_one_process(fake_cache: Path, tmp_path: Path) -> None:
    """Four processes: two replicas, each sharded over two ranks (a real replicate axis), built on the
    meta device, against one process accumulating the same four batches per step."""
    ref = tmp_path / "reference"
    assert run_cli("fit", _argv(fake_cache, ref, "--trainer.max_steps", "4", "--trainer.devices", "1",
                                "--trainer.accumulate_grad_batches", "4"), cli_class=recording_cli(ref)) == 0
    hsdp = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
            "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 2, "save_distributed_checkpoint": True}}
    argv = _argv(fake_cache, tmp_path / "hsdp", "--trainer.max_steps", "4", *_parallel(hsdp, "hybrid", meta_init=True))
    argv[argv.index("--trainer.devices") + 1] = "4"
    proc = _launch([{"name": "hsdp2x2", "out": str(tmp_path / "hsdp"), "plant": None, "kill_rank": None,
                     "argv": argv}], tmp_path / "spec.json", nproc=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _record(tmp_path / "hsdp")["world_size"] == 4
    assert _weights_close(torch.load(tmp_path / "hsdp" / "initial.pt"), torch.load(ref / "initial.pt"), rtol=0.0)
    assert _losses(tmp_path / "hsdp") == pytest.approx(_losses(ref), rel=RTOL)
    assert _weights_close(torch.load(tmp_path / "hsdp" / "weights.pt"), torch.load(ref / "weights.pt"))

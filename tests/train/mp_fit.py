"""Runs `avgen fit` scenarios in every process of a torchrun launch and records what they trained.

    torchrun --nproc-per-node 2 tests/train/mp_fit.py SPEC.json

SPEC.json is a list of scenarios, run one after the other in the same processes (one process
group, so the start-up cost of torch and Lightning is paid once per launch):

    {"name": "ddp", "argv": [...avgen fit arguments...], "out": "DIR", "plant": null | "no_allreduce" |
     "same_data", "kill_rank": null | {"rank": 1, "at_step": 4}}

Each scenario writes, from rank 0, `DIR/record.json`: the loss of every step averaged over the
step's global batch (all ranks, all micro-batches), and `DIR/initial.pt` and `DIR/weights.pt`: the
full weights at the start (of a fresh run) and at the end (gathered from the shards under FSDP2). The plants are the errors the multi-process tests must
catch: `no_allreduce` registers a DDP communication hook that keeps each rank's own gradient,
`same_data` gives every rank rank 0's batches, and `forget_data_position` resumes without the data
module's state (so the resumed run starts its epoch over). `kill_rank` SIGKILLs one rank after a step (the other
rank is then stopped by torchrun), after the checkpoint of the step before it has been written.

The module is also imported by the tests for the single-process reference (`RecordingCLI`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from av_model.train.cli import AVLightningCLI, run_cli


class LossRecorder(L.Callback):
    """Per-step loss of the global batch and, at the end, the full weights (written by rank 0)."""

    def __init__(self, out: Path, kill_rank: dict[str, int] | None = None) -> None:
        self.out, self.kill_rank = out, kill_rank
        self.losses: dict[int, list[float]] = defaultdict(list)
        self._step = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = trainer.callback_metrics["train/loss"].detach().float().reshape(1)  # this micro-batch, this rank
        if dist.is_initialized():
            gathered = [torch.zeros_like(loss) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, loss)
            self.losses[self._step] += [float(x) for x in gathered]
        else:
            self.losses[self._step].append(float(loss))
        k = self.kill_rank
        if k is not None and trainer.global_step == k["at_step"] and trainer.global_rank == k["rank"]:
            os.kill(os.getpid(), signal.SIGKILL)  # a crashed node: no cleanup, no final checkpoint

    def _save_weights(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        model = pl_module.model  # type: ignore[attr-defined]
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if trainer.global_rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().clone() for k, v in state.items()}, self.out / name)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._save_weights(trainer, pl_module, "initial.pt")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_weights(trainer, pl_module, "weights.pt")
        if trainer.global_rank == 0:
            record = {"loss": {str(s): sum(v) / len(v) for s, v in sorted(self.losses.items())},
                      "losses_per_step": {str(s): len(v) for s, v in self.losses.items()},
                      "world_size": trainer.world_size}
            (self.out / "record.json").write_text(json.dumps(record, indent=1))


def _keep_local_gradients(state, bucket):  # type: ignore[no-untyped-def]
    """A DDP communication hook that does no all-reduce (the planted error). No annotations: DDP
    checks them at run time, and `from __future__ import annotations` makes them strings."""
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


class _Plant(L.Callback):
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch.nn.parallel import DistributedDataParallel

        model = trainer.strategy.model
        assert isinstance(model, DistributedDataParallel), "no_allreduce plants into DDP only"
        model.register_comm_hook(None, _keep_local_gradients)


def recording_cli(out: Path, plant: str | None = None, kill_rank: dict[str, int] | None = None) -> type[AVLightningCLI]:
    """`AVLightningCLI` with the recorder (and the planted error) among the trainer's callbacks."""

    class RecordingCLI(AVLightningCLI):
        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[L.Callback]) -> L.Trainer:
            callbacks = [*callbacks, LossRecorder(out, kill_rank)]
            if plant == "no_allreduce":
                callbacks.append(_Plant())
            return super()._instantiate_trainer(config, callbacks)

    return RecordingCLI


def run_scenario(scenario: dict[str, Any]) -> int:
    from av_model.cache.latents import LatentDataModule

    plant = scenario.get("plant")
    original_ranks, original_load = LatentDataModule._ranks, LatentDataModule.load_state_dict
    if plant == "same_data":
        LatentDataModule._ranks = lambda self: (original_ranks(self)[0], 0)  # type: ignore[method-assign]
    if plant == "forget_data_position":
        LatentDataModule.load_state_dict = lambda self, state: None  # type: ignore[method-assign]
    try:
        cli = recording_cli(Path(scenario["out"]), plant, scenario.get("kill_rank"))
        return run_cli("fit", list(scenario["argv"]), cli_class=cli)
    finally:
        LatentDataModule._ranks = original_ranks  # type: ignore[method-assign]
        LatentDataModule.load_state_dict = original_load  # type: ignore[method-assign]


def main(spec_path: str) -> int:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # Lightning finds it and keeps it across the scenarios
    try:
        for scenario in json.loads(Path(spec_path).read_text()):
            rc = run_scenario(scenario)
            if rc != 0:
                print(f"scenario {scenario['name']} failed with status {rc}", file=sys.stderr)
                return rc
            dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

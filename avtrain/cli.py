"""The one LightningCLI of every trainer: `avgen codec fit`, `avgen vae fit|validate`, `avgen fit|validate`, `avgen distill`.

A component's `cli.py` calls `make_cli` with its LightningModule and data module (and, where it
needs more config sections or links, a subclass of `TrainerCLI`), and `run_cli` around it. Every
trainer then has the same run directory, `trainer.default_root_dir`:

    <root>/checkpoints/   the `checkpoint` section (Lightning's ModelCheckpoint): `last.ckpt` always,
                          so `--ckpt_path last` resumes the previous run of the same directory
    <root>/logs/version_N/  CSV logs (metrics.csv, hparams.yaml) unless `trainer.logger` names another
    <root>/config.yaml    the resolved config of the last run

and the same command-line shape: `-c CONFIG.yaml`, `--section.field value` overrides, `--print_config`.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from avtrain.commands import report_errors

__all__ = ["TrainerCLI", "check_resume_checkpoint", "checkpoint_dir", "make_cli", "root_cause", "run_cli"]

# What every trainer's `checkpoint` section starts from; a component changes fields with
# `make_cli(checkpoint=...)` and a config's `checkpoint:` section changes them again.
CHECKPOINT_DEFAULTS: dict[str, Any] = {"save_last": True, "every_n_train_steps": 500, "save_top_k": -1,
                                       "filename": "step{step:07d}", "auto_insert_metric_name": False}


def checkpoint_dir(root: str | None) -> str:
    """Where a run's checkpoints go: one folder per run directory (not per logger version), so
    that `--ckpt_path last` finds the previous run's last checkpoint."""
    return str(Path(root or ".") / "checkpoints")


class TrainerCLI(LightningCLI):
    """LightningCLI with the project's run directory: a `checkpoint` section writing into
    `<trainer.default_root_dir>/checkpoints` and CSV logs under the same root."""

    def __init__(self, *args: Any, checkpoint: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.checkpoint_defaults = {**CHECKPOINT_DEFAULTS, **(checkpoint or {})}
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{key}": value for key, value in self.checkpoint_defaults.items()})
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # Before LightningCLI reads the checkpoint's hyperparameters (it does so right after parsing).
        subcommand = self.config.get("subcommand")
        check_resume_checkpoint((self.config[subcommand] if subcommand else self.config).get("ckpt_path"))

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        # A CSV log by default, next to the checkpoints: plain files that every tool can read.
        if trainer.logger is None or trainer.logger is True:
            trainer.logger = Namespace(
                class_path="lightning.pytorch.loggers.CSVLogger",
                init_args=Namespace(save_dir=trainer.default_root_dir or ".", name="logs"),
            )


def check_resume_checkpoint(ckpt_path: str | None) -> None:
    """Stops before any work when `--ckpt_path FILE` names a damaged or truncated checkpoint.

    Lightning would fail only after building the model and data, with torch's traceback. A
    checkpoint that `torch.save` wrote is a zip archive whose directory is at its end, so a file cut
    short by a killed job or an interrupted copy has none; reading that directory costs nothing even
    for a large file. "last", "best" and other names Lightning resolves itself are left to it.
    """
    if not ckpt_path or not Path(ckpt_path).is_file():
        return
    path = Path(ckpt_path)
    if not zipfile.is_zipfile(path):
        others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
        hint = (f" Other checkpoints in {path.parent}: {', '.join(others[-5:])}." if others else "")
        raise ValueError(
            f"--ckpt_path {path} is not a readable checkpoint: the file is damaged or truncated, or of another "
            f"kind ({path.stat().st_size} bytes; a job killed while saving or an interrupted copy leaves such a "
            f"file). Resume from an earlier checkpoint, or start afresh without --ckpt_path.{hint}"
        )


def make_cli(module: type[Any], datamodule: type[Any], args: list[str], *, prog: str, description: str,
             cli_class: type[TrainerCLI] = TrainerCLI, checkpoint: dict[str, Any] | None = None,
             **kwargs: Any) -> TrainerCLI:
    """`cli_class` over `module` and `datamodule` with `args` (a subcommand first unless `run=False`).

    Seeds with 0 unless the config says otherwise, overwrites the saved config of a rerun, and reads
    no environment variables. Further keyword arguments go to LightningCLI (e.g. `run=False`,
    `trainer_defaults`, `auto_configure_optimizers=False` for modules that build their own).
    """
    kwargs.setdefault("seed_everything_default", 0)
    kwargs.setdefault("save_config_kwargs", {"overwrite": True})
    with warnings.catch_warnings():
        # `avgen` hands over its own argv as `args`; LightningCLI would warn that sys.argv is set too.
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        # The GAN trainers step by hand; their checkpoints hold the state after the step, which is right.
        warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization.*")
        return cli_class(
            module, datamodule, args=args, checkpoint=checkpoint,
            parser_kwargs={"default_env": False, "prog": prog, "description": description},
            **kwargs,
        )


def root_cause(err: BaseException) -> BaseException:
    """The error a config class raised, under the layers jsonargparse wraps around it."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def run_cli(job: Callable[[], Any], name: str, *, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Runs `job` (which builds and runs a CLI); a bad config, path or input ends in one message
    and exit status 1. `errors` are further exception types that mean "bad input" for this trainer."""
    threads = os.environ.get("AVGEN_NUM_THREADS")
    if threads:  # `avgen demo` runs trainings side by side and shares the cores out between them
        import torch

        torch.set_num_threads(max(1, int(threads)))
    return report_errors(job, name, errors=(ValueError, KeyError, FileNotFoundError, *errors), describe=root_cause)

"""`avgen fit` and `avgen validate`: LightningCLI over `AVDiffusion` and `LatentDataModule`.

    avgen fit -c configs/dit/tiny_moe.yaml [--trainer.max_steps 2000] [--data.cache_dir runs/cache]
    avgen fit -c configs/dit/tiny_moe.yaml --ckpt_path last          # resume the run in default_root_dir
    avgen validate -c configs/dit/tiny_moe.yaml --ckpt_path runs/dit/tiny_moe/final.ckpt

Besides `trainer`, `model` and `data`, a config has one section per built-in callback: `checkpoint`
(ModelCheckpoint, into `<default_root_dir>/checkpoints`, `last.ckpt` always kept), `ema`,
`throughput`, `nan_guard` and `samples`. The cache's metadata is linked into the model
(`model.cache_meta`), so widths and latent rates always match the data. A finished fit writes
`<default_root_dir>/final.ckpt` (EMA weights, no optimizer state), which `avgen sample` reads; a run
with a `model.lora` section also writes the adapters alone to `<default_root_dir>/lora.safetensors`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser

from av_model.cache.format import CacheError
from av_model.cache.latents import LatentDataModule
from av_model.dit.lora import save_lora
from av_model.train.callbacks import EMA, NaNGuard, NonFiniteLossError, SampleWriter, ThroughputMFU
from av_model.train.lit import AVDiffusion
from avtrain.cli import TrainerCLI, make_cli
from avtrain.cli import run_cli as run_trainer_cli

__all__ = ["AVLightningCLI", "fit_main", "load_config", "validate_main"]

FINAL_CHECKPOINT = "final.ckpt"
LORA_FILE = "lora.safetensors"


class AVLightningCLI(TrainerCLI):
    """The project's trainer CLI with the generator's callbacks as config sections and the cache
    linked into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)  # checkpoint
        parser.add_lightning_class_args(EMA, "ema")
        parser.add_lightning_class_args(ThroughputMFU, "throughput")
        parser.add_lightning_class_args(NaNGuard, "nan_guard")
        parser.add_lightning_class_args(SampleWriter, "samples")
        parser.link_arguments("data.meta_dict", "model.cache_meta", apply_on="instantiate")

    def after_fit(self) -> None:
        root = Path(self.trainer.default_root_dir)
        # Collective under sharded strategies, so every rank calls it; rank 0 writes the file.
        self.trainer.save_checkpoint(root / FINAL_CHECKPOINT, weights_only=True)
        if self.trainer.is_global_zero:
            print(f"final weights (EMA when enabled): {root / FINAL_CHECKPOINT}", file=sys.stderr)
        module = self.model
        if isinstance(module, AVDiffusion) and module.lora_config is not None and self.trainer.is_global_zero:
            # The adapters alone (EMA weights when enabled, as in final.ckpt): what `avgen sample --lora` merges.
            path = save_lora(root / LORA_FILE, module.model, module.lora_config, module.base_record())
            print(f"LoRA adapters: {path} ({path.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)


_DESCRIPTION = "Train or validate the audio-video diffusion transformer on a latent cache."


def _cli(args: list[str], cli_class: type[AVLightningCLI] | None = None, *, module: type[Any] = AVDiffusion,
         prog: str = "avgen", description: str = _DESCRIPTION, **kwargs: Any) -> AVLightningCLI:
    """The LightningCLI of the generator's trainers (`avgen fit`/`validate`, and `avgen distill`
    with its own `module`) on the latent cache."""
    cli = make_cli(
        module, LatentDataModule, args, prog=prog, description=description, cli_class=cli_class or AVLightningCLI,
        auto_configure_optimizers=False,
        # The bucketing sampler splits data across ranks itself (Lightning would replace it).
        trainer_defaults={"use_distributed_sampler": False},
        **kwargs,
    )
    assert isinstance(cli, AVLightningCLI)
    return cli


def run_cli(subcommand: str, argv: list[str], *, name: str | None = None, **cli_kwargs: Any) -> int:
    """Runs one LightningCLI subcommand; bad configs, caches and paths end in one message, exit 1."""
    name = name or f"avgen {subcommand}"
    try:
        return run_trainer_cli(lambda: _cli([subcommand, *argv], **cli_kwargs), name, errors=(CacheError,))
    except NonFiniteLossError as err:
        print(f"{name}: training stopped: {err}", file=sys.stderr)
        return 1


def fit_main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen fit`."""
    return run_cli("fit", list(sys.argv[1:] if argv is None else argv))


def validate_main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen validate`."""
    return run_cli("validate", list(sys.argv[1:] if argv is None else argv))


class _ParseOnlyCLI(AVLightningCLI):
    """Parses and validates a config without building the model or touching data."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def load_config(path: str | Path, *overrides: str) -> Namespace:
    """Parse and type-check a `configs/dit/*.yaml` file as `avgen fit -c PATH` would (nothing is built).

    Raises:
        SystemExit: the config is invalid (jsonargparse prints what is wrong).
    """
    cli = _cli(["-c", str(path), *overrides], cli_class=_ParseOnlyCLI, run=False, save_config_callback=None)
    return cli.config


if __name__ == "__main__":
    sys.exit(fit_main())

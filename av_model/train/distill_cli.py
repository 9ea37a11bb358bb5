"""`avgen distill`: a few-step student of a trained generator (LightningCLI over `AVDistillation`).

    avgen distill -c configs/distill/debug.yaml --model.teacher runs/dit/debug/final.ckpt \\
        --data.cache_dir runs/cache [--trainer.max_steps 200]

It is `avgen fit` with another LightningModule: the same config sections (`trainer`, `data`,
`checkpoint`, `ema`, `throughput`, `nan_guard`, `samples`), the cache's metadata linked into the
model, resumable checkpoints (`--ckpt_path last`), and `<default_root_dir>/final.ckpt` at the end:
the student (EMA weights when enabled), which `avgen sample --ckpt` reads with its own defaults
(the first of `distill.student_steps` steps, Euler, guidance 1). The data must be the latent cache
the teacher trained on (checked against the teacher's record of it).
"""

from __future__ import annotations

import os
import sys
import warnings

from av_model.cache.format import CacheError
from av_model.cache.latents import LatentDataModule
from av_model.train.callbacks import NonFiniteLossError
from av_model.train.cli import AVLightningCLI
from av_model.train.distill import AVDistillation

__all__ = ["distill_main"]


def _cli(args: list[str], cli_class: type[AVLightningCLI] = AVLightningCLI, **kwargs: object) -> AVLightningCLI:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return cli_class(
            AVDistillation,
            LatentDataModule,
            args=args,
            seed_everything_default=0,
            auto_configure_optimizers=False,
            trainer_defaults={"use_distributed_sampler": False},
            parser_kwargs={"default_env": False, "prog": "avgen distill",
                           "description": "Distil a generator into a few-step student on its latent cache."},
            **kwargs,  # type: ignore[arg-type]
        )


def distill_main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen distill` (LightningCLI's `fit` of `AVDistillation`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    threads = os.environ.get("AVGEN_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    try:
        _cli(["fit", *argv], save_config_kwargs={"overwrite": True})
    except NonFiniteLossError as err:
        print(f"avgen distill: training stopped: {err}", file=sys.stderr)
        return 1
    except (CacheError, ValueError, KeyError, FileNotFoundError) as err:
        if os.environ.get("AVGEN_DEBUG"):
            raise
        while err.__cause__ is not None:  # jsonargparse wraps the module's own error
            err = err.__cause__  # type: ignore[assignment]
        print(f"avgen distill: {err}\n(set AVGEN_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(distill_main())

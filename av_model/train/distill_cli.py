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

import sys
from typing import Any

from av_model.train import cli as train_cli
from av_model.train.cli import AVLightningCLI
from av_model.train.distill import AVDistillation

_DESCRIPTION = "Distil a generator into a few-step student on its latent cache."

__all__ = ["distill_main"]


def _cli(args: list[str], cli_class: type[AVLightningCLI] | None = None, **kwargs: Any) -> AVLightningCLI:
    return train_cli._cli(args, cli_class, module=AVDistillation, prog="avgen distill", description=_DESCRIPTION,
                          **kwargs)


def distill_main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen distill` (LightningCLI's `fit` of `AVDistillation`)."""
    return train_cli.run_cli("fit", list(sys.argv[1:] if argv is None else argv), name="avgen distill",
                             module=AVDistillation, prog="avgen distill", description=_DESCRIPTION)


if __name__ == "__main__":
    sys.exit(distill_main())

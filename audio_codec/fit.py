"""`avgen codec fit`: train or fine-tune a codec with LightningCLI, then write `codec.pt`.

    avgen codec fit -c configs/codec/small.yaml \
        --data.manifest runs/demo/data/manifest.jsonl \
        --trainer.max_steps 600 --trainer.default_root_dir runs/demo/codec

The YAML holds `model` (CodecLitModule: the `codec` architecture, `loss`, `optimizer`, `init_from`),
`data` (CodecDataModule) and `trainer` (Lightning Trainer) sections; any field can be overridden on
the command line. The codec's sample rate and channels are linked into the data module. After
fitting, latent statistics are computed over training clips and the codec is written to
`<trainer.default_root_dir>/codec.pt` (or `--out`). Lightning checkpoints go to
`<trainer.default_root_dir>/checkpoints/` (the `checkpoint` section: `last.ckpt` every 200 steps and
at the end), and `--ckpt_path last` resumes from there.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningArgumentParser

from audio_codec.data import CodecDataModule
from audio_codec.lit import CodecLitModule
from audio_codec.stats import compute_latent_stats
from avtrain.cli import TrainerCLI, make_cli

logger = logging.getLogger("audio_codec")


class CodecCLI(TrainerCLI):
    """The trainer CLI with the codec's links and the export options."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)  # checkpoint
        parser.link_arguments("model.codec.sample_rate", "data.sample_rate")
        parser.link_arguments("model.codec.channels", "data.channels")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Resume from this Lightning checkpoint ('last': the latest one of this run).")
        parser.add_argument("--out", type=str | None, default=None,
                            help="Where to write the trained codec (default: <trainer.default_root_dir>/codec.pt).")


def export_codec(module: CodecLitModule, datamodule: CodecDataModule, out: Path, *,
                 device: torch.device | None = None, **meta: object) -> Path:
    """Compute latent statistics over training clips (on `device`, e.g. the GPU it trained on) and
    save the codec to `out`."""
    codec = module.codec
    loader = datamodule.stats_dataloader()
    home = codec.device
    codec.to(device or home)  # Lightning hands the model back on the CPU after fitting
    try:
        stats = compute_latent_stats(codec, loader, total=len(loader))
    finally:
        codec.to(home)
    codec.set_latent_stats(stats.mean, stats.std, stats.num_frames)
    return codec.save(out, stats_clips=len(loader), **meta)


def _make_cli(argv: list[str]) -> CodecCLI:
    cli = make_cli(
        CodecLitModule, CodecDataModule, argv, prog="avgen codec fit",
        description="Train or fine-tune an audio codec (EnCodec) on a manifest's audio, then write codec.pt with "
                    "latent statistics.",
        cli_class=CodecCLI, run=False,
        auto_configure_optimizers=False,  # the module builds its two optimizers itself
        # codec.pt is written at the end; the checkpoints are for resuming, so only last.ckpt is kept.
        checkpoint={"every_n_train_steps": 200, "save_top_k": 0},
        trainer_defaults={"num_sanity_val_steps": 0},
    )
    assert isinstance(cli, CodecCLI)
    return cli


def fit_main(argv: list[str]) -> int:
    """Entry of `avgen codec fit` (argv without the leading 'fit')."""
    cli = _make_cli(argv)
    with warnings.catch_warnings():
        # Checkpoints hold the state after the step; with manual optimization Lightning warns about it.
        warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization.*")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    if cli.trainer.interrupted:
        logger.warning("training was interrupted; no codec.pt written (resume with --ckpt_path last)")
        return 1
    if cli.trainer.is_global_zero:
        out = Path(cli.config.get("out") or Path(cli.trainer.default_root_dir) / "codec.pt")
        path = export_codec(cli.model, cli.datamodule, out, device=cli.trainer.strategy.root_device,
                            steps=int(cli.trainer.global_step),
                            manifest=str(cli.datamodule.manifest))
        print(f"wrote {path} (fingerprint {cli.model.codec.fingerprint}, {cli.trainer.global_step} steps)")
    return 0

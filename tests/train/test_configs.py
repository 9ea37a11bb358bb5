"""Every YAML under configs/ loads with the parser of the job it configures (nothing is trained)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The parsers get `args` while pytest's own arguments are in sys.argv; Lightning warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _parse_only(cli_cls: type, *classes: type, path: Path, **kwargs: object) -> object:
    """Parse and type-check `path` with a LightningCLI class, without instantiating anything."""
    parse_only = type("ParseOnly", (cli_cls,), {"before_instantiate_classes": lambda self: None,
                                                "instantiate_classes": lambda self: None})
    return parse_only(*classes, args=["-c", str(path)], run=False, save_config_callback=None, **kwargs).config


def _dit(path: Path) -> None:
    from av_model.cache.format import LatentSpec
    from av_model.dit.lora import LoRAConfig
    from av_model.train.cli import load_config
    from av_model.train.diagnostics import DiagnosticsConfig
    from av_model.train.finetune import ParamGroupConfig
    from av_model.train.lit import OptimConfig, build_dit_config
    from av_model.train.parallel import ParallelConfig

    cfg = load_config(path)
    spec = LatentSpec(fps=16.0, size=(64, 64), video_latent_dim=16, video_rate=4.0, temporal_compression=4,
                      spatial_compression=8, sample_rate=24000, audio_channels=1, audio_latent_dim=128,
                      audio_rate=75.0, hop_length=320, text_dims=(384,), codec_fingerprint="c",
                      vae_fingerprint="v", text_fingerprint="t")
    build_dit_config(cfg.model.preset, cfg.model.overrides, spec)  # the preset and its overrides are valid
    OptimConfig(**vars(cfg.model.optimizer))
    if cfg.model.parallel is not None:
        ParallelConfig(**vars(cfg.model.parallel))
    if cfg.model.diagnostics is not None:
        DiagnosticsConfig(**vars(cfg.model.diagnostics))  # noise levels and clip count are valid
    if cfg.model.lora is not None:
        LoRAConfig(**vars(cfg.model.lora))
    for group in cfg.model.param_groups or []:
        ParamGroupConfig(**vars(group))
    assert cfg.checkpoint.save_last and cfg.data.cache_dir


def _cache(path: Path) -> None:
    from av_model.cache.cli import load_build_config

    load_build_config(path)


def _codec(path: Path) -> None:
    from audio_codec.data import CodecDataModule
    from audio_codec.fit import CodecCLI
    from audio_codec.lit import CodecLitModule

    _parse_only(CodecCLI, CodecLitModule, CodecDataModule, path=path, auto_configure_optimizers=False)


def _vae(path: Path) -> None:
    from av_model.vae.data import VideoClipDataModule
    from av_model.vae.lit import VideoAutoencoderModule
    from avtrain.cli import TrainerCLI

    _parse_only(TrainerCLI, VideoAutoencoderModule, VideoClipDataModule, path=path)


def _study(path: Path) -> None:
    from human_eval_app.spec import load_spec

    load_spec(path)


def _eval(path: Path) -> None:
    from eval.runner import EvalConfig

    EvalConfig.from_yaml(path)


def _distill(path: Path) -> None:
    from av_model.train.cli import AVLightningCLI
    from av_model.train.distill import DistillConfig
    from av_model.train.distill_cli import _cli
    from av_model.train.lit import OptimConfig

    parse_only = type("ParseOnly", (AVLightningCLI,), {"before_instantiate_classes": lambda self: None,
                                                     "instantiate_classes": lambda self: None})
    cfg = _cli(["-c", str(path)], cli_class=parse_only, run=False, save_config_callback=None).config
    DistillConfig(**vars(cfg.model.distill))
    OptimConfig(**vars(cfg.model.optimizer))
    assert cfg.model.teacher and cfg.checkpoint.save_last and cfg.data.cache_dir


LOADERS: dict[str, Callable[[Path], None]] = {
    "dit": _dit, "distill": _distill, "cache": _cache, "codec": _codec, "vae": _vae, "study": _study, "eval": _eval,
}


def test_the_expected_configs_exist() -> None:
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    for name in ("dit/debug.yaml", "dit/debug_dense.yaml", "dit/tiny_moe.yaml", "dit/tiny_dense.yaml",
                 "dit/h100_1b.yaml", "dit/cluster_8b.yaml", "cache/synthetic.yaml"):
        assert name in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # configs name paths relative to the repository root
    folder = path.relative_to(REPO / "configs").parts[0]
    if folder not in LOADERS:
        pytest.fail(f"no parser is known for configs/{folder}/; add the job's loader to LOADERS in {__file__}")
    LOADERS[folder](path)

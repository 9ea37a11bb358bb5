"""Training with Lightning: `avgen vae fit` writes vae.pt, checkpoints and videos, resumes exactly; every YAML loads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from av_model.vae import PRESETS, LossConfig, VAEConfig, load_video_autoencoder
from av_model.vae.cli import main
from av_model.vae.data import VideoClipDataModule
from av_model.vae.lit import VideoAutoencoderModule
from avtrain.cli import TrainerCLI
from avtrain.optim import OptimConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "vae"


def _fit(root: Path, *extra: str) -> int:
    return main(["fit", "-c", str(CONFIGS / "debug.yaml"), "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false", *extra])


def _losses(root: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for path in sorted(root.glob("logs/version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    out[int(row["step"])] = float(row["train/loss"])
    return out


def test_fit_writes_autoencoder_checkpoints_and_videos_and_resumes_exactly(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _fit(straight, "--trainer.max_steps", "4") == 0
    vae = load_video_autoencoder(straight / "vae.pt")
    assert vae.has_latent_stats and bool((vae.latent_std > 0).all())
    assert vae.metadata["global_step"] == 4 and "val/psnr" in vae.metadata["validation"]
    assert (straight / "checkpoints" / "last.ckpt").is_file()
    videos = sorted((straight / "logs").glob("version_0/reconstructions/*.mp4"))
    assert [v.name.split("_")[0] for v in videos] == ["step000004"]

    # the same run, stopped after 2 steps and resumed from its last checkpoint
    assert _fit(resumed, "--trainer.max_steps", "2") == 0
    assert _fit(resumed, "--trainer.max_steps", "4", "--ckpt_path", "last") == 0
    a, b = _losses(straight), _losses(resumed)
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5), step
    other = load_video_autoencoder(resumed / "vae.pt")
    for (name, p), q in zip(vae.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


class _ParseOnly(TrainerCLI):
    def instantiate_classes(self) -> None:  # parse and type-check the YAML, build nothing
        pass


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["avgen"])
    cli = _ParseOnly(VideoAutoencoderModule, VideoClipDataModule, args=["-c", str(path)], run=False)
    model = cli.config.model
    vae = VAEConfig(**model.vae.as_dict() if hasattr(model.vae, "as_dict") else vars(model.vae))
    LossConfig(**model.loss.as_dict() if hasattr(model.loss, "as_dict") else vars(model.loss))
    OptimConfig(**model.optimizer.as_dict() if hasattr(model.optimizer, "as_dict") else vars(model.optimizer))
    name = path.stem
    if name in PRESETS:  # a YAML named after a preset is that preset
        assert vae == PRESETS[name]


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_frames must be a positive multiple of the temporal compression 4"):
        VideoAutoencoderModule(train_frames=6)
    with pytest.raises(FileNotFoundError, match="avgen data synth"):
        VideoClipDataModule(manifest=str(tmp_path / "missing.jsonl"))


def test_manifest_clips_decode_without_sound_and_preload_into_memory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from av_model.data.synthetic import SynthConfig, make_dataset

    data = tmp_path / "data"
    make_dataset(data, n_train=3, n_val=1, n_heldout=0, config=SynthConfig(width=32, height=32, duration=1.0),
                 seed=0, workers=1, progress=False)
    manifest = str(data / "manifest.jsonl")
    common = dict(manifest=manifest, fps=8.0, size=32, duration=1.0, batch_size=3)
    streamed = VideoClipDataModule(**common)
    streamed.setup("fit")
    batch = next(iter(streamed.train_dataloader()))
    assert "audio" not in batch and batch["video"].shape == (3, 3, 8, 32, 32)  # frames only: no sound decoded

    preloaded = VideoClipDataModule(**common, preload=True)
    preloaded.setup("fit")
    assert preloaded._train is not None and preloaded._val is not None
    assert len(preloaded._train) == 3 and len(preloaded._val) == 1
    clips = {b_id: v for b in streamed.train_dataloader() for b_id, v in zip(b["id"], b["video"])}
    for b in preloaded.train_dataloader():
        for b_id, v in zip(b["id"], b["video"]):  # the same pixels as decoding from the file each time
            torch.testing.assert_close(v, clips[b_id])
    # Clips that would fill more than half the memory are refused, with what to do instead.
    with monkeypatch.context() as m:
        m.setattr("av_model.vae.data._memory_gib", lambda: 1e-4)
        with pytest.raises(ValueError, match="set data.preload false"):
            VideoClipDataModule(**common, preload=True).setup("fit")
    root = tmp_path / "run"
    assert _fit(root, "--data.manifest", manifest, "--data.preload", "true", "--data.fps", "8", "--data.size", "32",
                "--data.duration", "1.0", "--trainer.max_steps", "2") == 0
    assert load_video_autoencoder(root / "vae.pt").metadata["global_step"] == 2

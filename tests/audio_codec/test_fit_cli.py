"""`avgen codec fit` (LightningCLI), resume, export, stats, encode/decode and info commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audio_codec import load_codec
from audio_codec.cli import main
from avio import read_audio, write_audio

ROOT = Path(__file__).resolve().parents[2]
DEBUG_YAML = str(ROOT / "configs" / "codec" / "debug.yaml")


def _fit(manifest: Path, root: Path, *extra: str) -> int:
    return main(["fit", "-c", DEBUG_YAML, "--data.manifest", str(manifest), "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                 "--trainer.logger.save_dir", str(root), *extra])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A debug codec trained for 2 steps, then resumed to 4: (run dir, manifest)."""
    from tests.audio_codec.conftest import write_manifest

    tmp = tmp_path_factory.mktemp("fit")
    manifest = write_manifest(tmp / "data", {"train": [("a", 1.0), ("b", 0.8), ("c", 1.0)], "val": [("v", 0.6)]})
    root = tmp / "run"
    disc = ("--model.loss.disc_clips", "1", "--model.loss.disc_seconds", "0.1")  # judge a part of each batch
    assert _fit(manifest, root, "--trainer.max_steps", "2", *disc) == 0
    assert _fit(manifest, root, "--trainer.max_steps", "4", "--ckpt_path", "last", *disc) == 0
    return root, manifest


def test_fit_writes_a_codec_with_statistics(fitted: tuple[Path, Path]) -> None:
    root, _ = fitted
    codec = load_codec(root / "codec.pt")
    assert codec.has_latent_stats and codec.latent_dim == 8
    payload = torch.load(root / "codec.pt", weights_only=True)
    assert payload["meta"]["steps"] == 4  # generator steps: the discriminator's do not count


def test_resume_continues_the_step_count(fitted: tuple[Path, Path]) -> None:
    root, _ = fitted
    last = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4
    metrics = (root / "lightning_logs" / "version_1" / "metrics.csv").read_text().splitlines()
    steps = {int(line.split(",")[1]) for line in metrics[1:] if line.split(",")[1]}
    assert min(steps) >= 2  # the resumed run started where the first one stopped


def test_validation_writes_audio(fitted: tuple[Path, Path]) -> None:
    root, _ = fitted
    wavs = sorted(root.glob("lightning_logs/version_*/audio/step_*/v.wav"))
    assert wavs and list(root.glob("lightning_logs/version_*/audio/reference/v.wav"))
    audio, sr = read_audio(wavs[-1])
    assert sr == 24000 and audio.shape[-1] == round(0.5 * 24000)  # data.val_seconds of debug.yaml


def test_fit_rejects_bad_overrides(tiny_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fit(tiny_manifest, tmp_path, "--model.codec.bins", "100") == 2
    assert "bins must be a power of two" in capsys.readouterr().err
    assert _fit(tmp_path / "missing.jsonl", tmp_path, "--trainer.max_steps", "1") == 2
    assert "avgen data synth" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # unknown option: argparse's own message and exit
        _fit(tiny_manifest, tmp_path, "--model.codec.no_such_field", "1")


def test_export_stats_and_info(fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, manifest = fitted
    ckpt = root / "checkpoints" / "last.ckpt"
    out = tmp_path / "exported.pt"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out), "--manifest", str(manifest)]) == 0
    exported, trained = load_codec(out), load_codec(root / "codec.pt")
    assert torch.allclose(exported.latent_mean, trained.latent_mean, atol=1e-5)
    assert main(["stats", "--codec", str(out), "--manifest", str(manifest), "--split", "val", "--num-workers", "0"]) == 0
    assert int(load_codec(out).latent_stats_frames) == trained.num_frames(round(0.6 * 24000))
    assert main(["info", str(out)]) == 0
    assert "latent_dim" in capsys.readouterr().out
    assert main(["stats", "--codec", "encodec_24khz", "--manifest", str(manifest)]) == 2


def test_encode_decode_round_trip(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = fitted
    codec_path = str(root / "codec.pt")
    source = tmp_path / "in.wav"
    write_audio(source, 0.1 * torch.randn(2, 16000).clamp(-1, 1), 16000)  # stereo 16 kHz: converted
    latents, recon = tmp_path / "z.safetensors", tmp_path / "out.wav"
    assert main(["encode", str(source), str(latents), "--codec", codec_path]) == 0
    z = load_file(str(latents))["latents"]
    assert z.shape == (8, load_codec(codec_path).num_frames(24000))
    assert main(["decode", str(latents), str(recon), "--codec", codec_path]) == 0
    audio, sr = read_audio(recon)
    assert (sr, audio.shape) == (24000, (1, 24000))
    codes = tmp_path / "c.safetensors"
    assert main(["encode", str(source), str(codes), "--codec", codec_path, "--codes", "--bandwidth", "4.5"]) == 0
    assert load_file(str(codes))["codes"].shape[0] == 2
    assert main(["decode", str(codes), str(tmp_path / "c.wav"), "--codec", codec_path]) == 0


def test_commands_refuse_bad_input(fitted: tuple[Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = fitted
    codec_path = str(root / "codec.pt")
    source = tmp_path / "in.wav"
    write_audio(source, torch.zeros(1, 2400), 24000)
    latents = tmp_path / "z.safetensors"
    assert main(["encode", str(source), str(latents), "--codec", codec_path]) == 0
    other = tmp_path / "other.pt"
    codec = load_codec(codec_path)
    with torch.no_grad():
        next(codec.parameters()).add_(1.0)
    codec.save(other)
    with pytest.raises(SystemExit):  # another codec's latents
        main(["decode", str(latents), str(tmp_path / "o.wav"), "--codec", str(other)])
    assert "--force" in capsys.readouterr().err
    assert main(["decode", str(latents), str(tmp_path / "o.wav"), "--codec", str(other), "--force"]) == 0
    with pytest.raises(SystemExit):
        main(["encode", str(source), str(tmp_path / "z.npy"), "--codec", codec_path])
    assert main(["encode", str(tmp_path / "missing.wav"), str(latents), "--codec", codec_path]) == 2
    assert main(["nonsense"]) == 2
    assert main(["--help"]) == 0


def test_fine_tuning_starts_from_given_weights(fitted: tuple[Path, Path]) -> None:
    from audio_codec import CheckpointMismatchError, get_preset
    from audio_codec.lit import CodecLitModule

    root, _ = fitted
    source = load_codec(root / "codec.pt")
    module = CodecLitModule(codec=get_preset("debug"), init_from=str(root / "codec.pt"))
    for (name, a), b in zip(module.codec.state_dict().items(), source.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointMismatchError, match="another architecture"):
        CodecLitModule(codec=get_preset("small"), init_from=str(root / "codec.pt"))

"""`avgen codec-check`: a codec that passes the signal through keeps every onset, one that blurs it
does not, and bad inputs are refused with a message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from av_model.data.synthetic import SynthConfig, make_dataset
from eval.codec_check import codec_events, main


class _FrameCodec:
    """Latents are the waveform cut into 320-sample frames; `late` plays everything 20 ms late."""

    sample_rate, channels, device = 24000, 1, torch.device("cpu")

    def __init__(self, late: bool = False) -> None:
        self.late = late

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, 320).transpose(1, 2)  # (B, 320, T)

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        audio = z.transpose(1, 2).reshape(z.shape[0], 1, -1)[..., :length]
        return torch.nn.functional.pad(audio, (480, 0))[..., : audio.shape[-1]] if self.late else audio


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    return make_dataset(root, SynthConfig(width=32, height=32, duration=1.0), n_train=0, n_val=0, n_heldout=4,
                        workers=1, progress=False)


def test_a_transparent_codec_keeps_every_onset_and_a_late_one_none(manifest: Path) -> None:
    kept = codec_events(_FrameCodec(), manifest, progress=False)
    assert kept["clips"] == 4 and kept["onsets_original"] > 4
    assert kept["onset_recall"] == 1.0 and kept["onset_precision"] == 1.0 and kept["passes_onset_criterion"]
    assert kept["event_recall_recon"] == kept["event_recall_original"] == 1.0
    late = codec_events(_FrameCodec(late=True), manifest, progress=False)
    assert late["onset_recall"] == 0.0 and not late["passes_onset_criterion"]


def test_the_command_writes_its_figures_and_refuses_bad_inputs(manifest: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from audio_codec import EncodecCodec, get_preset

    codec = tmp_path / "codec.pt"
    EncodecCodec(get_preset("debug")).save(codec)
    out = tmp_path / "eval" / "codec.json"
    assert main(["--codec", str(codec), "--manifest", str(manifest), "--out", str(out), "--no-progress"]) == 0
    figures = json.loads(out.read_text())
    assert figures["clips"] == 4 and figures["criterion"] == 0.95 and "onset_recall" in figures
    assert "onsets kept within 10 ms" in capsys.readouterr().out
    assert main(["--codec", str(tmp_path / "none.pt"), "--manifest", str(manifest)]) == 2
    assert "avgen codec fit" in capsys.readouterr().err
    assert main(["--codec", str(codec), "--manifest", str(tmp_path / "none.jsonl")]) == 2
    assert "avgen data synth" in capsys.readouterr().err
    assert main(["--codec", str(codec), "--manifest", str(manifest), "--split", "train"]) == 2
    assert "no clip in split 'train'" in capsys.readouterr().err

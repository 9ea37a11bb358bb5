"""`avgen vae encode` / `avgen vae decode`: latent files, padding of odd sizes, and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from av_model.vae import VideoAutoencoder, get_preset
from av_model.vae.cli import main
from av_model.vae.files import LatentFileError, decode_file, encode_file, pad_clip, read_latent_file
from avio import probe, write_clip


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = np.zeros((10, 36, 44, 3), dtype=np.uint8) + 40
    for t in range(10):
        frames[t, 10:20, 2 + 3 * t : 12 + 3 * t] = rng.integers(150, 255, 3)
    audio = (0.1 * np.sin(np.arange(20000) * 0.05)).astype(np.float32)[None]  # (1, S): 1.25 s at 16 kHz
    return write_clip(tmp_path / "in.mp4", frames, fps=8.0, audio=audio, sample_rate=16000)


@pytest.fixture()
def vae_file(tiny_vae: VideoAutoencoder, tmp_path: Path) -> Path:
    tiny_vae.set_latent_stats(torch.full((4,), 0.1), torch.full((4,), 0.5))
    tiny_vae.save(str(tmp_path / "vae.pt"))
    return tmp_path / "vae.pt"


def test_pad_clip_repeats_the_last_frame_and_edges() -> None:
    x = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(1, 3, 5, 6, 7)
    padded, original = pad_clip(x, 4, 8)
    assert padded.shape == (1, 3, 8, 8, 8) and original == (5, 6, 7)
    assert padded[0, 0, 5:, 0, 0].tolist() == [4.0, 4.0, 4.0]
    assert pad_clip(x[:, :, :1], 4, 8)[0].shape[2] == 1  # an image stays an image


def test_encode_decode_round_trip_restores_the_clip_geometry(video: Path, vae_file: Path, tmp_path: Path) -> None:
    assert main(["encode", str(video), str(tmp_path / "z.safetensors"), "--vae", str(vae_file), "--quiet",
                 "--chunk-frames", "8", "--overlap-frames", "4"]) == 0
    z, meta = read_latent_file(tmp_path / "z.safetensors")
    assert z.shape == (4, 3, 5, 6)  # 10 frames padded to 12, 36x44 padded to 40x48
    assert meta["num_frames"] == "10" and meta["height"] == "36" and meta["width"] == "44"
    assert main(["decode", str(tmp_path / "z.safetensors"), str(tmp_path / "out.mp4"), "--vae", str(vae_file),
                 "--quiet", "--audio-from", str(video)]) == 0
    info = probe(tmp_path / "out.mp4")
    assert (info.num_frames, info.height, info.width, info.fps) == (10, 36, 44, 8.0)
    assert info.has_audio


def test_normalized_latents_are_denormalized_on_decode(video: Path, vae_file: Path, tmp_path: Path) -> None:
    from av_model.vae import load_video_autoencoder

    vae = load_video_autoencoder(vae_file)
    encode_file(video, tmp_path / "raw.safetensors", vae, chunks=None, progress=False)
    encode_file(video, tmp_path / "norm.safetensors", vae, chunks=None, normalize=True, progress=False)
    raw, _ = read_latent_file(tmp_path / "raw.safetensors")
    norm, meta = read_latent_file(tmp_path / "norm.safetensors")
    assert meta["normalized"] == "true"
    torch.testing.assert_close(norm, (raw - 0.1) / 0.5)
    with safe_open(str(tmp_path / "norm.safetensors"), framework="pt") as f:
        assert f.metadata()["vae_fingerprint"] == vae.fingerprint
    decode_file(tmp_path / "norm.safetensors", tmp_path / "a.mp4", vae, chunks=None, progress=False)
    decode_file(tmp_path / "raw.safetensors", tmp_path / "b.mp4", vae, chunks=None, progress=False)
    assert probe(tmp_path / "a.mp4").num_frames == probe(tmp_path / "b.mp4").num_frames == 10


def test_latents_of_another_autoencoder_are_refused(video: Path, vae_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(1)
    other = VideoAutoencoder(get_preset("debug"))
    encode_file(video, tmp_path / "z.safetensors", other, chunks=None, progress=False)
    assert main(["decode", str(tmp_path / "z.safetensors"), str(tmp_path / "o.mp4"), "--vae", str(vae_file)]) == 1
    assert "encoded by the autoencoder with fingerprint" in capsys.readouterr().err
    with pytest.raises(LatentFileError, match="not a safetensors file"):
        (tmp_path / "bad.safetensors").write_bytes(b"garbage")
        read_latent_file(tmp_path / "bad.safetensors")


def test_cli_reports_bad_inputs(vae_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(tmp_path / "missing.mp4"), str(tmp_path / "z.safetensors"), "--vae", str(vae_file)]) == 1
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["encode", "x.mp4", "z.safetensors", "--vae", str(tmp_path / "none.pt")]) == 1
    assert "no video autoencoder at" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0 and "encode" in capsys.readouterr().out
    assert main(["info", str(vae_file), "--json"]) == 0 and '"fingerprint"' in capsys.readouterr().out
    assert main(["presets"]) == 0 and "tae_16ch" in capsys.readouterr().out


def test_reconstruct_writes_a_set_eval_can_score(vae_file: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from av_model.data.synthetic import SynthConfig, make_dataset

    data = tmp_path / "data"
    make_dataset(data, n_train=1, n_val=0, n_heldout=2, config=SynthConfig(width=32, height=32, duration=1.0),
                 seed=0, workers=1, progress=False)
    out = tmp_path / "recon"
    assert main(["reconstruct", "--manifest", str(data / "manifest.jsonl"), "--split", "heldout", "--vae",
                 str(vae_file), "--out", str(out), "--device", "cpu"]) == 0
    clips = sorted(out.glob("*.mp4"))
    assert [c.stem for c in clips] == ["heldout-00000", "heldout-00001"]
    info = probe(clips[0])
    assert info.has_audio and info.has_video and abs(info.duration - 1.0) < 0.1
    side = json.loads(clips[0].with_suffix(".json").read_text())
    assert side["id"] == "heldout-00000" and side["prompt"]
    assert main(["reconstruct", "--manifest", str(data / "manifest.jsonl"), "--split", "nope", "--vae",
                 str(vae_file), "--out", str(out)]) == 1
    assert "no clip of split 'nope'" in capsys.readouterr().err
    # With --codec the sound goes through the codec's latents too: the ceiling of a generator decoding both.
    from audio_codec import EncodecCodec, get_preset
    from avio import read_audio

    codec = tmp_path / "codec.pt"
    EncodecCodec(get_preset("debug")).save(codec)
    both = tmp_path / "recon_both"
    assert main(["reconstruct", "--manifest", str(data / "manifest.jsonl"), "--split", "heldout", "--vae",
                 str(vae_file), "--codec", str(codec), "--out", str(both), "--device", "cpu"]) == 0
    side = json.loads((both / "heldout-00000.json").read_text())
    assert side["audio_reconstructed_by"] == str(codec)
    own, coded = read_audio(out / "heldout-00000.mp4")[0], read_audio(both / "heldout-00000.mp4")[0]
    assert own.shape == coded.shape and not torch.allclose(own, coded, atol=1e-2)  # a random codec changes it
    assert main(["reconstruct", "--manifest", str(data / "manifest.jsonl"), "--vae", str(vae_file),
                 "--codec", str(tmp_path / "none.pt"), "--out", str(both)]) != 0
    assert "avgen codec fit" in capsys.readouterr().err

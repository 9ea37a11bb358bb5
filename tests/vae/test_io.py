"""Saving and loading `vae.pt`: round trip, fingerprints, and clear refusals of foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from av_model.vae import VAECheckpointError, VideoAutoencoder, get_preset, load_video_autoencoder


def test_round_trip_keeps_outputs_stats_and_fingerprint(tiny_vae: VideoAutoencoder, tmp_path: Path) -> None:
    tiny_vae.set_latent_stats(torch.arange(4.0), torch.full((4,), 2.0))
    tiny_vae.metadata = {"global_step": 7}
    tiny_vae.save(str(tmp_path / "vae.pt"))
    loaded = load_video_autoencoder(tmp_path / "vae.pt")
    x = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), tiny_vae.encode(x))
        z = tiny_vae.encode(x)
        torch.testing.assert_close(loaded.decode(z), tiny_vae.decode(z))
    assert loaded.fingerprint == tiny_vae.fingerprint
    assert loaded.has_latent_stats and loaded.latent_std.tolist() == [2.0] * 4
    assert loaded.metadata == {"global_step": 7}
    assert loaded.config == tiny_vae.config and not loaded.training


def test_fingerprint_follows_weights_and_stats(tiny_vae: VideoAutoencoder) -> None:
    before = tiny_vae.fingerprint
    assert len(before) == 16 and before == tiny_vae.fingerprint
    tiny_vae.set_latent_stats(torch.zeros(4), torch.full((4,), 3.0))
    after_stats = tiny_vae.fingerprint
    with torch.no_grad():
        tiny_vae.decoder.last_layer.add_(1e-3)
    assert len({before, after_stats, tiny_vae.fingerprint}) == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="avgen vae fit"):
        load_video_autoencoder(tmp_path / "none.pt")


def test_checkpoint_of_another_architecture_is_refused(tiny_vae: VideoAutoencoder, tmp_path: Path) -> None:
    tiny_vae.save(str(tmp_path / "vae.pt"))
    payload = torch.load(tmp_path / "vae.pt", weights_only=True)
    payload["config"]["channels"] = [16, 16, 16]  # the weights are for (8, 8, 8)
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(VAECheckpointError, match="weights of another architecture"):
        load_video_autoencoder(tmp_path / "other.pt")
    payload["config"]["no_such_field"] = 1
    torch.save(payload, tmp_path / "unknown.pt")
    with pytest.raises(VAECheckpointError, match="cannot build.*no_such_field"):
        load_video_autoencoder(tmp_path / "unknown.pt")
    # weights of one preset put into another preset's model
    with pytest.raises(RuntimeError, match="size mismatch"):
        VideoAutoencoder(get_preset("small")).load_state_dict(tiny_vae.state_dict())


def test_foreign_and_corrupt_files_are_refused(tiny_vae: VideoAutoencoder, tmp_path: Path) -> None:
    torch.save({"format": "avgen.audio_codec", "state_dict": {}}, tmp_path / "codec.pt")
    with pytest.raises(VAECheckpointError, match="format: avgen.audio_codec"):
        load_video_autoencoder(tmp_path / "codec.pt")
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6"}, tmp_path / "last.ckpt")
    with pytest.raises(VAECheckpointError, match="Lightning training checkpoint"):
        load_video_autoencoder(tmp_path / "last.ckpt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(VAECheckpointError, match="not a readable video autoencoder file"):
        load_video_autoencoder(tmp_path / "junk.pt")
    tiny_vae.save(str(tmp_path / "vae.pt"))
    payload = torch.load(tmp_path / "vae.pt", weights_only=True)
    payload["state_dict"]["decoder.conv_out.spatial.bias"] += 1.0
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(VAECheckpointError, match="corrupt.*fingerprint"):
        load_video_autoencoder(tmp_path / "tampered.pt")

"""Official EnCodec checkpoints from local files; codec files; checkpoints of other architectures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from encodec.model import EncodecModel

from audio_codec import CheckpointMismatchError, EncodecCodec, PretrainedWeightsError, get_preset, load_codec
from audio_codec.encodec_codec import quiet_weight_norm


def _official_file(folder: Path) -> tuple[Path, EncodecModel]:
    """A randomly initialized EnCodec 24 kHz saved under an official-style name with its checksum."""
    torch.manual_seed(0)
    with quiet_weight_norm():
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    for layer in model.quantizer.vq.layers:  # as in trained weights: codebooks filled and marked ready
        layer._codebook.embed.normal_()
        layer._codebook.inited.fill_(1)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "weights.th"
    torch.save(model.state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = folder / f"encodec_24khz-{digest}.th"
    tmp.rename(path)
    return path, model


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EncodecModel]:
    return _official_file(tmp_path_factory.mktemp("official"))


def test_official_weights_load_from_a_file(official: tuple[Path, EncodecModel]) -> None:
    path, reference = official
    codec = EncodecCodec.from_pretrained("encodec_24khz", weights=path)
    x = 0.1 * torch.randn(1, 1, 4800)
    with torch.inference_mode():
        assert torch.equal(codec.encode(x), reference.encoder(x))
        # The discrete path matches the encodec package's own model.
        reference.set_target_bandwidth(6.0)
        ours = codec.encode_codes(x, 6.0)
        theirs = reference.encode(x)[0][0]
    assert torch.equal(ours, theirs)


def test_official_weights_are_found_in_the_torch_hub_cache(official: tuple[Path, EncodecModel], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = official
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "encodec_24khz-d7cc33bc.th").symlink_to(path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    # The official name promises another checksum than our random weights have: refused.
    with pytest.raises(PretrainedWeightsError, match="checksum mismatch"):
        load_codec("encodec_24khz")


def test_missing_weights_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(PretrainedWeightsError, match=r"encodec_24khz-d7cc33bc\.th.*hub/checkpoints"):
        EncodecCodec.from_pretrained("encodec_24khz")
    with pytest.raises(PretrainedWeightsError, match="not found"):
        EncodecCodec.from_pretrained("encodec_48khz", weights=tmp_path)
    with pytest.raises(KeyError, match="no official weights"):
        EncodecCodec.from_pretrained("small")


def test_checkpoint_of_another_architecture_is_refused(official: tuple[Path, EncodecModel], tmp_path: Path) -> None:
    path, _ = official
    # 24 kHz weights under a 48 kHz name: the loader reads the name, then the weights do not fit.
    wrong = tmp_path / "encodec_48khz.th"
    wrong.symlink_to(path)
    with pytest.raises(CheckpointMismatchError, match="another architecture"):
        load_codec(wrong)
    small = EncodecCodec(get_preset("small"))
    with pytest.raises(CheckpointMismatchError, match="of another shape"):
        small.load_model_weights(EncodecCodec(get_preset("debug")).model.state_dict())


def test_codec_file_round_trip(debug_codec: EncodecCodec, wav: torch.Tensor, tmp_path: Path) -> None:
    debug_codec.set_latent_stats(torch.arange(8.0), torch.ones(8) * 2, num_frames=99)
    path = debug_codec.save(tmp_path / "codec.pt", note="test")
    loaded = load_codec(path)
    assert loaded.fingerprint == debug_codec.fingerprint and loaded.has_latent_stats
    with torch.inference_mode():
        assert torch.equal(loaded.encode(wav), debug_codec.encode(wav))
        z = debug_codec.encode(wav)
        assert torch.equal(loaded.decode(z), debug_codec.decode(z))
        assert torch.equal(loaded.normalize(z), debug_codec.normalize(z))


def test_fingerprint_follows_weights_and_stats(debug_codec: EncodecCodec) -> None:
    before = debug_codec.fingerprint
    debug_codec.set_latent_stats(torch.zeros(8), torch.full((8,), 3.0), 10)
    after_stats = debug_codec.fingerprint
    with torch.no_grad():
        next(debug_codec.parameters()).add_(1e-3)
    assert len({before, after_stats, debug_codec.fingerprint}) == 3


def test_files_that_are_not_codecs_are_refused(tmp_path: Path, debug_codec: EncodecCodec) -> None:
    with pytest.raises(FileNotFoundError, match="avgen codec fit"):
        load_codec(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_codec(garbage)
    other = tmp_path / "vae.pt"
    torch.save({"format": "avgen-video-autoencoder", "state_dict": {}}, other)
    with pytest.raises(ValueError, match="not an audio codec checkpoint"):
        load_codec(other)
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6"}, lightning)
    with pytest.raises(ValueError, match="avgen codec export"):
        load_codec(lightning)
    # A codec file whose weights were swapped for another architecture's.
    payload = torch.load(debug_codec.save(tmp_path / "c.pt"), weights_only=True)
    payload["state_dict"] = {f"model.{k}": v for k, v in EncodecCodec(get_preset("small")).model.state_dict().items()}
    torch.save(payload, tmp_path / "swapped.pt")
    with pytest.raises(CheckpointMismatchError, match="debug"):
        load_codec(tmp_path / "swapped.pt")

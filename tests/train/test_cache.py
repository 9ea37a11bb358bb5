"""`avgen cache build|check`: encodes a manifest into shards, resumes, refuses other encoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from av_model.cache import build as cache_build
from av_model.cache import cli as cache_mod
from av_model.cache.cli import CacheBuildConfig, build_cache, check_cache, load_build_config
from av_model.cache.format import CacheError, ShardReader, read_index, read_meta

from .conftest import FPS, SIZE, Encoders


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five synthetic 1 s clips (3 train, 1 val, 1 held-out) at 32x32."""
    from av_model.data.synthetic import SynthConfig, make_dataset

    cfg = SynthConfig(width=SIZE[1], height=SIZE[0], fps=FPS, duration=1.0)
    return make_dataset(tmp_path_factory.mktemp("synth"), cfg, n_train=3, n_val=1, n_heldout=1, workers=1,
                        progress=False)


def _build(cfg: CacheBuildConfig, enc: Encoders) -> object:
    return build_cache(cfg, encoders=(enc.codec, enc.vae, enc.text))


def _config(manifest: Path, out: Path, enc: Encoders, **kw: object) -> CacheBuildConfig:
    return CacheBuildConfig(manifest=str(manifest), out=str(out), codec=str(enc.codec_path), vae=str(enc.vae_path),
                            size=SIZE, fps=FPS, shard_size=2, device="cpu", **{"workers": 0, **kw})


@pytest.mark.parametrize("workers", [0, 2])
def test_build_writes_shards_index_and_meta(dataset: Path, encoders: Encoders, tmp_path: Path, workers: int) -> None:
    # workers=2: one loader feeds all three shards in order, each shard exactly its own clips
    meta = _build(_config(dataset, tmp_path / "cache", encoders, workers=workers), encoders)
    assert meta.complete and meta.num_shards == 3 and len(meta.shards) == 3
    meta2, entries = read_index(tmp_path / "cache")
    assert meta2.fingerprints == {"codec": encoders.codec.fingerprint, "vae": encoders.vae.fingerprint,
                                  "text": encoders.text.fingerprint}
    assert sorted(e.split for e in entries) == ["heldout", "train", "train", "train", "val"]
    assert meta2.video_rate == FPS / 4 and meta2.audio_rate == 75.0
    reader = ShardReader(tmp_path / "cache")
    first = entries[0]
    t = reader.read(first)
    # 1 s at 16 fps through the 4x8x8 autoencoder; 75 codec frames; text tokens of the caption.
    assert tuple(t["video"].shape) == first.video_shape == (encoders.vae.latent_dim, 4, 4, 4)
    assert tuple(t["audio"].shape) == first.audio_shape == (encoders.codec.latent_dim, 75)
    assert t["text_mask"][0].all() and t["text"][0].shape == (first.text_lengths[0], 384)
    # The cached latents are what the encoders give for the decoded clip.
    from avio import read_clip

    clip = read_clip(first.source, fps=FPS, size=SIZE, duration=1.0, sample_rate=24000, channels=1)
    with torch.no_grad():
        video = encoders.vae.normalize(encoders.vae.encode(clip.frames.permute(3, 0, 1, 2)[None].float() / 127.5 - 1))
    torch.testing.assert_close(t["video"], video[0], atol=1e-5, rtol=1e-4)
    assert first.extra["family"] and "events" in first.extra
    assert check_cache(tmp_path / "cache") == []


def test_interrupted_build_resumes_and_skips_finished_shards(
    dataset: Path, encoders: Encoders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cache"
    real = cache_build._build_shard
    built: list[int] = []

    def crash_after_first(index: int, *args: object, **kwargs: object) -> dict:
        if built:
            raise KeyboardInterrupt  # the process dies while encoding the second shard
        built.append(index)
        return real(index, *args, **kwargs)

    monkeypatch.setattr(cache_build, "_build_shard", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        _build(_config(dataset, out, encoders), encoders)
    meta = read_meta(out)
    assert not meta.complete and [s["name"] for s in meta.shards] == ["shard_00000.safetensors"]
    with pytest.raises(CacheError, match="incomplete"):
        read_index(out)

    resumed: list[int] = []

    def record(index: int, *args: object, **kwargs: object) -> dict:
        resumed.append(index)
        return real(index, *args, **kwargs)

    monkeypatch.setattr(cache_build, "_build_shard", record)
    meta = _build(_config(dataset, out, encoders), encoders)
    assert resumed == [1, 2] and meta.complete
    assert len(read_index(out)[1]) == 5


def test_cache_of_other_encoders_is_refused(dataset: Path, encoders: Encoders, tmp_path: Path) -> None:
    from av_model.vae import VideoAutoencoder
    from av_model.vae import get_preset as vae_preset

    out = tmp_path / "cache"
    _build(_config(dataset, out, encoders, split="val"), encoders)
    torch.manual_seed(123)
    other = VideoAutoencoder(vae_preset("debug")).eval()  # same architecture, other weights
    with pytest.raises(CacheError, match="the vae fingerprint differs"):
        build_cache(_config(dataset, out, encoders, split="val"), encoders=(encoders.codec, other, encoders.text))
    cfg = _config(dataset, out, encoders, split="val")
    cfg.fps = 8.0
    with pytest.raises(CacheError, match="video.fps differs"):
        _build(cfg, encoders)


def test_check_reports_a_damaged_shard(dataset: Path, encoders: Encoders, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    _build(_config(dataset, out, encoders, split="train"), encoders)
    shard = out / "shards" / "shard_00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:40])
    problems = check_cache(out)
    assert any("shard_00001" in p for p in problems)
    assert cache_mod.main(["check", str(out)]) == 1


def test_cli_flags_and_config_file(dataset: Path, encoders: Encoders, tmp_path: Path) -> None:
    cfg_file = tmp_path / "cache.yaml"
    cfg_file.write_text(json.dumps({"manifest": str(dataset), "codec": str(encoders.codec_path),
                                    "vae": str(encoders.vae_path), "size": list(SIZE), "workers": 0}))
    out = tmp_path / "cache"
    rc = cache_mod.main(["build", "-c", str(cfg_file), "--out", str(out), "--split", "heldout", "--device", "cpu"])
    assert rc == 0
    assert [e.split for e in read_index(out)[1]] == ["heldout"]
    assert cache_mod.main(["check", str(out), "--codec", str(encoders.codec_path)]) == 0
    # Bad input: a clear message, exit status 1.
    assert cache_mod.main(["build", "--manifest", str(dataset), "--out", str(tmp_path / "x")]) == 1
    with pytest.raises(ValueError, match="unknown cache build options"):
        load_build_config(None, manifest="m", out="o", codec="c", vae="v", bogus=1)
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        CacheBuildConfig(manifest="m", out="o", codec="c", vae="v", shard_size=0)


def _manifest_with_bad_clips(dataset: Path, tmp_path: Path, *, good: int) -> Path:
    """The first `good` clips of the dataset, then a missing file and a corrupt one (relative paths)."""
    from avio import load_manifest, save_manifest

    folder = tmp_path / "listed"
    (folder / "clips").mkdir(parents=True)
    (folder / "clips" / "corrupt.mp4").write_bytes(b"junk" * 10)
    entries = load_manifest(dataset)[:good]
    manifest = save_manifest(entries, folder / "manifest.jsonl")
    with manifest.open("a") as f:
        f.write(json.dumps({"id": "gone", "path": "clips/gone.mp4", "caption": "x"}) + "\n")
        f.write(json.dumps({"id": "corrupt", "path": "clips/corrupt.mp4", "caption": "x"}) + "\n")
    return manifest


def test_bad_clips_are_skipped_and_named(dataset: Path, encoders: Encoders, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest_with_bad_clips(dataset, tmp_path, good=2)
    meta = _build(_config(manifest, tmp_path / "cache", encoders), encoders)
    assert meta.complete and len(read_index(tmp_path / "cache")[1]) == 2
    skipped = {s["id"]: s["error"] for shard in meta.shards for s in shard["skipped"]}
    assert set(skipped) == {"gone", "corrupt"}
    assert "manifest.jsonl:3 lists it as 'clips/gone.mp4'" in skipped["gone"]
    assert str(tmp_path / "listed" / "clips" / "gone.mp4") in skipped["gone"]
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "skipping gone:" in err and "2 clips could not be decoded" in err


def test_a_build_with_no_usable_clip_fails_and_a_rerun_retries(dataset: Path, encoders: Encoders, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest_with_bad_clips(dataset, tmp_path, good=0)
    args = ["build", "--manifest", str(manifest), "--out", str(tmp_path / "cache"), "--codec", str(encoders.codec_path),
            "--vae", str(encoders.vae_path), "--size", *map(str, SIZE), "--fps", str(FPS), "--workers", "0",
            "--device", "cpu"]
    assert cache_mod.main(args) == 1
    assert "no clip of" in " ".join(capsys.readouterr().err.split()) and not read_meta(tmp_path / "cache").complete
    # the missing file appears: the rerun tries the shard again instead of keeping it as finished
    import shutil

    from avio import load_manifest
    shutil.copy(load_manifest(dataset)[0].path, tmp_path / "listed" / "clips" / "gone.mp4")
    assert cache_mod.main(args) == 0
    assert [e.id for e in read_index(tmp_path / "cache")[1]] == ["gone"]


def test_strict_stops_at_the_first_bad_clip(dataset: Path, encoders: Encoders, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest_with_bad_clips(dataset, tmp_path, good=1)
    args = ["build", "--manifest", str(manifest), "--out", str(tmp_path / "cache"), "--codec", str(encoders.codec_path),
            "--vae", str(encoders.vae_path), "--size", *map(str, SIZE), "--fps", str(FPS), "--workers", "0",
            "--device", "cpu", "--strict"]
    assert cache_mod.main(args) == 2
    assert "clip 'gone'" in " ".join(capsys.readouterr().err.split())

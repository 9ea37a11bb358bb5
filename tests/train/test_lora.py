"""LoRA: adapters on attention, feed-forward and experts; training, the adapter file, merging, sampling."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from av_model.dit.config import get_preset
from av_model.dit.lora import LoRAConfig, apply_lora, has_lora, merge_lora, merge_lora_file, read_lora_file
from av_model.dit.model import AVDiT
from av_model.sample.cli import main as sample_main
from av_model.sample.generator_file import export_generator, load_generator
from av_model.text.batch import TextBatch
from av_model.train.cli import fit_main

from .conftest import Encoders, fit_args


def _model(seed: int = 0) -> AVDiT:
    torch.manual_seed(seed)
    model = AVDiT(get_preset("debug", video_channels=4, audio_channels=8, text_dims=(16,)))
    with torch.no_grad():  # a trained-looking model: the zero-initialized outputs would hide differences
        for p in model.parameters():
            p.normal_(std=0.05)
    return model.eval()


def _forward(model: AVDiT) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    video, audio = torch.randn(2, 4, 2, 4, 4, generator=g), torch.randn(2, 8, 12, generator=g)
    text = TextBatch((torch.randn(2, 3, 16, generator=g),), (torch.ones(2, 3, dtype=torch.bool),))
    with torch.no_grad():
        out = model(video, audio, torch.tensor([0.3, 0.8]), torch.tensor([0.5, 0.1]), text, 4.0, 75.0)
    return torch.cat([out.video.flatten(), out.audio.flatten()])


def _randomize_adapters(model: AVDiT) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B starts at zero: give the adapters an effect
                p.normal_(std=0.05)


def test_adapters_cover_attention_feed_forward_and_experts_and_freeze_the_rest() -> None:
    model = _model()
    adapted = apply_lora(model, LoRAConfig(rank=4, alpha=4))
    assert {"blocks.0.attn.qkv", "blocks.0.cross.kv", "blocks.1.moe.shared.w2", "blocks.1.moe.w13_ED2F",
            "blocks.0.moe.w2_EFD"} <= set(adapted)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert "blocks.0.moe.parametrizations.w13_ED2F.0.lora_A" in trainable  # the stacked experts' (E, D, R)
    assert _forward(model).equal(_forward(_model()))  # B = 0: training starts from the base exactly
    only = _model()
    assert apply_lora(only, LoRAConfig(targets=["experts", "video_in"])) == [
        "video_in", "blocks.0.moe.w13_ED2F", "blocks.0.moe.w2_EFD", "blocks.1.moe.w13_ED2F", "blocks.1.moe.w2_EFD"]
    with pytest.raises(ValueError, match="'atention' is neither a group"):
        apply_lora(_model(), LoRAConfig(targets=["atention"]))


def test_merged_model_equals_the_adapter_model() -> None:
    model = _model()
    apply_lora(model, LoRAConfig(rank=4, alpha=8, targets=["attention", "feed_forward", "experts"]))
    _randomize_adapters(model)
    with_adapters = _forward(model)
    assert not torch.allclose(with_adapters, _forward(_model()), atol=1e-3)  # the adapters do something
    merge_lora(model)
    assert not has_lora(model) and list(model.state_dict()) == list(_model().state_dict())  # a plain AVDiT again
    torch.testing.assert_close(_forward(model), with_adapters, rtol=1e-5, atol=1e-5)


def test_parameter_order_is_stable_through_training_steps() -> None:
    # What the EMA relies on: it pairs the averaged copy's parameters with the model's by position.
    model = _model()
    apply_lora(model, LoRAConfig(rank=2))
    before = [n for n, _ in model.named_parameters()]
    model.train()
    _forward(model)
    assert [n for n, _ in model.named_parameters()] == before


# ------------------------------------------------------------------------------ a LoRA training run
@pytest.fixture(scope="module")
def lora_run(trained: Path, fake_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lora_run")
    rc = fit_main(fit_args(fake_cache, root, "--model.init_from", str(trained / "final.ckpt"),
                           "--model.lora", "{rank: 4, alpha: 4, dropout: 0.1}", "--model.optimizer.lr", "0.01",
                           "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0"))
    assert rc == 0
    return root


def test_lora_training_keeps_the_base_and_writes_a_small_adapter(lora_run: Path, trained: Path) -> None:
    adapter = lora_run / "lora.safetensors"
    assert adapter.is_file()
    assert adapter.stat().st_size < 0.15 * (trained / "final.ckpt").stat().st_size
    lora = read_lora_file(adapter)
    assert lora.config == LoRAConfig(rank=4, alpha=4, dropout=0.1)
    assert lora.base["path"] == str(trained / "final.ckpt") and lora.base["sha256"] == load_generator(
        trained / "final.ckpt").sha256
    assert any(t.abs().max() > 0 for k, t in lora.tensors.items() if "lora_B" in k)  # it trained
    final = torch.load(lora_run / "final.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    base = load_generator(trained / "final.ckpt").model.state_dict()
    for name in ("blocks.0.attn.qkv.weight", "blocks.1.moe.w13_ED2F", "blocks.0.moe.expert_bias_E", "video_in.weight"):
        stored = {"blocks.0.attn.qkv.weight": "model.blocks.0.attn.qkv.base_layer.weight",
                  "blocks.1.moe.w13_ED2F": "model.blocks.1.moe.parametrizations.w13_ED2F.original"}.get(
                      name, f"model.{name}")
        torch.testing.assert_close(final[stored], base[name], rtol=0, atol=0, msg=name)


def test_adapter_file_merged_into_the_base_equals_the_lora_run(lora_run: Path, trained: Path, tmp_path: Path) -> None:
    merged_run = load_generator(lora_run / "final.ckpt").model  # the run's checkpoint, merged on load
    base = load_generator(trained / "final.ckpt").model
    merged_file = copy.deepcopy(base)
    merge_lora_file(merged_file, lora_run / "lora.safetensors")
    assert not has_lora(merged_file)
    for (name, a), b in zip(merged_run.state_dict().items(), merged_file.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(merged_file.state_dict()["blocks.0.attn.qkv.weight"], base.state_dict()["blocks.0.attn.qkv.weight"])
    exported = load_generator(export_generator(lora_run / "final.ckpt", tmp_path / "lora_export.pt")).model
    for (name, a), b in zip(exported.state_dict().items(), merged_run.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    zero = copy.deepcopy(base)
    merge_lora_file(zero, lora_run / "lora.safetensors", scale=0.0)  # scale 0 is the base model exactly
    for (name, a), b in zip(zero.state_dict().items(), base.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_lora_run_resumes_and_refuses_other_shapes_and_files(lora_run: Path, fake_cache: Path, tmp_path: Path,
                                                            trained: Path) -> None:
    other = AVDiT(get_preset("debug", video_channels=4, audio_channels=8, text_dims=(384,), expert_hidden=64))
    with pytest.raises(ValueError, match="trained on a generator of another shape: .*expert_hidden: 128"):
        merge_lora_file(other, lora_run / "lora.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="is not a LoRA adapter file"):
        read_lora_file(junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_lora_file(tmp_path / "none.safetensors")
    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    rc = fit_main(fit_args(fake_cache, run, "--model.init_from", str(trained / "final.ckpt"),
                           "--model.lora", "{rank: 4, alpha: 4, dropout: 0.1}", "--model.optimizer.lr", "0.01",
                           "--trainer.max_steps", "4", "--trainer.limit_val_batches", "0", "--ckpt_path", "last"))
    assert rc == 0
    resumed = torch.load(run / "final.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 4 and read_lora_file(run / "lora.safetensors").config.rank == 4


def test_sample_with_lora(lora_run: Path, trained: Path, encoders: Encoders, tmp_path: Path) -> None:
    def run(out: Path, *extra: str) -> int:
        return sample_main(["--ckpt", str(trained / "final.ckpt"), "--codec", str(encoders.codec_path),
                            "--vae", str(encoders.vae_path), "--out", str(out), "--steps", "2", "--device", "cpu",
                            "--duration", "1.0", "--prompt", "a red ball bounces", *extra])

    assert run(tmp_path, "--lora", str(lora_run / "lora.safetensors"), "--lora-scale", "0.5") == 0
    side = json.loads((tmp_path / "0000.json").read_text())
    assert side["lora"].endswith("lora.safetensors") and side["lora_scale"] == 0.5
    assert side["lora_sha256"] == read_lora_file(lora_run / "lora.safetensors").sha256
    stamp = (tmp_path / "0000.mp4").stat().st_mtime_ns
    assert run(tmp_path, "--lora", str(lora_run / "lora.safetensors"), "--lora-scale", "0.5") == 0
    assert (tmp_path / "0000.mp4").stat().st_mtime_ns == stamp  # same adapters and scale: kept
    assert run(tmp_path) == 0  # without the adapters: made again
    assert (tmp_path / "0000.mp4").stat().st_mtime_ns != stamp
    assert "lora_sha256" not in json.loads((tmp_path / "0000.json").read_text())
    with pytest.raises(SystemExit):
        run(tmp_path, "--lora-scale", "0.5")


def test_param_groups_select_adapters(fake_cache: Path) -> None:
    from av_model.cache.latents import LatentDataModule
    from av_model.train.lit import AVDiffusion

    module = AVDiffusion(preset="debug", cache_meta=LatentDataModule(str(fake_cache)).meta_dict,
                         lora=LoRAConfig(rank=2), param_groups=[{"name": "experts", "params": ["*.parametrizations.*"],
                                                                 "lr": 1e-2}])
    opt = module.configure_optimizers()["optimizer"]
    groups = {g["name"]: g for g in opt.param_groups}
    assert len(groups["experts"]["params"]) == 2 * 2 * 2 and groups["experts"]["initial_lr"] == 1e-2  # blocks x weights x (A, B)
    assert all(p.ndim == 3 for p in groups["experts"]["params"]) and groups["default"]["params"]
    assert not groups["default/no_decay"]["params"]  # adapters are matrices; the frozen biases are not trained

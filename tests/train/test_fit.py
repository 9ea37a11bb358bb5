"""`avgen fit`/`avgen validate` on a tiny cache: checkpoints, logs, EMA, samples, the NaN guard, the schedule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from av_model.cache.latents import LatentDataModule, LatentDataset, collate_latents
from av_model.sample.generator_file import export_generator, load_generator
from av_model.train.cli import fit_main, validate_main
from av_model.train.lit import AVDiffusion
from avtrain.optim import OptimConfig

from .conftest import Encoders, fit_args, write_fake_cache


def _metrics(root: Path) -> pd.DataFrame:
    (csv,) = sorted(root.glob("logs/version_*/metrics.csv"))[-1:]
    return pd.read_csv(csv)


def test_fit_writes_checkpoints_logs_and_sample_clips(trained: Path) -> None:
    from avio import probe

    assert (trained / "final.ckpt").is_file() and (trained / "checkpoints" / "last.ckpt").is_file()
    assert (trained / "checkpoints" / "step0000002.ckpt").is_file()
    m = _metrics(trained)
    for column in ("train/loss", "train/loss_video", "train/loss_audio", "train/router_z", "train/grad_norm",
                   "val/loss", "moe/imbalance_video", "moe_load_audio/expert_00", "moe_load_t0/expert_00", "grad_norm/blocks.0",
                   "train/device/items_per_sec", "train/device/flops_per_sec", "train/device/mfu"):
        assert column in m.columns, column
    assert m["train/loss"].dropna().size == 4 and m["train/loss"].dropna().map(float).gt(0).all()
    assert any(c.startswith("loss_by_t/") for c in m.columns)
    # MFU against the configured 1 TFLOP/s peak equals the measured FLOP/s divided by it.
    row = m.dropna(subset=["train/device/mfu"]).iloc[-1]
    assert row["train/device/mfu"] == pytest.approx(row["train/device/flops_per_sec"] / 1e12)
    (clip,) = sorted(trained.glob("logs/version_*/samples/step_0000004/*.mp4"))
    info = probe(clip)
    assert info.has_audio and info.has_video and info.sample_rate == 24000
    assert clip.with_suffix(".json").is_file()


def test_checkpoints_keep_ema_and_raw_weights(trained: Path) -> None:
    # weights_only=True refuses any pickled class of ours: checkpoints survive moving a module.
    last = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    final = torch.load(trained / "final.ckpt", map_location="cpu", weights_only=True)
    key = "model.blocks.0.attn.qkv.weight"
    # state_dict holds the EMA (what sampling uses), current_model_state the raw weights.
    assert not torch.equal(last["state_dict"][key], last["current_model_state"][key])
    torch.testing.assert_close(final["state_dict"][key], last["state_dict"][key])
    assert "optimizer_states" not in final and "LatentDataModule" in last


def test_validate_and_export(trained: Path, fake_cache: Path, tmp_path: Path) -> None:
    assert validate_main(fit_args(fake_cache, tmp_path, "--ckpt_path", str(trained / "final.ckpt"))) == 0
    exported = export_generator(trained / "final.ckpt", tmp_path / "dit.pt")
    a, b = load_generator(trained / "final.ckpt"), load_generator(exported)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=name)
    assert a.cache_meta == b.cache_meta and a.cache_meta["video"]["fps"] == 16.0


def test_nan_loss_stops_with_the_step_and_the_loss_named(
    tmp_path: Path, encoders: Encoders, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = write_fake_cache(tmp_path / "nan_cache", encoders, {"train": 4}, nan_video=True)
    rc = fit_main(fit_args(cache, tmp_path / "run", "--trainer.max_steps", "3", "--data.val_split", "null",
                           "--trainer.limit_val_batches", "0"))
    err = capsys.readouterr().err
    assert rc == 1
    assert "non-finite at step 0" in err and "train/loss_video=nan" in err
    assert not (tmp_path / "run" / "final.ckpt").exists()


@pytest.fixture(scope="module")
def module_and_batch(fake_cache: Path) -> tuple[AVDiffusion, dict]:
    torch.manual_seed(0)
    dm = LatentDataModule(str(fake_cache), batch_size=4, num_workers=0)
    module = AVDiffusion(preset="debug", cache_meta=dm.meta_dict,
                         optimizer=OptimConfig(lr=1e-3, warmup_steps=4, decay_steps=10, min_lr_ratio=0.1))
    ds = LatentDataset(fake_cache, "train")
    batch = collate_latents([ds[i] for i in (0, 2, 4, 6)])  # four 1 s clips
    return module, batch


def test_warmup_then_cosine_schedule(module_and_batch: tuple[AVDiffusion, dict]) -> None:
    module, _ = module_and_batch
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(15):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-5) and lrs[4] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5]))  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[4:14], lrs[5:14]))  # cosine decay
    assert lrs[14] == pytest.approx(1e-4)  # ends at min_lr_ratio * lr
    assert opt.param_groups[1]["weight_decay"] == 0.0  # biases and norms do not decay


def test_tokens_flops_and_noise_seeds(module_and_batch: tuple[AVDiffusion, dict]) -> None:
    module, batch = module_and_batch
    # 1 s: 4x4x4 video latents in 1x2x2 patches = 16 tokens; 75 audio frames in groups of 3 = 25.
    assert module.tokens_in_batch(batch) == 4 * (16 + 25)
    assert module.training_flops(batch) > 6 * module.tokens_in_batch(batch) * 1000
    losses = []
    for step in (7, 7, 8):
        gen = module._generator(0, step, 0, 0)
        with torch.no_grad():
            losses.append(float(module.flow.loss(module.model, batch["video"], batch["audio"], batch["text"],
                                                 module.video_rate, module.audio_rate, generator=gen).loss))
    assert losses[0] == losses[1] != losses[2]  # the noise is a function of the step


def test_bad_command_lines_are_explained(tmp_path: Path, fake_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fit_main(fit_args(tmp_path / "nowhere", tmp_path)) == 1
    assert "is not a latent cache" in capsys.readouterr().err
    assert fit_main(fit_args(fake_cache, tmp_path, "--model.optimizer.lr", "-1")) == 1
    assert "optimizer.lr must be > 0" in capsys.readouterr().err


def test_bad_configuration_is_explained(fake_cache: Path) -> None:
    meta = LatentDataModule(str(fake_cache)).meta_dict
    with pytest.raises(ValueError, match="contradicts the latent cache"):
        AVDiffusion(preset="debug", overrides={"video_channels": 3}, cache_meta=meta)
    with pytest.raises(ValueError, match="needs cache_meta"):
        AVDiffusion(preset="debug")
    with pytest.raises(KeyError, match="unknown DiT preset"):
        AVDiffusion(preset="huge", cache_meta=meta)
    with pytest.raises(ValueError, match="warmup_steps"):
        OptimConfig(warmup_steps=-1)


def test_ema_warmup_keeps_little_of_the_first_weights() -> None:
    import torch

    from av_model.train.callbacks import EMA

    def run(warmup: bool, updates: int = 1000) -> float:
        ema = EMA(decay=0.999, warmup=warmup)
        avg, cur = [torch.zeros(3)], [torch.ones(3)]  # the average starts at the first weights (0)
        for k in range(1, updates + 1):
            ema.should_update(step_idx=k)
            ema._lerp(avg, cur, None)
        return float(avg[0][0])  # the share of the newer weights in the average

    # Without warm-up 37% of the average is still the weights of step 0 after 1000 updates.
    assert abs(run(False) - (1 - 0.999 ** 1000)) < 1e-4
    assert run(True) > 0.99
    ema = EMA(decay=0.999)
    assert ema.decay_at(1) == 2 / 11 and ema.decay_at(10 ** 6) == 0.999

"""Fine-tuning: weights-only init, freezing, parameter groups (`model.init_from`, `freeze`, `param_groups`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from av_model.cache.latents import LatentDataModule
from av_model.sample.generator_file import load_generator
from av_model.train.cli import fit_main
from av_model.train.finetune import ParamGroupConfig
from av_model.train.lit import AVDiffusion
from avtrain.optim import OptimConfig

from .conftest import fit_args


@pytest.fixture(scope="module")
def meta(fake_cache: Path) -> dict:
    return LatentDataModule(str(fake_cache)).meta_dict


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_generator(path).model.state_dict()


def test_init_from_loads_every_weight_and_reports_it(trained: Path, meta: dict) -> None:
    torch.manual_seed(1)  # another fresh initialization than the base's
    module = AVDiffusion(preset="debug", cache_meta=meta, init_from=str(trained / "final.ckpt"))
    base = _state(trained / "final.ckpt")
    for name, value in module.model.state_dict().items():
        torch.testing.assert_close(value, base[name], rtol=0, atol=0, msg=name)
    report = module.init_report
    assert report is not None and len(report.loaded) == len(base) and not report.skipped
    assert len(report.sha256) == 64 and "loaded" in report.summary()


def test_init_from_refuses_a_model_of_another_shape_naming_keys_and_shapes(trained: Path, meta: dict) -> None:
    ckpt = str(trained / "final.ckpt")
    with pytest.raises(ValueError) as err:
        AVDiffusion(preset="debug", overrides={"expert_hidden": 64}, cache_meta=meta, init_from=ckpt)
    msg = str(err.value)
    assert "blocks.0.moe.w13_ED2F: [4, 64, 256] in the checkpoint, [4, 64, 128] in the model" in msg
    assert "model.init_skip" in msg and "blocks.0.moe." in msg  # what to do, with the prefix to add
    with pytest.raises(ValueError, match=r"missing from the checkpoint: blocks\.2\.attn\.qkv\.weight \[192, 64\]"):
        AVDiffusion(preset="debug", overrides={"depth": 3}, cache_meta=meta, init_from=ckpt)
    with pytest.raises(ValueError, match=r"not in the model: blocks\.1\.attn\.qkv\.weight"):
        AVDiffusion(preset="debug", overrides={"depth": 1}, cache_meta=meta, init_from=ckpt)


def test_init_skip_keeps_fresh_weights_and_reports_the_resized_ones(trained: Path, meta: dict) -> None:
    ckpt = str(trained / "final.ckpt")
    base = _state(trained / "final.ckpt")
    deeper = AVDiffusion(preset="debug", overrides={"depth": 3}, cache_meta=meta, init_from=ckpt,
                         init_skip=["blocks.2."])
    assert deeper.init_report is not None and all(k.startswith("blocks.2.") for k in deeper.init_report.skipped)
    torch.testing.assert_close(deeper.model.state_dict()["blocks.1.attn.qkv.weight"], base["blocks.1.attn.qkv.weight"])
    wider = AVDiffusion(preset="debug", overrides={"expert_hidden": 64}, cache_meta=meta, init_from=ckpt,
                        init_skip=["blocks.0.moe.", "blocks.1.moe."])
    report = wider.init_report
    assert report is not None
    assert report.resized["blocks.0.moe.w13_ED2F"] == ((4, 64, 256), (4, 64, 128))
    assert "resized: blocks.0.moe.w13_ED2F [4, 64, 256] in the checkpoint -> [4, 64, 128] here" in report.summary()
    torch.testing.assert_close(wider.model.state_dict()["video_in.weight"], base["video_in.weight"])
    with pytest.raises(ValueError, match="init_skip prefix 'blocks.9.' matches no weight"):
        AVDiffusion(preset="debug", cache_meta=meta, init_from=ckpt, init_skip=["blocks.9."])


def test_init_from_explains_a_missing_file_and_a_non_checkpoint(tmp_path: Path, meta: dict) -> None:
    with pytest.raises(FileNotFoundError, match="model.init_from .* does not exist"):
        AVDiffusion(preset="debug", cache_meta=meta, init_from=str(tmp_path / "nope.ckpt"))
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="is not a generator checkpoint: torch.load cannot read it"):
        AVDiffusion(preset="debug", cache_meta=meta, init_from=str(text))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="neither an `avgen fit` checkpoint nor an exported generator"):
        AVDiffusion(preset="debug", cache_meta=meta, init_from=str(other))


def test_init_from_errors_on_the_command_line(trained: Path, fake_cache: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = fit_main(fit_args(fake_cache, tmp_path, "--model.init_from", str(trained / "final.ckpt"),
                           "--model.overrides", "{expert_hidden: 64}", "--trainer.max_steps", "1"))
    err = capsys.readouterr().err
    assert rc == 1 and "does not fit this model" in err and "blocks.1.moe.w2_EFD" in err


def test_param_groups_and_freezing_set_the_optimizer(trained: Path, meta: dict) -> None:
    groups = [ParamGroupConfig("audio", ["audio_*"], lr=1e-2),
              ParamGroupConfig("experts", ["blocks.*.moe.w*"], lr=1e-4, weight_decay=0.0)]
    module = AVDiffusion(preset="debug", cache_meta=meta, init_from=str(trained / "final.ckpt"),
                         freeze=["video_in.*", "blocks.0.attn.*"], param_groups=groups,
                         optimizer=OptimConfig(lr=1e-3, warmup_steps=2, decay_steps=10, min_lr_ratio=0.1))
    assert "video_in.weight" in module.frozen_names and "blocks.0.attn.qkv.bias" in module.frozen_names
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert [g["name"] for g in opt.param_groups] == ["audio", "audio/no_decay", "experts", "default",
                                                      "default/no_decay"]
    by_name = dict(module.model.named_parameters())
    members = {g["name"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert members["audio"] == {id(by_name[n]) for n in ("audio_in.weight", "audio_out.adaln.1.weight",
                                                         "audio_out.linear.weight")}
    assert id(by_name["blocks.1.moe.w2_EFD"]) in members["experts"]
    assert opt.param_groups[2]["weight_decay"] == 0.0 and opt.param_groups[0]["weight_decay"] == 0.01
    in_optimizer = set().union(*members.values())
    assert in_optimizer == {id(p) for p in module.model.parameters() if p.requires_grad}
    assert id(by_name["video_in.weight"]) not in in_optimizer
    peaks = {"audio": 1e-2, "experts": 1e-4, "default": 1e-3}
    lrs = []
    for _ in range(13):
        lrs.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    for name, peak in peaks.items():  # every group: warm-up from 1%, its own peak, cosine to 10% of it
        assert lrs[0][name] == pytest.approx(peak * 0.01)
        assert lrs[2][name] == pytest.approx(peak)
        assert lrs[12][name] == pytest.approx(peak * 0.1)


def test_bad_freeze_and_group_patterns_are_explained(meta: dict) -> None:
    with pytest.raises(ValueError, match="model.freeze pattern 'video_inn.*' matches no weight"):
        AVDiffusion(preset="debug", cache_meta=meta, freeze=["video_inn.*"])
    module = AVDiffusion(preset="debug", cache_meta=meta, freeze=["audio_*"],
                         param_groups=[{"name": "audio", "params": ["audio_*"], "lr": 1e-2}])
    with pytest.raises(ValueError, match=r"param_groups\[audio\]: the patterns \['audio_\*'\] match no trainable"):
        module.configure_optimizers()
    with pytest.raises(ValueError, match="needs a name other than 'default'"):
        ParamGroupConfig("default", ["x"])
    with pytest.raises(ValueError, match="init_skip is set but model.init_from is not"):
        AVDiffusion(preset="debug", cache_meta=meta, init_skip=["audio_in."])


def test_frozen_weights_are_unchanged_after_training(trained: Path, fake_cache: Path, tmp_path: Path) -> None:
    base_ckpt = trained / "final.ckpt"
    rc = fit_main(fit_args(fake_cache, tmp_path, "--model.init_from", str(base_ckpt),
                           "--model.freeze", "[video_in.*, blocks.0.*]",
                           "--model.param_groups", "[{name: audio, params: ['audio_*'], lr: 0.01}]",
                           "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0"))
    assert rc == 0
    base = _state(base_ckpt)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for weights in (_state(tmp_path / "final.ckpt"),  # the EMA's
                    {k.removeprefix("model."): v for k, v in last["current_model_state"].items()}):  # the raw ones
        for name in ("video_in.weight", "blocks.0.attn.qkv.weight", "blocks.0.moe.w13_ED2F",
                     "blocks.0.moe.router_DE", "blocks.0.moe.expert_bias_E"):  # a frozen router keeps its bias
            torch.testing.assert_close(weights[name], base[name], rtol=0, atol=0, msg=name)
        for name in ("audio_in.weight", "blocks.1.attn.qkv.weight", "blocks.1.moe.w13_ED2F"):
            assert not torch.equal(weights[name], base[name]), name
    (groups,) = [s for s in last["optimizer_states"]]
    assert [g["name"] for g in groups["param_groups"]] == ["audio", "audio/no_decay", "default", "default/no_decay"]


def test_ema_skips_frozen_weights() -> None:
    from av_model.train.callbacks import EMA

    ema = EMA(decay=0.5, warmup=False)
    frozen, trained = torch.zeros(3), torch.zeros(3)
    ema._frozen_ptrs = {frozen.data_ptr()}
    ema._lerp([frozen.view(-1), trained.view(-1)], [torch.ones(3), torch.ones(3)], None)  # views, as AveragedModel passes
    assert frozen.eq(0).all() and trained.eq(0.5).all()

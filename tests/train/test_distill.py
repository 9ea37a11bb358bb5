"""`avgen distill` on a tiny cache: a few-step student that `avgen sample` reads, a loss that falls, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from av_model.cache.latents import LatentDataModule, LatentDataset, collate_latents
from av_model.sample.cli import main as sample_main
from av_model.sample.generator_file import load_generator
from av_model.train.distill import AVDistillation, DistillConfig, check_same_cache, teacher_target
from av_model.train.distill_cli import distill_main
from avtrain.optim import OptimConfig

from .conftest import Encoders

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def distill_args(teacher: Path, cache: Path, root: Path, *extra: str) -> list[str]:
    return ["-c", "configs/distill/debug.yaml", "--model.teacher", str(teacher), "--data.cache_dir", str(cache),
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra]


@pytest.fixture(scope="module")
def student(trained: Path, fake_cache: Path, encoders: Encoders, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distill")
    rc = distill_main(distill_args(trained / "final.ckpt", fake_cache, root, "--trainer.max_steps", "3",
                                   "--trainer.val_check_interval", "3", "--trainer.log_every_n_steps", "1",
                                   "--model.distill.teacher_steps", "8", "--samples.codec", str(encoders.codec_path),
                                   "--samples.vae", str(encoders.vae_path), "--throughput.window_size", "2",
                                   "--throughput.peak_tflops", "1.0"))
    assert rc == 0
    return root


def test_distill_writes_a_student_that_sample_reads_with_four_steps(student: Path, trained: Path, encoders: Encoders,
                                                                    tmp_path: Path) -> None:
    import pandas as pd

    (csv,) = sorted(student.glob("logs/version_*/metrics.csv"))[-1:]
    m = pd.read_csv(csv)
    for column in ("train/loss", "train/loss_video", "train/loss_audio", "val/loss", "train/device/flops_per_sec"):
        assert column in m.columns, column
    assert {"train/loss_k4", "train/loss_k8"} & set(m.columns)  # the loss per step count drawn
    # Sample clips during training come from the student's own sampler: 4 steps, guidance 1.
    (side,) = sorted(student.glob("logs/version_*/samples/step_0000003/*.json"))
    record = json.loads(side.read_text())
    assert record["steps"] == 4 and record["guidance"]["video"] == 1.0
    bundle = load_generator(student / "final.ckpt")
    teacher = load_generator(trained / "final.ckpt")
    assert bundle.sampler.steps == 4 and bundle.sampler.solver == "euler"
    assert bundle.sampler.guidance_video == bundle.sampler.guidance_audio == 1.0
    info = bundle.extra["distill"]
    assert info["teacher_sha256"] == teacher.sha256 and info["student_steps"] == [4, 8]
    assert info["guidance_video"] == 3.0 and info["teacher_steps"] == 8
    assert bundle.model.cfg == teacher.model.cfg  # the teacher's architecture
    # The teacher is not in the student's file.
    ckpt = torch.load(student / "final.ckpt", weights_only=False, map_location="cpu")
    assert not [k for k in ckpt["state_dict"] if not k.startswith("model.")]
    out = tmp_path / "clips"
    rc = sample_main(["--ckpt", str(student / "final.ckpt"), "--codec", str(encoders.codec_path), "--vae",
                      str(encoders.vae_path), "--prompt", "a red ball bounces on the floor", "--out", str(out),
                      "--duration", "1.0", "--device", "cpu"])
    assert rc == 0
    side = json.loads((out / "0000.json").read_text())
    assert side["steps"] == 4 and side["sampler"] == "euler"
    assert side["guidance"]["video"] == 1.0 and side["guidance"]["audio"] == 1.0
    assert (out / "0000.mp4").stat().st_size > 0
    # 8 steps on request (the second grid the student was trained for).
    rc = sample_main(["--ckpt", str(student / "final.ckpt"), "--codec", str(encoders.codec_path), "--vae",
                      str(encoders.vae_path), "--prompt", "a red ball", "--out", str(tmp_path / "k8"),
                      "--duration", "1.0", "--device", "cpu", "--steps", "8"])
    assert rc == 0 and json.loads((tmp_path / "k8" / "0000.json").read_text())["steps"] == 8


def test_a_fit_checkpoint_keeps_the_old_sampler_defaults(trained: Path, encoders: Encoders, tmp_path: Path) -> None:
    rc = sample_main(["--ckpt", str(trained / "final.ckpt"), "--codec", str(encoders.codec_path), "--vae",
                      str(encoders.vae_path), "--prompt", "a red ball", "--out", str(tmp_path), "--duration", "1.0",
                      "--device", "cpu", "--steps", "2"])
    assert rc == 0
    side = json.loads((tmp_path / "0000.json").read_text())
    assert side["sampler"] == "heun" and side["guidance"]["video"] == 3.0


@pytest.fixture(scope="module")
def module_and_batch(trained: Path, fake_cache: Path) -> tuple[AVDistillation, dict]:
    torch.manual_seed(0)
    meta = LatentDataModule(str(fake_cache), batch_size=4, num_workers=0).meta_dict
    module = AVDistillation(teacher=str(trained / "final.ckpt"), cache_meta=meta,
                            distill=DistillConfig(student_steps=[4], teacher_steps=8),
                            optimizer=OptimConfig(lr=1e-3, warmup_steps=0))
    ds = LatentDataset(fake_cache, "train")
    return module, collate_latents([ds[i] for i in (0, 2, 4, 6)])


def test_the_student_starts_as_the_teacher(module_and_batch: tuple[AVDistillation, dict]) -> None:
    module, _ = module_and_batch
    for (name, p), q in zip(module.model.named_parameters(), module.teacher.parameters()):
        assert torch.equal(p, q), name
        assert p.requires_grad and not q.requires_grad


def test_the_student_loss_falls_on_a_fixed_batch(module_and_batch: tuple[AVDistillation, dict]) -> None:
    module, batch = module_and_batch
    opt = torch.optim.Adam(module.model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        out = module.distill_loss(batch["video"], batch["audio"], batch["text"], torch.Generator().manual_seed(0))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[0] > 0
    assert losses[-1] < 0.5 * losses[0], losses
    # The teacher did not move.
    assert all(p.grad is None for p in module.teacher.parameters())


def test_the_target_is_the_teachers_multi_step_guided_jump(module_and_batch: tuple[AVDistillation, dict]) -> None:
    module, batch = module_and_batch
    cfg = DistillConfig(student_steps=[4], teacher_steps=8, guidance_video=1.0, guidance_audio=1.0)
    v, a, text = batch["video"], batch["audio"], batch["text"]
    t, t_next = torch.full((4,), 0.8), torch.full((4,), 0.4)
    u_v, u_a = teacher_target(module.teacher, v, a, t, t_next, text, cfg, 1, module.video_rate, module.audio_rate)
    with torch.no_grad():  # one unguided sub-step: the average velocity is the teacher's velocity at t
        out = module.teacher(v, a, t, t, text, module.video_rate, module.audio_rate)
    torch.testing.assert_close(u_v, out.video.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(u_a, out.audio.float(), rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_explained(fake_cache: Path, tmp_path: Path, trained: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc = distill_main(distill_args(tmp_path / "nope.ckpt", fake_cache, tmp_path / "run"))
    assert rc == 1 and "nope.ckpt does not exist" in capsys.readouterr().err
    meta = LatentDataModule(str(fake_cache)).meta_dict
    with pytest.raises(ValueError, match="model.teacher is required"):
        AVDistillation(teacher=None, cache_meta=meta)
    other = json.loads(json.dumps(meta))
    other["fingerprints"]["vae"] = "another"
    with pytest.raises(ValueError, match="differs from the one the teacher"):
        check_same_cache(meta, other, "teacher.ckpt")
    with pytest.raises(ValueError, match="teacher_steps"):
        DistillConfig(student_steps=[4, 8], teacher_steps=4)


def test_the_benchmark_samples_teacher_and_students_with_the_same_prompts_and_seeds(
        student: Path, trained: Path, encoders: Encoders, tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_bench", Path(__file__).resolve().parents[2] / "benchmarks"
                                                  / "distill_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [{"id": f"heldout-{i}", "split": "heldout", "family": "bounce", "caption": "a red ball bounces",
             "params": {"objects": [{"colour": "red", "shape": "ball", "size": "small", "material": "wood"}]}}
            for i in range(2)]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = bench.main(["--teacher", str(trained / "final.ckpt"), "--student", str(student / "final.ckpt"),
                     "--codec", str(encoders.codec_path), "--vae", str(encoders.vae_path), "--manifest", str(manifest),
                     "--n", "2", "--duration", "1.0", "--teacher-steps", "2", "--short-prompts", "--no-eval",
                     "--device", "cpu", "--out", str(tmp_path / "bench")])
    assert rc == 0
    result = json.loads((tmp_path / "bench" / "distill_bench.json").read_text())
    names = [s["system"] for s in result["systems"]]
    assert names == ["teacher_2", "teacher_2+enhance", "student_4", "student_4+enhance", "student_8",
                     "student_8+enhance"]
    assert result["prompts"] == ["red ball bouncing"] * 2
    side = json.loads((tmp_path / "bench" / "student_4+enhance" / "heldout-1.json").read_text())
    assert side["seed"] == 1 and side["steps"] == 4 and side["prompt_enhancer"] == "template"
    assert all(s["latency_s_mean"] > 0 for s in result["systems"])


def test_the_trajectory_benchmark_compares_at_equal_model_calls(student: Path, trained: Path, fake_cache: Path,
                                                                 tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_trajectory", Path(__file__).resolve().parents[2]
                                                  / "benchmarks" / "distill_trajectory.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rc = bench.main(["--teacher", str(trained / "final.ckpt"), "--student", str(student / "final.ckpt"),
                     "--cache", str(fake_cache), "--n", "2", "--reference-steps", "8", "--steps", "4",
                     "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    rows = json.loads((tmp_path / "distill_trajectory.json").read_text())["rows"]
    assert [(r["system"], r["model_calls"]) for r in rows] == [
        ("teacher 4 steps, guided", 8), ("teacher 2 steps, guided", 4),
        ("teacher 4 steps, unguided (student at init)", 4), ("student 4 steps", 4)]
    assert all(r["mse_video"] >= 0 and r["mse_audio"] >= 0 for r in rows)


def test_a_distillation_resumes_from_its_last_checkpoint(trained: Path, fake_cache: Path, tmp_path: Path) -> None:
    root = tmp_path / "run"
    args = distill_args(trained / "final.ckpt", fake_cache, root, "--model.distill.teacher_steps", "8",
                        "--checkpoint.every_n_train_steps", "2", "--trainer.val_check_interval", "100")
    assert distill_main([*args, "--trainer.max_steps", "2"]) == 0
    assert distill_main([*args, "--trainer.max_steps", "4", "--ckpt_path", "last"]) == 0
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 4 and ckpt["avgen"]["distill"]["teacher_steps"] == 8

"""How closely a few-step student follows its teacher's guided trajectory (no decoders, no metrics).

The distillation objective measured directly: from the same noise and prompts, the latents of

- the teacher at `--reference-steps` Euler steps with guidance (`--cfg`): the reference;
- the teacher at K steps with guidance (2K model calls), and at K/2 (K calls: the student's cost);
- the student at K steps, guidance 1 (K calls), for each K of `--steps`;
- the student's starting point: the teacher at K steps without guidance (K calls);

and the mean squared distance of each to the reference, per modality. Prompts and latent shapes are
the first `--n` clips of `--split` in the latent cache that have the first clip's length.

    python benchmarks/distill_trajectory.py --teacher T.ckpt --student S.ckpt --cache runs/cache
    python benchmarks/distill_trajectory.py --make-debug runs/distill_debug   # CPU, about 2 minutes

`--make-debug DIR` builds everything at debug size first (the tests' tiny encoders and a cache of
random latents, a debug teacher trained 200 steps, a student distilled 300 steps with
`configs/distill/debug.yaml`): a check that the student moves towards the guided trajectory, not a
quality figure. Prints a table and writes <out>/distill_trajectory.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from av_model.cache.latents import LatentDataset, collate_latents  # noqa: E402
from av_model.flow.sampling import SamplerConfig, sample  # noqa: E402
from av_model.sample.generator_file import load_generator  # noqa: E402


def make_debug(root: Path) -> tuple[Path, Path, Path]:
    """Tiny encoders, a random-latent cache, a debug teacher and its student (the tests' fixtures)."""
    from av_model.train.cli import fit_main
    from av_model.train.distill_cli import distill_main
    from tests.train import conftest as fixtures

    torch.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)

    class _Tmp:
        def mktemp(self, name: str) -> Path:
            (root / name).mkdir(exist_ok=True)
            return root / name

    enc = fixtures.encoders.__wrapped__(_Tmp())  # type: ignore[attr-defined]
    cache = fixtures.write_fake_cache(root / "cache", enc, {"train": 32, "val": 8}, durations=(1.0,))
    teacher, student = root / "teacher", root / "student"
    common = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--data.cache_dir", str(cache), "--trainer.val_check_interval", "1000"]
    if not (teacher / "final.ckpt").exists():
        assert fit_main(["-c", "configs/dit/debug.yaml", "--trainer.default_root_dir", str(teacher),
                         "--trainer.max_steps", "200", "--model.diagnostics.enabled", "false", *common]) == 0
    if not (student / "final.ckpt").exists():
        assert distill_main(["-c", "configs/distill/debug.yaml", "--model.teacher", str(teacher / "final.ckpt"),
                             "--trainer.default_root_dir", str(student), "--trainer.max_steps", "300",
                             "--model.distill.student_steps", "[4, 8]", "--model.distill.teacher_steps", "32",
                             "--model.optimizer.lr", "3e-4", "--data.batch_size", "8", *common]) == 0
    return teacher / "final.ckpt", student / "final.ckpt", cache


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path)
    p.add_argument("--student", type=Path)
    p.add_argument("--cache", type=Path, help="the latent cache (prompts and shapes of its first clips)")
    p.add_argument("--make-debug", type=Path, metavar="DIR", help="build a debug teacher, student and cache in DIR")
    p.add_argument("--split", default="val")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--reference-steps", type=int, default=32)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8])
    p.add_argument("--cfg", type=float, nargs=2, default=(3.0, 3.0), metavar=("VIDEO", "AUDIO"))
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    if args.make_debug:
        args.teacher, args.student, args.cache = make_debug(args.make_debug)
    if not (args.teacher and args.student and args.cache):
        p.error("give --teacher, --student and --cache, or --make-debug DIR")
    teacher = load_generator(args.teacher, map_location=args.device).model
    student_bundle = load_generator(args.student, map_location=args.device)
    student = student_bundle.model
    ds = LatentDataset(args.cache, args.split)
    items: list[dict[str, Any]] = []
    for i in range(len(ds)):  # clips of the first clip's length only: one batch, one shape
        item = ds[i]
        if not items or (item["video"].shape == items[0]["video"].shape and item["audio"].shape == items[0]["audio"].shape):
            items.append(item)
        if len(items) == args.n:
            break
    n = len(items)
    batch = collate_latents(items)
    rates = student_bundle.cache_meta
    kw: dict[str, Any] = dict(video_shape=tuple(batch["video"].shape), audio_shape=tuple(batch["audio"].shape),
                              video_rate=float(rates["video"]["latent_rate"]),
                              audio_rate=float(rates["audio"]["latent_rate"]), seed=list(range(args.seed, args.seed + n)))
    guided = {"guidance_video": args.cfg[0], "guidance_audio": args.cfg[1]}
    unguided = {"guidance_video": 1.0, "guidance_audio": 1.0}
    grid = student_bundle.sampler  # the student's shift rule; every run uses it

    def run(model: torch.nn.Module, steps: int, guidance: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = SamplerConfig(steps=steps, solver="euler", shift=grid.shift, shift_base_tokens=grid.shift_base_tokens,
                            shift_exponent=grid.shift_exponent, **guidance)
        return sample(model, batch["text"], config=cfg, **kw)

    ref_v, ref_a = run(teacher, args.reference_steps, guided)
    rows = []
    for k in args.steps:
        systems = [(f"teacher {k} steps, guided", teacher, k, guided, 2 * k),
                   (f"teacher {max(1, k // 2)} steps, guided", teacher, max(1, k // 2), guided, 2 * max(1, k // 2)),
                   (f"teacher {k} steps, unguided (student at init)", teacher, k, unguided, k),
                   (f"student {k} steps", student, k, unguided, k)]
        for name, model, steps, guidance, calls in systems:
            v, a = run(model, steps, guidance)
            rows.append({"K": k, "system": name, "model_calls": calls,
                         "mse_video": float((v - ref_v).square().mean()), "mse_audio": float((a - ref_a).square().mean())})
    result = {"reference": f"teacher {args.reference_steps} Euler steps, guidance {args.cfg[0]}/{args.cfg[1]}",
              "rows": rows, "n": n, "teacher": str(args.teacher), "student": str(args.student),
              "distill": student_bundle.extra.get("distill"), "device": args.device}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "distill_trajectory.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"MSE to the {result['reference']} ({n} clips)")
    print(f"{'system':<46} {'calls':>5} {'video':>10} {'audio':>10}")
    for r in rows:
        print(f"{r['system']:<46} {r['model_calls']:>5} {r['mse_video']:>10.5f} {r['mse_audio']:>10.5f}")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Few-step students against their teacher, and the prompt enhancer on short prompts.

With a teacher and a student checkpoint (`avgen distill`), the codec and autoencoder, and the
synthetic manifest (held-out rows: captions, ids and the scene params `avgen eval` scores against):

- every system samples the same prompts with the same seeds (clip i: seed + i): the teacher at
  `--teacher-steps` with its guidance (`--cfg`), the student at each of `--student-steps` (Euler,
  guidance 1: folded in);
- latency per clip: wall time of `AVPipeline.generate` for one clip at a time (after one warm-up
  clip; CUDA synchronized), decoding included, model loading not;
- quality: `avgen eval --metrics events,attributes` on the clips against the held-out rows (paired
  by id): event sync and prompt following, each beside its floor (mismatched pairs, shuffled
  captions) as the report gives them;
- `--short-prompts`: the prompts are short forms of the held-out captions ("red ball bouncing",
  from each row's params), and every system runs twice, without and with `--enhancer` (default
  "template"): attribute accuracy of short prompts with and without the enhancer.

    python benchmarks/distill_bench.py --teacher runs/demo/dit_moe/final.ckpt \\
        --student runs/distill/tiny_moe/final.ckpt --codec runs/demo/codec/codec.pt \\
        --vae runs/demo/vae/vae.pt --manifest runs/demo/data/manifest.jsonl --n 64 --teacher-steps 25

Prints a table and writes <out>/distill_bench.json (default benchmarks/results/distill_bench/).
Numbers need a trained teacher and student (a GPU run); the debug sizes of the tests only check
that the benchmark runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from av_model.sample.pipeline import AVPipeline, GeneratedClip  # noqa: E402
from av_model.text.enhance import load_enhancer  # noqa: E402

_VERB = {"bounce": "bouncing", "wall": "sliding between walls", "flash": "flashing", "pendulum": "on a pendulum"}


def short_prompt(row: dict[str, Any]) -> str:
    """A user's short prompt for a held-out row: the first object's colour and shape and the motion."""
    objs, family = row["params"]["objects"], row["family"]
    o = objs[0]
    if family == "multi" or len(objs) > 1:
        what = "objects bouncing" if family == "multi" else "shapes flashing"
        return f"{['no', 'one', 'two', 'three', 'four'][min(len(objs), 4)]} {what}, the first a {o['colour']} {o['shape']}"
    return f"{o['colour']} {o['shape']} {_VERB.get(family, '')}".strip()


def _rows(manifest: Path, split: str, n: int, single_object: bool = False) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == split
            and (not single_object or len(r.get("params", {}).get("objects", [])) == 1)][:n]
    if not rows:
        what = " with a single object" if single_object else ""
        raise SystemExit(f"{manifest} has no rows of split {split!r}{what}.")
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_system(pipe: AVPipeline, name: str, rows: list[dict[str, Any]], prompts: list[str], out: Path,
               sampler: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Sample every prompt one clip at a time, timing each; write the clips and sidecars under out/name."""
    folder = out / name
    kw = dict(duration=args.duration, seed=args.seed, batch_size=1, progress=False, **sampler)
    list(pipe.generate([prompts[0]], ids=["warmup"], **kw))  # first call: allocations, kernels, caches
    times = []
    for i, (row, prompt) in enumerate(zip(rows, prompts)):
        _sync(pipe.device)
        start = time.perf_counter()
        (clip,) = list(pipe.generate([prompt], ids=[str(row["id"])], seeds=[args.seed + i],
                                     **{k: v for k, v in kw.items() if k != "seed"}))
        _sync(pipe.device)
        times.append(time.perf_counter() - start)
        assert isinstance(clip, GeneratedClip)
        pipe.save([clip], folder)
    return {"system": name, "clips": len(times), "folder": str(folder), **sampler,
            "latency_s_mean": statistics.fmean(times), "latency_s_median": statistics.median(times),
            "latency_s_min": min(times), "enhancer": None if pipe.prompt_enhancer is None else pipe.prompt_enhancer.name}


def run_eval(systems: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """`avgen eval` on every system's clips; returns {system: {metric: {value, ci, floor...}}}."""
    # `avgen eval` runs from the repository root: every path goes to it absolute.
    cmd = [sys.executable, "-m", "av_model.cli", "eval"]
    for s in systems:
        cmd += ["--generated", f"{s['system']}={Path(s['folder']).resolve()}"]
    cmd += ["--reference", str(args.manifest.resolve()), "--reference-split", args.split, "--pair-by", "id", "--metrics",
            args.metrics, "--out", str((out / "eval").resolve()), "--no-progress", "--device", args.device]
    if args.codec:
        cmd += ["--codec", str(args.codec.resolve())]
    print("$", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": f"avgen eval exited with {proc.returncode}: {proc.stderr[-2000:]}"}
    report = json.loads((out / "eval" / "report.json").read_text())
    table: dict[str, Any] = {}
    for r in report["results"]:
        floors = {k: v for k, v in (r.get("extra") or {}).items() if "floor" in k or "ceiling" in k or "mismatch" in k}
        table.setdefault(r["system"], {})[r["metric"]] = {
            "value": r["value"], "ci": [r["ci_low"], r["ci_high"]], "status": r["status"], "reason": r["reason"],
            "n": r["n_generated"], **floors}
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--student", type=Path, help="the student's final.ckpt (without it the teacher alone runs, e.g. "
                   "to measure the prompt enhancer with --short-prompts)")
    p.add_argument("--codec", type=Path, required=True)
    p.add_argument("--vae", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True, help="synthetic manifest (its rows of --split are used)")
    p.add_argument("--split", default="heldout")
    p.add_argument("--n", type=int, default=16, help="prompts (default 16)")
    p.add_argument("--duration", type=float, help="seconds per clip (default: the training clips')")
    p.add_argument("--teacher-steps", type=int, default=25)
    p.add_argument("--teacher-solver", choices=("euler", "heun"), default="heun")
    p.add_argument("--cfg", type=float, nargs=2, default=(3.0, 3.0), metavar=("VIDEO", "AUDIO"))
    p.add_argument("--student-steps", type=int, nargs="+", default=[4, 8])
    p.add_argument("--short-prompts", action="store_true", help="short prompts, each system without and with "
                   "--enhancer")
    p.add_argument("--enhancer", default="template", help="'template' or a local causal LM folder")
    p.add_argument("--single-object", action="store_true",
                   help="only rows of one object, whose colour, shape and motion the short prompt names: the "
                        "attribute metric scores every object of a row, and a short prompt names only the first")
    p.add_argument("--metrics", default="events,attributes")
    p.add_argument("--no-eval", action="store_true", help="latency only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distill_bench")
    args = p.parse_args(argv)

    rows = _rows(args.manifest, args.split, args.n, args.single_object)
    prompts = [short_prompt(r) for r in rows] if args.short_prompts else [str(r["caption"]) for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    plans: list[tuple[Path, str, dict[str, Any]]] = [
        (args.teacher, f"teacher_{args.teacher_steps}", {"steps": args.teacher_steps, "solver": args.teacher_solver,
                                                         "cfg_video": args.cfg[0], "cfg_audio": args.cfg[1]})]
    plans += [(args.student, f"student_{k}", {"steps": k, "solver": "euler", "cfg_video": 1.0, "cfg_audio": 1.0})
              for k in (args.student_steps if args.student is not None else [])]
    enhancers: list[Any] = [None, load_enhancer(args.enhancer)] if args.short_prompts else [None]
    systems = []
    for ckpt, name, sampler in plans:
        pipe = AVPipeline.from_checkpoint(ckpt, args.codec, args.vae, device=args.device)
        if args.duration is None:
            args.duration = float(pipe.meta.get("train_duration") or 2.0)
        for enhancer in enhancers:
            pipe.prompt_enhancer = enhancer
            label = name + ("+enhance" if enhancer is not None else "")
            systems.append(run_system(pipe, label, rows, prompts, args.out, sampler, args))
            print(f"{label}: {systems[-1]['latency_s_mean']:.3f} s per clip", file=sys.stderr)
        del pipe
    quality = {} if args.no_eval else run_eval(systems, args, args.out)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    result = {"systems": systems, "quality": quality, "prompts": prompts, "ids": [r["id"] for r in rows],
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "environment": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                              platform.processor() or platform.machine(), "torch": torch.__version__}}
    path = args.out / "distill_bench.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    # Table: latency and speed-up against the teacher, then each metric's value beside its floor.
    base = systems[0]["latency_s_mean"]
    metrics = sorted({m for s in quality.values() if isinstance(s, dict) for m in s})
    head = f"{'system':<24} {'steps':>5} {'cfg':>9} {'s/clip':>8} {'speed-up':>8}" + "".join(f" {m + ' (floor)':>14}" for m in metrics)
    print(head)
    for s in systems:
        q = quality.get(s["system"], {}) if isinstance(quality, dict) else {}
        # each value beside its floor (what a model ignoring its condition scores), as the report gives it
        cells = "".join(f" {(q.get(m, {}).get('value') or float('nan')):>6.3f} ({(q.get(m, {}).get('floor') or float('nan')):.3f})"
                        for m in metrics)
        print(f"{s['system']:<24} {s['steps']:>5} {s['cfg_video']:>4g}/{s['cfg_audio']:<4g} "
              f"{s['latency_s_mean']:>8.3f} {base / s['latency_s_mean']:>7.1f}x{cells}")
    if "error" in quality:
        print(quality["error"], file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

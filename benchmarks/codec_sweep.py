"""Codec recipe sweep: train variants of a codec config over several seeds, side by side, and
measure every run the way `codec_bench.py` does (onsets of held-out clips kept within 10 ms,
SI-SNR, mel distance).

A recipe that keeps 95% of the onsets in one run may keep 91% with the next seed, so a recipe is
judged over seeds. On one H100 a 1500-step `small` run takes about 20 s, and four run at a time:

    python benchmarks/codec_sweep.py --variants benchmarks/codec_sweep.yaml \
        --manifest runs/demo/data/manifest.jsonl --seeds 0 1 2 --parallel 4 --accelerator gpu

`--variants` is a YAML file with `base` (a codec config, e.g. configs/codec/small_adversarial.yaml)
and `variants`: a mapping from a name to the `avgen codec fit` overrides of that variant, as a
mapping of dotted keys to values (`model.loss.disc_start_step: 750`) or a list of arguments.
Each run trains under `--root/<variant>-s<seed>/` (its log in `fit.log`) and is measured by
`codec_bench.py` (JSON in `bench.json`). A failed run is reported with the end of its log and
the sweep goes on.

Prints one row per run and a summary per variant (mean, min and max of the onset recall over
seeds, and how many runs pass), and writes the JSON (`--out`) and a plot of every run's recall
next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
CRITERION = 0.95  # share of the original's onsets kept within the tolerance (the codec's target)


@dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    overrides: tuple[str, ...]
    root: Path


def _as_args(name: str, overrides: Any) -> list[str]:
    """`avgen codec fit` arguments from a variant's overrides (a mapping or a list)."""
    if overrides is None:
        return []
    if isinstance(overrides, list):
        return [str(v) for v in overrides]
    if isinstance(overrides, dict):
        args: list[str] = []
        for key, value in overrides.items():
            text = json.dumps(value) if isinstance(value, list | dict | bool) or value is None else str(value)
            args += [f"--{key.lstrip('-')}", text]
        return args
    raise ValueError(f"variant {name!r}: overrides must be a mapping of dotted keys to values or a list of "
                     f"arguments, got {type(overrides).__name__}.")


def load_variants(path: Path) -> tuple[Path, dict[str, list[str]]]:
    """(base config, {variant: fit arguments}) from a sweep YAML; clear errors for a malformed one."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"cannot read the sweep file {path}: {exc}") from None
    if not isinstance(doc, dict) or "base" not in doc or not isinstance(doc.get("variants"), dict) \
            or not doc["variants"]:
        raise SystemExit(f"{path}: expected `base: <codec config>` and `variants: {{name: overrides, ...}}` "
                         f"with at least one variant.")
    base = Path(doc["base"])
    base = base if base.is_absolute() else ROOT / base
    if not base.exists():
        raise SystemExit(f"{path}: base config {doc['base']} does not exist.")
    try:
        variants = {str(name): _as_args(str(name), ov) for name, ov in doc["variants"].items()}
    except ValueError as exc:
        raise SystemExit(f"{path}: {exc}") from None
    return base, variants


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def run_one(run: Run, *, base: Path, manifest: Path, split: str, accelerator: str, threads: int,
            workers: int, stats_clips: int) -> dict[str, Any]:
    """Train one run and measure it; returns its row (with `error` when it failed)."""
    run.root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    row: dict[str, Any] = {"variant": run.variant, "seed": run.seed, "overrides": list(run.overrides),
                           "dir": str(run.root)}
    fit = [sys.executable, "-m", "av_model.cli", "codec", "fit", "-c", str(base), "--data.manifest", str(manifest),
           "--seed_everything", str(run.seed), "--trainer.default_root_dir", str(run.root),
           "--trainer.accelerator", accelerator, "--trainer.enable_progress_bar", "false",
           "--data.num_workers", str(workers), "--data.stats_clips", str(stats_clips), *run.overrides]
    t0 = time.perf_counter()
    with (run.root / "fit.log").open("w") as log:
        rc = subprocess.call(fit, stdout=log, stderr=subprocess.STDOUT, env=env)
    row["train_s"] = time.perf_counter() - t0
    if rc != 0 or not (run.root / "codec.pt").exists():
        row["error"] = f"training failed (exit {rc}): ...{_tail(run.root / 'fit.log')}"
        return row
    bench = [sys.executable, str(ROOT / "benchmarks" / "codec_bench.py"), "--codec", str(run.root / "codec.pt"),
             "--manifest", str(manifest), "--split", split, "--threads", str(threads), "--seconds", "1",
             "--reps", "1", "--out", str(run.root / "bench.json")]
    with (run.root / "bench.log").open("w") as log:
        rc = subprocess.call(bench, stdout=log, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        row["error"] = f"measuring failed (exit {rc}): ...{_tail(run.root / 'bench.log')}"
        return row
    q = json.loads((run.root / "bench.json").read_text())["quality"]
    row.update({k: q[k] for k in ("onsets_original", "onset_recall", "onset_mean_abs_offset_ms", "si_snr_db",
                                  "mel_distance", "worst_band_deficit_db")})
    row["passes"] = bool(q["onset_recall"] >= CRITERION)
    return row


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: runs, failures, mean/min/max onset recall over the measured seeds, passes."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        recalls = [r["onset_recall"] for r in mine if "onset_recall" in r]
        out.append({
            "variant": variant, "runs": len(mine), "failed": sum("error" in r for r in mine),
            "recall_mean": statistics.fmean(recalls) if recalls else float("nan"),
            "recall_min": min(recalls, default=float("nan")), "recall_max": max(recalls, default=float("nan")),
            "passes": sum(bool(r.get("passes")) for r in mine),
        })
    return out


def _table(title: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
    print(f"\n## {title}\n| {' | '.join(cols)} |\n|{'---|' * len(cols)}")
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        print(f"| {' | '.join(cells)} |")


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Every run's onset recall per variant, with the 95% line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(variants) + 2), 3.5))
    for i, variant in enumerate(variants):
        ys = [100 * r["onset_recall"] for r in rows if r["variant"] == variant and "onset_recall" in r]
        ax.scatter([i] * len(ys), ys, color="tab:blue", alpha=0.8)
        if ys:
            ax.hlines(statistics.fmean(ys), i - 0.25, i + 0.25, color="tab:blue")
    ax.axhline(100 * CRITERION, color="tab:red", linestyle="--", linewidth=1, label="criterion (95%)")
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    ax.set_ylabel("onsets kept within 10 ms (%)")
    ax.set_title("codec sweep: every run (dots) and the mean over seeds (bar)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", type=Path, required=True, help="sweep YAML: base config and variants")
    ap.add_argument("--manifest", type=Path, default=Path("runs/demo/data/manifest.jsonl"), help="dataset manifest")
    ap.add_argument("--split", default="heldout", help="split measured (default heldout)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of every variant (default 0)")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1; 4 suit one H100)")
    ap.add_argument("--accelerator", default="cpu", help="trainer accelerator: cpu or gpu (default cpu)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads per run (default: the machine's cores divided by --parallel)")
    ap.add_argument("--workers", type=int, default=None, help="data loader workers per run (default 2 on gpu, 1 on cpu)")
    ap.add_argument("--stats-clips", type=int, default=32, help="clips for each codec's latent statistics (default 32)")
    ap.add_argument("--root", type=Path, default=Path("runs/codec_sweep"), help="where the runs train")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "codec_sweep.json")
    args = ap.parse_args(argv)
    if args.parallel < 1 or (args.threads is not None and args.threads < 1):
        ap.error("--parallel and --threads must be >= 1")
    if not args.manifest.exists():
        ap.error(f"manifest {args.manifest} does not exist (make one with `avgen data synth`)")
    base, variants = load_variants(args.variants)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.parallel)
    workers = args.workers if args.workers is not None else (2 if args.accelerator == "gpu" else 1)
    runs = [Run(name, seed, tuple(ov), args.root / f"{name}-s{seed}")
            for name, ov in variants.items() for seed in args.seeds]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(run_one, r, base=base, manifest=args.manifest, split=args.split,
                               accelerator=args.accelerator, threads=threads, workers=workers,
                               stats_clips=args.stats_clips) for r in runs]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="codec runs"):
            row = fut.result()
            rows.append(row)
            status = (f"error: {row['error'].splitlines()[0]}" if "error" in row else
                      f"{100 * row['onset_recall']:.1f}% of {row['onsets_original']} onsets")
            tqdm.write(f"  {row['variant']} seed {row['seed']}: {status} ({row['train_s']:.0f} s)")
    order = {(r.variant, r.seed): i for i, r in enumerate(runs)}
    rows.sort(key=lambda r: order[(r["variant"], r["seed"])])
    summary = summarize(rows)
    _table("runs", rows, ["variant", "seed", "onset_recall", "onset_mean_abs_offset_ms", "mel_distance",
                          "si_snr_db", "train_s"])
    _table("per variant (over seeds)", summary, ["variant", "runs", "failed", "recall_mean", "recall_min",
                                                 "recall_max", "passes"])
    for r in rows:
        if "error" in r:
            print(f"\n{r['variant']} seed {r['seed']} {r['error']}")
    result = {
        "benchmark": "codec_sweep",
        "command": " ".join(["python", "benchmarks/codec_sweep.py", *(argv if argv is not None else sys.argv[1:])]),
        "base": str(base.relative_to(ROOT) if base.is_relative_to(ROOT) else base),
        "accelerator": args.accelerator, "parallel": args.parallel, "threads_per_run": threads,
        "wall_s": time.perf_counter() - t0, "criterion": CRITERION, "runs": rows, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot = args.out.with_suffix(".png")
    if any("onset_recall" in r for r in rows):
        _plot(rows, plot)
        print(f"\nwrote {args.out}, {plot}")
    else:
        print(f"\nwrote {args.out} (no run was measured)")
    return 1 if all("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

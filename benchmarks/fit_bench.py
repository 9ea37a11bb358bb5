"""The real `avgen fit` beside its bare training step, against a peak measured in the same run.

A timing loop (`train_bench.py`) shows what one step can do; a researcher's GPU-hours go to the
whole Lightning run: data loading, logging, EMA, the NaN guard, checkpoint callbacks. This runs
both on the same random-latent cache and reports the sustained rate of the real run, so the gap
between them is a number:

1. the device's peak: a large matmul (bf16 on CUDA, fp32 on CPU), timed here, not a table value;
2. the bare step of each config's model (`train_bench.bench`: forward, backward, clipping, fused
   AdamW; the config's activation checkpointing and compilation);
3. `avgen fit -c CONFIG` for `--steps` steps on the same cache, validation and checkpoints off,
   EMA from step 0. Its sustained rate is read from the run's own log (`train/time`, the
   training time Lightning's throughput monitor keeps, validation excluded) between the first
   logged step after `--skip` warm-up steps and the last.

    python benchmarks/fit_bench.py                                     # CUDA: h100_1b, 150 steps
    python benchmarks/fit_bench.py -c configs/dit/small_moe.yaml -c configs/dit/small_dense.yaml
    python benchmarks/fit_bench.py --fit-arg=--model.parallel.activation_checkpointing=selective
    python benchmarks/fit_bench.py --quick                             # CPU: debug sizes, a few steps

With two or more configs the table adds each step time over the first's (e.g. MoE over its dense
twin). Prints a table and writes benchmarks/results/fit_bench.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _host import write_json  # noqa: E402
from train_bench import RESULTS, _device_name, bench, make_cache  # noqa: E402

from av_model.train.callbacks import measure_matmul_flops  # noqa: E402


def _model_section(config: Path) -> dict:
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"cannot read config {config}: {err}") from None
    model = (data or {}).get("model") or {}
    if "preset" not in model:
        raise SystemExit(f"{config} has no model.preset; give a generator config (configs/dit/*.yaml).")
    return {"model": model, "batch": ((data.get("data") or {}).get("batch_size"))}


def sustained(metrics_csv: Path, skip: int) -> dict:
    """Steps per second between the first logged step at or after `skip` and the last logged step."""
    df = pd.read_csv(metrics_csv)
    if "train/time" not in df:
        raise SystemExit(f"{metrics_csv} has no train/time column: was the throughput callback off?")
    rows = df[["step", "train/time"]].dropna().sort_values("step")
    after = rows[rows["step"] >= skip]
    if len(after) < 2:
        raise SystemExit(f"{metrics_csv}: fewer than two logged steps after the {skip} warm-up steps; "
                         "run more --steps or lower --skip.")
    first, last = after.iloc[0], after.iloc[-1]
    steps = float(last["step"] - first["step"])
    seconds = float(last["train/time"] - first["train/time"])
    return {"fit_steps_timed": int(steps), "fit_seconds_timed": seconds, "fit_step_ms": 1e3 * seconds / steps}


def run_fit(config: Path, cache: Path, batch: int, steps: int, root: Path, peak_tflops: float, cuda: bool,
            fit_args: list[str]) -> Path:
    """`avgen fit` as a researcher runs it, minus validation and checkpoints; returns its metrics.csv."""
    cmd = [sys.executable, "-m", "av_model.cli", "fit", "-c", str(config),
           "--data.cache_dir", str(cache), "--data.batch_size", str(batch),
           "--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(root),
           "--trainer.limit_val_batches", "0", "--checkpoint.save_top_k", "0", "--checkpoint.save_last", "false",
           "--ema.start_step", "0", "--throughput.peak_tflops", f"{peak_tflops:.2f}"]
    if not cuda:
        cmd += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true"]
    cmd += fit_args
    print("$ " + " ".join(cmd[2:]), flush=True)
    proc = subprocess.run(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if proc.returncode != 0:
        raise SystemExit(f"avgen fit exited with {proc.returncode} for {config}; its output is above.")
    found = sorted(root.glob("logs/version_*/metrics.csv"))
    if not found:
        raise SystemExit(f"avgen fit wrote no metrics.csv under {root}/logs.")
    return found[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", type=Path, action="append", help="generator config (repeat to compare)")
    p.add_argument("--quick", action="store_true", help="CPU, debug sizes, a few steps (checks the benchmark runs)")
    p.add_argument("--geometry", help="clip geometry of the random cache (a preset name; default: the first "
                                      "config's preset)")
    p.add_argument("--batch", type=int, help="clips per step (default: the first config's data.batch_size)")
    p.add_argument("--steps", type=int, help="steps of `avgen fit` (default 150 on CUDA, 12 on CPU)")
    p.add_argument("--skip", type=int, help="warm-up steps left out of the sustained rate (default steps / 5)")
    p.add_argument("--bare-steps", type=int, help="timed steps of the bare step (default 20 on CUDA, 3 on CPU)")
    p.add_argument("--clips", type=int, help="clips in the random cache (default 256 on CUDA, 16 on CPU)")
    p.add_argument("--cache", type=Path, help="an existing latent cache instead of a random one")
    p.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for every `avgen fit` (repeat; use --fit-arg=--x.y=z)")
    p.add_argument("--work", type=Path, help="where the cache and runs go (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=RESULTS / "fit_bench.json", help="JSON results file")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available() and not args.quick
    device = torch.device("cuda" if cuda else "cpu")
    configs = args.config or [Path("configs/dit/h100_1b.yaml" if cuda else "configs/dit/debug.yaml")]
    sections = [_model_section(c) for c in configs]
    geometry = args.geometry or sections[0]["model"]["preset"]
    batch = args.batch or sections[0]["batch"] or 4
    steps = args.steps or (150 if cuda else 12)
    skip = args.skip if args.skip is not None else steps // 5
    work = args.work or Path(tempfile.mkdtemp(prefix="fit_bench_"))
    # 8192-square bf16 matmuls, 20 of them: a stable peak on a GPU (4096 runs short of it)
    peak = (measure_matmul_flops(device, size=8192, repeats=20) if cuda else measure_matmul_flops(device)) / 1e12
    print(f"device: {_device_name(device)}; measured peak {peak:.3g} TFLOP/s "
          f"({'bf16' if cuda else 'fp32'} matmul)", flush=True)
    cache = args.cache or make_cache(work / "cache", geometry, args.clips or (256 if cuda else 16))

    rows = []
    for config, sec in zip(configs, sections):
        model = sec["model"]
        par = model.get("parallel") or {}
        bare = bench(model["preset"], batch, args.bare_steps or (20 if cuda else 3), device,
                     ac=par.get("activation_checkpointing", "none"), compile_blocks=bool(par.get("compile", False)),
                     peak_tflops=peak, overrides=model.get("overrides") or {}, geometry=geometry)
        if cuda:
            torch.cuda.empty_cache()
        flops_per_step = bare["tflops_per_s"] * 1e12 * bare["step_ms"] / 1e3
        fit = sustained(run_fit(config, cache, batch, steps, work / f"run_{config.stem}", peak, cuda,
                                args.fit_arg), skip)
        fit_tflops = flops_per_step / (fit["fit_step_ms"] / 1e3) / 1e12
        rows.append({
            "config": str(config), "preset": model["preset"], "batch": batch,
            "tokens_per_step": bare["tokens_per_step"], "params_active_M": bare["params_active_M"],
            "bare_step_ms": bare["step_ms"], "bare_tflops_per_s": bare["tflops_per_s"], "bare_mfu": bare["tflops_per_s"] / peak,
            **fit,
            "fit_tokens_per_s": bare["tokens_per_step"] / (fit["fit_step_ms"] / 1e3),
            "fit_tflops_per_s": fit_tflops, "fit_mfu": fit_tflops / peak,
            "fit_over_bare": fit["fit_step_ms"] / bare["step_ms"],
            "peak_mem_GiB_bare": bare.get("peak_mem_GiB"),
        })
    for r in rows:
        r["step_over_first"] = r["fit_step_ms"] / rows[0]["fit_step_ms"]

    cols = [("config", "config"), ("bare ms", "bare_step_ms"), ("bare TFLOP/s", "bare_tflops_per_s"),
            ("bare MFU", "bare_mfu"), ("fit ms", "fit_step_ms"), ("fit TFLOP/s", "fit_tflops_per_s"),
            ("fit MFU", "fit_mfu"), ("fit/bare", "fit_over_bare"), ("/first", "step_over_first")]
    print(f"\n{_device_name(device)}, peak {peak:.3g} TFLOP/s measured, batch {batch}, "
          f"{rows[0]['tokens_per_step']} tokens/step, fit: {steps} steps ({skip} warm-up left out)")
    print(" | ".join(f"{h:>13}" for h, _ in cols))
    for r in rows:
        print(" | ".join(f"{Path(r[k]).stem:>13}" if k == "config" else f"{r[k]:>13.4g}" for _, k in cols))
    meta = {"device": _device_name(device), "torch": torch.__version__, "peak_tflops_measured": peak,
            "command": " ".join(["python benchmarks/fit_bench.py", *(argv if argv is not None else sys.argv[1:])]),
            "date": dt.date.today().isoformat(), "steps": steps, "skip": skip, "geometry": geometry}
    write_json(args.out, {"meta": meta, "rows": rows}, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

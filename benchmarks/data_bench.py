"""Data pipeline benchmark: synthetic clip generation, mp4 writing and decoding, onset accuracy.

Measures, on the machine it runs on:

1. generation in memory (render + sound), clips per second in one process, per family;
2. `make_dataset` (generation + H.264/AAC encoding, worker processes): wall and CPU seconds, clips/s;
3. decoding those mp4 files with `read_clip`: in one process, and through `ClipDataModule`'s
   DataLoader with worker processes, clips per second;
4. onset accuracy of the dataset: onsets detected (weights-free, `eval.onsets`) in the decoded
   audio of the mp4 files against the ground-truth event times (precision, recall, offset).

Prints a table and writes benchmarks/results/data_bench.json.

    python benchmarks/data_bench.py            # the demo's dataset: 1,000 + 100 + 100 clips, 2 workers
    python benchmarks/data_bench.py --quick    # 100 + 10 + 10 clips, a smoke run on a CPU
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from av_model.data.datamodule import ClipDataModule  # noqa: E402
from av_model.data.synthetic import FAMILIES, SynthConfig, generate_clip, make_dataset  # noqa: E402
from avio import load_manifest, read_clip  # noqa: E402
from benchmarks._host import cpu_model, write_json  # noqa: E402


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker pools)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system



def bench_generation(cfg: SynthConfig, per_family: int) -> dict[str, float]:
    rates = {}
    for family in FAMILIES:
        generate_clip(0, cfg, family)  # warm caches
        t0 = time.perf_counter()
        for seed in range(per_family):
            generate_clip(seed, cfg, family)
        rates[family] = per_family / (time.perf_counter() - t0)
    return rates


def bench_make_dataset(out: Path, cfg: SynthConfig, counts: tuple[int, int, int], workers: int) -> dict[str, Any]:
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    make_dataset(out, cfg, *counts, seed=0, workers=workers, overwrite=True, progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    n = sum(counts)
    size = sum(p.stat().st_size for p in out.rglob("*.mp4"))
    return {"clips": n, "workers": workers, "wall_s": wall, "cpu_s": cpu, "clips_per_s": n / wall,
            # what the same work takes on `workers` idle cores: CPU time spread over them
            "idle_estimate_s": cpu / workers, "mb": size / 1e6}


def bench_decode(manifest: Path, n: int, cfg: SynthConfig, workers: int) -> dict[str, float]:
    entries = load_manifest(manifest)[:n]
    t0 = time.perf_counter()
    for e in entries:
        read_clip(e.path, fps=cfg.fps, size=cfg.height, duration=cfg.duration, sample_rate=cfg.sample_rate, channels=1)
    single = len(entries) / (time.perf_counter() - t0)
    dm = ClipDataModule(str(manifest), batch_size=16, num_workers=workers, fps=cfg.fps, size=cfg.height,
                        duration=cfg.duration, sample_rate=cfg.sample_rate, random_offset=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    t0 = time.perf_counter()
    clips = 0
    for batch in loader:
        clips += len(batch["id"])
    loader_rate = clips / (time.perf_counter() - t0)  # includes starting the workers
    return {"read_clip_per_s": single, "dataloader_per_s": loader_rate, "dataloader_clips": clips,
            "dataloader_workers": workers}


def bench_onsets(manifest: Path, n: int, tolerance: float) -> dict[str, Any]:
    try:
        from eval.onsets import detect_onsets, match_events
    except ImportError as err:  # the metrics package is optional for this benchmark
        return {"skipped": f"eval.onsets not importable ({err})"}
    per_family: dict[str, list[Any]] = {f: [] for f in FAMILIES}
    entries = load_manifest(manifest)[:n]
    for e in entries:
        clip = read_clip(e.path)
        ref = np.array([ev["time"] for ev in e.extra["events"]])
        pred = detect_onsets(clip.audio.numpy(), clip.sample_rate)
        per_family[e.extra["family"]].append(match_events(pred, ref, tolerance))
    out: dict[str, Any] = {"tolerance_s": tolerance, "clips": len(entries)}
    for family, matches in per_family.items():
        if not matches:
            continue
        offsets = [m.mean_abs_offset_ms for m in matches if m.mean_abs_offset_ms == m.mean_abs_offset_ms]
        out[family] = {
            "precision": float(np.mean([m.precision for m in matches])),
            "recall": float(np.mean([m.recall for m in matches])),
            "mean_abs_offset_ms": float(np.mean(offsets)) if offsets else float("nan"),
            "events": int(sum(m.n_ref for m in matches)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100/10/10 clips instead of 1000/100/100")
    parser.add_argument("--workers", type=int, default=2, help="processes for writing and decoding")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_bench.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    counts = (100, 10, 10) if args.quick else (1000, 100, 100)
    cfg = SynthConfig()
    results: dict[str, Any] = {
        "command": "python benchmarks/data_bench.py" + (" --quick" if args.quick else ""),
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
                     "platform": platform.platform()},
        "config": {"width": cfg.width, "height": cfg.height, "fps": cfg.fps, "duration": cfg.duration,
                   "sample_rate": cfg.sample_rate},
    }
    print(f"data benchmark: {cfg.width}x{cfg.height} px, {cfg.fps:g} fps, {cfg.duration:g} s, {cfg.sample_rate} Hz; "
          f"{cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    results["generate_clips_per_s"] = bench_generation(cfg, 10 if args.quick else 40)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synth"
        results["make_dataset"] = bench_make_dataset(out, cfg, counts, args.workers)
        manifest = out / "manifest.jsonl"
        results["decode"] = bench_decode(manifest, 50 if args.quick else 200, cfg, args.workers)
        results["onsets"] = bench_onsets(manifest, 50 if args.quick else 250, tolerance=0.02)

    rows = [("generate in memory, " + f, f"{r:.0f} clips/s") for f, r in results["generate_clips_per_s"].items()]
    md = results["make_dataset"]
    rows += [
        (f"make_dataset, {md['clips']} clips, {md['workers']} workers",
         f"{md['wall_s']:.1f} s wall ({md['clips_per_s']:.0f} clips/s), {md['cpu_s']:.1f} s CPU "
         f"-> {md['idle_estimate_s']:.1f} s on {md['workers']} idle cores, {md['mb']:.0f} MB"),
        ("decode mp4, read_clip, 1 process", f"{results['decode']['read_clip_per_s']:.0f} clips/s"),
        (f"decode mp4, DataLoader, {args.workers} workers", f"{results['decode']['dataloader_per_s']:.0f} clips/s"),
    ]
    ons = results["onsets"]
    if "skipped" in ons:
        rows.append(("onsets", ons["skipped"]))
    else:
        for f in FAMILIES:
            if f in ons:
                o = ons[f]
                rows.append((f"onsets in decoded mp4, {f} (±{ons['tolerance_s'] * 1000:.0f} ms)",
                             f"P {o['precision']:.3f}  R {o['recall']:.3f}  |offset| {o['mean_abs_offset_ms']:.2f} ms "
                             f"({o['events']} events)"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

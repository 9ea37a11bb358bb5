"""Throughput of the metrics: clips per second of feature extraction and of the weights-free metrics.

Clips are procedural (the embedded default's geometry: 64 x 64 px, 16 fps, 2 s, 24 kHz mono, with
sounds at visible contacts), written as H.264 + AAC mp4. Every measurement is end to end: decoding,
resampling, preprocessing and the network (or the weights-free computation), as `avgen eval` runs
it. Networks are the published architectures at full size with random weights (throughput does not
depend on the weight values): VGGish, PANNs CNN14, CLAP (HTSAT, transformers defaults), CLIP
(ViT-B/32, transformers defaults) and the project's codec ("small" preset). I3D is measured only
when its TorchScript file is found (`--i3d` or `$AVGEN_WEIGHTS`), since its architecture ships only
as that file.

    python benchmarks/eval_bench.py --quick              # 8 clips, CPU
    python benchmarks/eval_bench.py --clips 64           # more clips; GPU if there is one
    python benchmarks/eval_bench.py --device cuda --i3d weights/i3d_torchscript.pt
    python benchmarks/eval_bench.py --jobs 1,2,4 --clips 48 --no-extractors   # `avgen eval --jobs N`

`--jobs` also times one evaluation of the synthetic benchmark as the demo's stage 8 runs it (events,
AV-Align, motion, flicker and prompt attributes, with calibration; two systems of `--clips` held-out
clips each) once per number of processes, side by side, and checks that the figures are the same.

Prints a table and writes benchmarks/results/eval_bench.json.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avio import write_clip  # noqa: E402
from benchmarks._host import write_json  # noqa: E402
from eval.features.base import FeatureExtractor, extract_features  # noqa: E402
from eval.features.weights import WeightsMissing, resolve_weights  # noqa: E402
from eval.metrics import METRICS  # noqa: E402
from eval.metrics.base import MetricOptions  # noqa: E402
from eval.sets import ClipSet, load_set  # noqa: E402
from eval.testing import bouncing_clip, save_clap_folder, save_clip_folder  # noqa: E402


def _make_clips(folder: Path, n: int) -> ClipSet:
    for i in range(n):
        c = bouncing_clip(i, duration=2.0, sample_rate=24000, min_event_gap=0.15)
        write_clip(folder / f"clip{i:03d}.mp4", c.frames, c.fps, c.audio, c.sample_rate)
    return load_set(folder, name="bench")


def _extractors(tmp: Path, device: str, i3d: str | None) -> dict[str, Any]:
    """name -> extractor, or a string saying why it is not measured."""
    from eval.features.panns import Cnn14, PANNsExtractor
    from eval.features.vggish import VGGish, VGGishExtractor

    torch.manual_seed(0)
    out: dict[str, Any] = {}
    torch.save(VGGish().state_dict(), tmp / "vggish.pth")
    out["vggish"] = VGGishExtractor(tmp / "vggish.pth", device=device)
    import torchaudio

    state = Cnn14().state_dict()
    state["logmel_extractor.melW"] = torchaudio.functional.melscale_fbanks(513, 50.0, 14000.0, 64, 32000, norm="slaney",
                                                                           mel_scale="slaney")
    torch.save({"model": state}, tmp / "panns.pth")
    out["panns"] = PANNsExtractor(tmp / "panns.pth", device=device)

    from eval.features.clap import ClapExtractor
    from eval.features.clip import ClipExtractor

    out["clap"] = ClapExtractor(save_clap_folder(tmp / "clap"), device=device)
    out["clip"] = ClipExtractor(save_clip_folder(tmp / "clip"), device=device)
    try:
        from audio_codec import EncodecCodec, get_preset
        from eval.features.codec import CodecExtractor

        EncodecCodec(get_preset("small")).save(tmp / "codec.pt")
        out["codec"] = CodecExtractor(tmp / "codec.pt", device=device)
    except ImportError as err:
        out["codec"] = f"not measured: {err}"
    try:
        from eval.features.i3d import I3DExtractor

        out["i3d"] = I3DExtractor(resolve_weights("i3d", None) if i3d is None else i3d, device=device)
    except WeightsMissing as err:
        out["i3d"] = f"not measured: {err}"
    return out


def _time_extractor(ext: FeatureExtractor, clips: ClipSet, batch: int, workers: int) -> dict[str, Any]:
    extract_features(ext, clips.records[:2], batch_size=batch, num_workers=0, progress=False)  # warm-up
    if ext.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    feats = extract_features(ext, clips.records, batch_size=batch, num_workers=workers, progress=False)
    if ext.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"clips_per_s": len(clips) / dt, "seconds": dt, "rows": int(feats.values.shape[0]),
            "dim": int(feats.values.shape[1])}


def _time_metric(name: str, clips: ClipSet) -> dict[str, Any]:
    opts = MetricOptions(n_boot=100)
    t0 = time.perf_counter()
    METRICS[name]().evaluate(clips, None, opts, {"progress": False})  # fresh cache: flow computed here
    dt = time.perf_counter() - t0
    return {"clips_per_s": len(clips) / dt, "seconds": dt}


def _time_jobs(tmp: Path, n: int, jobs: list[int]) -> list[dict[str, Any]]:
    """Wall time of one synthetic-benchmark evaluation per number of processes (`avgen eval --jobs`)."""
    import json
    import random

    from av_model.data.synthetic import SynthConfig, make_dataset
    from eval.metrics.attributes import _FITTED
    from eval.runner import EvalConfig, evaluate

    manifest = make_dataset(tmp / "synth", SynthConfig(), n_train=100, n_val=0, n_heldout=n, seed=0, workers=2,
                            progress=False)
    held = [json.loads(line) for line in manifest.read_text().splitlines()]
    held = [r for r in held if r["split"] == "heldout"]
    ids = [r["id"] for r in held]
    systems = []
    for name, names in (("own", ids), ("shuffled", random.Random(0).sample(ids, len(ids)))):
        listing = tmp / f"{name}.jsonl"
        listing.write_text("".join(json.dumps({"id": i, "path": str(manifest.parent / r["path"])}) + "\n"
                                   for i, r in zip(names, held)))
        systems.append(f"{name}={listing}")
    metrics = ["events", "av_align", "motion", "flicker", "attributes"]
    evaluate(EvalConfig(generated=systems[:1], reference=str(manifest), reference_split="heldout", progress=False,
                        metrics=metrics, max_clips=2))  # warm-up: the first evaluation imports the readers' libraries
    rows: list[dict[str, Any]] = []
    first: list[Any] | None = None
    for j in jobs:
        _FITTED.clear()  # every run calibrates its recognisers afresh
        cfg = EvalConfig(generated=systems, reference=str(manifest), reference_split="heldout", progress=False,
                         metrics=metrics, jobs=j)
        t0 = time.perf_counter()
        report = evaluate(cfg)
        dt = time.perf_counter() - t0
        figures = [(r.metric, r.system, r.value, r.ci_low, r.ci_high) for r in report.results]
        first = figures if first is None else first
        rows.append({"jobs": j, "seconds": dt, "clips": 3 * n + 100, "same_figures": figures == first})
    for r in rows:
        r["speedup"] = rows[0]["seconds"] / r["seconds"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=32, help="clips to embed (default 32)")
    p.add_argument("--quick", action="store_true", help="8 clips: a CPU smoke run")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu or cuda")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--i3d", help="TorchScript I3D file (else $AVGEN_WEIGHTS/i3d_torchscript.pt if present)")
    p.add_argument("--jobs", metavar="LIST", help="also time the synthetic benchmark's evaluation with these numbers "
                                                  "of processes, e.g. 1,2,4 (the first is the baseline)")
    p.add_argument("--no-extractors", action="store_true", help="skip the per-metric and extractor throughput")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "eval_bench.json"))
    args = p.parse_args(argv)
    jobs = [int(j) for j in args.jobs.split(",")] if args.jobs else []
    n = 8 if args.quick else args.clips
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    rows: list[dict[str, Any]] = []
    jobs_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.no_extractors:
            clips = _make_clips(tmp / "clips", n)
            for name in ("av_align", "events", "flicker", "motion"):
                rows.append({"metric": name, "extractor": "weights-free", "device": "cpu", **_time_metric(name, clips)})
            for name, ext in _extractors(tmp, device, args.i3d).items():
                if isinstance(ext, str):
                    rows.append({"metric": name, "extractor": name, "device": device, "note": ext})
                    continue
                rows.append({"metric": name, "extractor": name, "device": device,
                             **_time_extractor(ext, clips, args.batch_size, args.num_workers)})
        if jobs:
            jobs_rows = _time_jobs(tmp, n, jobs)
    print(f"{'metric / extractor':<20} {'device':<6} {'clips/s':>9} {'seconds':>8}  rows x dim")
    for r in rows:
        if "note" in r:
            print(f"{r['metric']:<20} {r['device']:<6} {'-':>9} {'-':>8}  {r['note'][:70]}")
        else:
            shape = f"{r['rows']} x {r['dim']}" if "rows" in r else ""
            print(f"{r['metric']:<20} {r['device']:<6} {r['clips_per_s']:>9.2f} {r['seconds']:>8.2f}  {shape}")
    if jobs_rows:
        print(f"\nsynthetic benchmark evaluation, {jobs_rows[0]['clips']} clips read, {os.cpu_count()} cores")
        print(f"{'jobs':>4} {'seconds':>8} {'speedup':>8}  same figures")
        for r in jobs_rows:
            print(f"{r['jobs']:>4} {r['seconds']:>8.1f} {r['speedup']:>8.2f}  {r['same_figures']}")
    result = {
        "benchmark": "eval_bench", "clips": n, "jobs": jobs_rows, "cpu_count": os.cpu_count(), "clip": "64x64 px, 16 fps, 2 s, 24 kHz mono, H.264 + AAC",
        "batch_size": args.batch_size, "num_workers": args.num_workers, "torch_threads": torch.get_num_threads(),
        "hardware": {"cpu": platform.processor() or platform.machine(), "platform": platform.platform(),
                     "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None},
        "torch": torch.__version__, "rows": rows,
    }
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

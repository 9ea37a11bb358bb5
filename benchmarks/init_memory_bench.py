"""Peak host memory (RSS) per rank while the generator starts up, with and without meta-device init.

    python benchmarks/init_memory_bench.py                       # h100_1b and cluster_8b, as below
    python benchmarks/init_memory_bench.py --runs h100_1b:ordinary:8 h100_1b:meta:8 --out docs/perf/x.json

Each run is a fresh process that plays one rank (rank 0) of a world of N ranks through torch's
"fake" process group (collectives do nothing; FSDP2 shards exactly as on N ranks): it builds the
model (`ordinary`: on the CPU, fp32; `meta`: on the meta device), shards it with
`apply_parallelism` (FSDP2 over N ranks, fp32), and for `meta` allocates and initializes its
shards (`materialize_and_initialize`). It reports its peak RSS (`ru_maxrss`), the bytes of its
parameter shards and the seconds taken. The table gives the peak above the interpreter's own
(torch imported, no model) as a fraction of the whole model's fp32 bytes.

Runs that would not fit this machine are computed instead and marked so: the ordinary build peaks
at the whole model in fp32 (plus the interpreter), whatever the world size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = ["h100_1b:ordinary:8", "h100_1b:meta:8", "cluster_8b:meta:32"]
COMPUTED = ["cluster_8b:ordinary:32"]  # 175 GB in fp32: does not fit a 24 GiB machine


def _child(preset: str, mode: str, world: int) -> dict[str, object]:
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from av_model.dit import AVDiT, get_preset
    from av_model.train.meta_init import build_on_meta, materialize_and_initialize
    from av_model.train.parallel import ParallelConfig, apply_parallelism

    torch.manual_seed(0)
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())
    start = time.perf_counter()
    cfg = get_preset(preset)
    if mode == "meta":
        model, plan = build_on_meta(lambda: AVDiT(cfg))
    else:
        model = AVDiT(cfg)
    built = time.perf_counter()
    mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("data_parallel",))
    apply_parallelism(model, ParallelConfig(param_dtype="float32"), mesh)
    if mode == "meta":
        materialize_and_initialize(model, plan)
    done = time.perf_counter()
    local = sum(p.to_local().numel() * p.element_size() for p in model.parameters())  # type: ignore[operator]
    total = sum(p.numel() for p in model.parameters())
    dist.destroy_process_group()
    return {"preset": preset, "mode": mode, "world_size": world, "peak_rss_bytes": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss * 1024, "shard_bytes": local, "model_params": total,
        "model_fp32_bytes": total * 4, "build_s": built - start, "total_s": done - start,
        "cpu_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime, "measured": True}


def _baseline_rss() -> int:
    """RSS of an interpreter that has imported what a run imports (what a rank holds before the model)."""
    code = ("import resource, torch, av_model.train.meta_init, av_model.train.parallel, av_model.dit;"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return int(out.stdout.strip().splitlines()[-1])


def _computed(preset: str, mode: str, world: int, baseline: int) -> dict[str, object]:
    from av_model.dit import get_preset
    from av_model.dit.params import count_params

    total = count_params(get_preset(preset)).total
    assert mode == "ordinary", "only the ordinary build is computed"
    return {"preset": preset, "mode": mode, "world_size": world, "peak_rss_bytes": baseline + 4 * total,
            "shard_bytes": 4 * total // world, "model_params": total, "model_fp32_bytes": 4 * total,
            "build_s": None, "total_s": None, "cpu_s": None, "measured": False}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="PRESET:MODE:WORLD, MODE ordinary or meta")
    p.add_argument("--computed", nargs="*", default=COMPUTED, help="PRESET:ordinary:WORLD computed, not run")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "perf" / "init_memory_cpu.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        preset, mode, world = args.child.split(":")
        print(json.dumps(_child(preset, mode, int(world))))
        return 0
    from _host import cpu_model, write_json

    baseline = _baseline_rss()
    rows = []
    for run in args.runs:
        proc = subprocess.run([sys.executable, __file__, "--child", run], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        if proc.returncode != 0:
            print(f"{run} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for run in args.computed:
        preset, mode, world = run.split(":")
        rows.append(_computed(preset, mode, int(world), baseline))
    gib = 2**30
    print(f"baseline RSS (torch and av_model imported, no model): {baseline / gib:.2f} GiB")
    print(f"{'preset':<11} {'init':<9} {'ranks':>5} {'peak RSS GiB':>12} {'above base / model':>18} "
          f"{'shard GiB':>9} {'model GiB':>9} {'seconds':>8}  how")
    for r in rows:
        secs = f"{r['total_s']:.1f}" if r["total_s"] is not None else "-"
        print(f"{r['preset']:<11} {r['mode']:<9} {r['world_size']:>5} {r['peak_rss_bytes'] / gib:>12.2f} "
              f"{(r['peak_rss_bytes'] - baseline) / r['model_fp32_bytes']:>18.3f} {r['shard_bytes'] / gib:>9.2f} "
              f"{r['model_fp32_bytes'] / gib:>9.1f} {secs:>8}  {'measured' if r['measured'] else 'computed'}")
    import platform

    import torch

    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "host": {
        "cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf(
            "SC_PHYS_PAGES") / gib, "python": platform.python_version(), "torch": torch.__version__},
        "baseline_rss_bytes": baseline, "runs": rows}
    write_json(args.out, record, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-state memory per rank of each generator preset under each data-parallel layout.

    python benchmarks/memory_per_rank.py [--out docs/perf/memory_per_rank.json]

Computed, not measured: `av_model.train.parallel.rank_memory` counts the parameters of each preset
(built on the meta device) and adds weights, gradients and AdamW moments per rank (fp32 for
bf16-mixed; bf16 for bf16-true), DDP's gradient buckets, and FSDP2's transiently gathered
weights (root plus two blocks). Activations are not included. Prints the markdown table of
docs/training.md and writes every term to JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from av_model.dit import get_preset
from av_model.dit.params import count_params
from av_model.train.parallel import rank_memory

REPO = Path(__file__).resolve().parents[1]
PRESETS = ("debug", "small", "h100_1b", "cluster_8b")
# (column, layout, world size, shard size)
LAYOUTS = [("1 GPU", "single", 1, None), ("DDP x8", "ddp", 8, None), ("FSDP full x8", "fsdp", 8, None),
           ("FSDP full x32", "fsdp", 32, None), ("HSDP 4x8", "hsdp", 32, 8)]


def _gib(n: float) -> str:
    gib = n / 2**30
    return f"{gib:.3g}" if gib < 10 else f"{gib:.0f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "perf" / "memory_per_rank.json")
    args = p.parse_args()
    rows = []
    print("| preset | params | " + " | ".join(c for c, *_ in LAYOUTS) + " |")
    print("|---|---|" + "---|" * len(LAYOUTS))
    for preset in PRESETS:
        cfg = get_preset(preset)
        total = count_params(cfg).total
        cells = []
        for column, layout, world, shard in LAYOUTS:
            mixed = rank_memory(cfg, layout, world, shard, "bf16-mixed")
            pure = rank_memory(cfg, layout, world, shard, "bf16-true")
            cells.append(f"{_gib(mixed.total)} / {_gib(pure.total)}")
            for m in (mixed, pure):
                rows.append({"preset": preset, "params": total, "column": column, **asdict(m), "total": m.total})
        print(f"| `{preset}` | {total / 1e9:.3g} B | " + " | ".join(cells) + " |")
    print("\nGiB per rank, bf16-mixed / bf16-true: weights, gradients, AdamW moments (+ DDP buckets, + FSDP2 "
          "gathered root and two blocks); no activations, no EMA (+4 bytes per parameter where enabled).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python benchmarks/memory_per_rank.py", "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

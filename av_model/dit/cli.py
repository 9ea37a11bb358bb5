"""`avgen model`: the transformer presets with their parameter counts and FLOPs per token."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avgen model",
        description="Named sizes of the audio-video diffusion transformer (see docs/architecture.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser(
        "presets",
        help="table of presets: total/active parameters and training FLOPs per token",
        description="Counts come from building each model on the meta device (no memory). FLOPs per token "
        "are training FLOPs (forward + backward) at the preset's reference sequence length, or at --seq-len.",
    )
    pre.add_argument("--seq-len", type=int, default=None, help="tokens per sample for the FLOP count")
    pre.add_argument("--text-len", type=int, default=None, help="text tokens per sample for the FLOP count")
    pre.add_argument("--json", action="store_true", help="print JSON (with every config field) instead of a table")
    show = sub.add_parser("show", help="print one preset's full configuration as YAML")
    show.add_argument("name", help="preset name")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from av_model.dit.config import PRESETS, get_preset
    from av_model.dit.params import count_params

    if args.command == "show":
        try:
            cfg = get_preset(args.name)
        except KeyError as err:
            print(f"avgen model show: {err.args[0]}", file=sys.stderr)
            return 2
        import yaml

        data = asdict(cfg)
        data["video_patch"], data["text_dims"] = list(cfg.video_patch), list(cfg.text_dims)
        print(yaml.safe_dump(data, sort_keys=False).rstrip())
        return 0
    if (args.seq_len is not None and args.seq_len < 1) or (args.text_len is not None and args.text_len < 0):
        print("avgen model presets: --seq-len must be >= 1 and --text-len >= 0.", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    for name, cfg in PRESETS.items():
        counts = count_params(cfg, seq_len=args.seq_len, text_len=args.text_len)
        rows.append({
            "preset": name, "width": cfg.width, "depth": cfg.depth, "heads": cfg.num_heads,
            "experts": f"{cfg.num_experts} top-{cfg.top_k} +{cfg.num_shared_experts}" if not cfg.is_dense else "dense",
            "total": counts.total, "active": counts.active, "seq_len": counts.seq_len,
            "gflops_per_token": counts.flops_per_token / 1e9, "config": asdict(cfg),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("preset", "width", "depth", "heads", "experts", "total", "active", "tokens", "train GFLOP/token")
    table = [header] + [
        (r["preset"], str(r["width"]), str(r["depth"]), str(r["heads"]), r["experts"], _human(r["total"]),
         _human(r["active"]), str(r["seq_len"]), f"{r['gflops_per_token']:.4g}")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)

"""`avgen diagnose`: does a generator use its conditions? (conditioning-sensitivity diagnostics)

    avgen diagnose --ckpt moe=runs/demo/dit_moe/final.ckpt --ckpt untrained=runs/demo/dit_untrained/final.ckpt \\
        --cache runs/demo/cache --split val --max-clips 32 --t 0.1,0.3,0.6,0.9 --out runs/demo/diagnose

For every checkpoint it measures, on the split's clips, the loss given each clip's own video, audio
or caption and given another clip's (`av_model.train.diagnostics`), prints a table per system and writes
`conditioning.json` and `conditioning.csv` (schema in `eval.conditioning`) and `conditioning.png`
(gap against t per task, one line per system). `avgen eval --conditioning FILE` adds them to a report.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from av_model.cache.format import CacheError, LatentSpec
from av_model.train.diagnostics import GapRow, batches_from_clips, measure, parse_t_grid, summarize

__all__ = ["build_parser", "main"]


class DiagnoseError(ValueError):
    """A bad input of `avgen diagnose`; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avgen diagnose",
        description="Conditioning-sensitivity diagnostics: per noise level, the flow-matching loss of each clip "
                    "given its own video/audio/caption vs another clip's. A positive gap (wrong - own) whose "
                    "interval excludes 0 means the model uses that condition. Writes conditioning.json, "
                    "conditioning.csv and conditioning.png to --out.",
    )
    p.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH",
                   help="a generator checkpoint (final.ckpt of `avgen fit`, or an exported file); repeat per system")
    p.add_argument("--cache", required=True, metavar="DIR", help="the latent cache the generators were trained on")
    p.add_argument("--split", default="val", help="split of the cache to measure on (default val)")
    p.add_argument("--max-clips", type=int, default=32, metavar="N", help="the first N clips of the split (default 32)")
    p.add_argument("--t", default="0.1,0.3,0.6,0.9", metavar="LIST", help="noise levels in (0, 1] (default 0.1,0.3,0.6,0.9)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for conditioning.json/.csv/.png")
    p.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and the bootstrap (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                   help="bf16 autocast as training on a GPU (auto: bf16 on CUDA, 32 on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _systems(specs: list[str]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        if "=" in spec and (not name or not path):
            raise DiagnoseError(f"--ckpt {spec!r}: use NAME=PATH (or just PATH).")
        p = Path(path)
        name = name or (p.parent.name if p.stem in ("final", "last") else p.stem)
        if not p.exists():
            raise DiagnoseError(f"--ckpt {spec!r}: {p} does not exist; train one with `avgen fit` (writes final.ckpt).")
        out.append((name, p))
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DiagnoseError(f"several checkpoints are named {dup}; name them with --ckpt NAME=PATH.")
    return out


def _check_compatible(name: str, bundle: Any, spec: LatentSpec, cache: Path) -> None:
    """The checkpoint was trained on latents of this cache's encoders and shapes."""
    try:
        trained = LatentSpec.from_meta(bundle.cache_meta)
    except CacheError as err:
        raise DiagnoseError(f"{name} ({bundle.path}): {err}") from err
    for key in ("codec", "vae", "text"):
        want, have = trained.fingerprint(key), spec.fingerprint(key)
        if want != have:
            raise DiagnoseError(
                f"{name} ({bundle.path}) was trained on a cache of another {key} encoder (fingerprint {want}) than "
                f"{cache} ({have}); measure it on the cache it was trained on.")
    cfg = bundle.model.cfg
    widths = {"video": (cfg.video_channels, spec.video_latent_dim),
              "audio": (cfg.audio_channels, spec.audio_latent_dim),
              "text": (tuple(cfg.text_dims), spec.text_dims)}
    for key, (model_w, cache_w) in widths.items():
        if model_w != cache_w:
            raise DiagnoseError(f"{name}: the model takes {key} latents of width {model_w} but {cache} holds {cache_w}.")
    for key, mine, theirs in (("video", trained.video_rate, spec.video_rate), ("audio", trained.audio_rate, spec.audio_rate)):
        if not math.isclose(mine, theirs):
            raise DiagnoseError(f"{name}: trained at {key} latent rate {mine} but {cache} has {theirs}.")


def _load_clips(cache: Path, split: str, max_clips: int, batch_size: int) -> tuple[list[dict[str, Any]], list[str], Any]:
    """Batches of the split's first clips (equal shapes per batch), the ids left out, and the cache meta."""
    from av_model.cache.latents import LatentDataset, collate_latents

    if not (cache / "meta.json").exists():
        raise DiagnoseError(f"{cache} is not a latent cache (no meta.json); build one with `avgen cache build`.")
    try:
        ds = LatentDataset(cache, split)
    except CacheError as err:
        raise DiagnoseError(str(err)) from err
    singles = [collate_latents([ds[i]]) for i in range(min(max_clips, len(ds)))]
    batches, left_out = batches_from_clips(singles, batch_size)
    if not batches:
        raise DiagnoseError(f"split {split!r} of {cache} has no two clips of equal latent shapes among its first "
                            f"{len(singles)}; a clip's wrong condition comes from another clip, so raise --max-clips.")
    return batches, left_out, ds.meta


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _table(name: str, rows: list[GapRow], clips: int) -> Table:
    table = Table(title=f"{name}: conditioning gaps ({clips} clips; gap = loss(wrong) - loss(own), 95% CI)")
    for col in ("task", "loss", "t", "own loss", "wrong loss", "gap [CI]"):
        table.add_column(col, justify="left" if col in ("task", "loss") else "right")
    for r in rows:
        used = math.isfinite(r.gap_ci_low) and r.gap_ci_low > 0
        gap = f"{_fmt(r.gap, 5)} [{_fmt(r.gap_ci_low, 5)}, {_fmt(r.gap_ci_high, 5)}]"
        table.add_row(r.task, r.modality, "all" if r.t is None else f"{r.t:g}", _fmt(r.own), _fmt(r.wrong),
                      f"[bold green]{gap}[/]" if used else gap, end_section=r.t is None)
    return table


def run(args: argparse.Namespace, console: Console) -> dict[str, Path]:
    """Measure every checkpoint and write the outputs; returns their paths."""
    from av_model.sample.generator_file import load_generator
    from eval.conditioning import ConditioningFile, ConditioningSystem, plot_gaps, write_conditioning

    # 1. Check inputs.
    try:
        t_grid = parse_t_grid(args.t)
    except ValueError as err:
        raise DiagnoseError(f"--t: {err}") from err
    if args.max_clips < 2 or args.batch_size < 2 or args.bootstrap < 1:
        raise DiagnoseError(f"need --max-clips >= 2, --batch-size >= 2 and --bootstrap >= 1; got {args.max_clips}, "
                            f"{args.batch_size}, {args.bootstrap}.")
    systems = _systems(args.ckpt)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None
    # 2. Clips of the split, batched by shape.
    cache = Path(args.cache)
    batches, left_out, meta = _load_clips(cache, args.split, args.max_clips, args.batch_size)
    spec = meta.spec
    n_clips = sum(len(b["id"]) for b in batches)
    if left_out:
        console.print(f"[yellow]left out {len(left_out)} clip(s) with no other clip of their shapes: {left_out}[/]")
    # 3. Measure each system.
    results = []
    for name, path in systems:
        try:
            bundle = load_generator(path, map_location=device)
        except (FileNotFoundError, ValueError) as err:
            raise DiagnoseError(f"--ckpt {name}: {err}") from err
        _check_compatible(name, bundle, spec, cache)
        trained = LatentSpec.from_meta(bundle.cache_meta)
        rates = trained.video_rate, trained.audio_rate
        with tqdm(total=n_clips, desc=f"diagnose {name}", unit="clip", disable=args.no_progress) as bar:
            losses = measure(bundle.model, batches, *rates, t_grid, seed=args.seed, autocast=autocast,
                             on_batch=bar.update)
        rows = summarize(losses, n_boot=args.bootstrap, seed=args.seed)
        console.print(_table(name, rows, n_clips))
        results.append(ConditioningSystem(name=name, checkpoint=str(path), sha256=bundle.sha256, clips=n_clips,
                                          rows=[r.to_dict() for r in rows], left_out=left_out))
        del bundle
    # 4. Write JSON, CSV and the plot.
    data = ConditioningFile(systems=results, t_grid=list(t_grid), cache=str(cache), split=args.split,
                            seed=args.seed, n_boot=args.bootstrap)
    paths = write_conditioning(data, args.out)
    paths["png"] = Path(args.out) / "conditioning.png"
    plot_gaps(data, paths["png"])
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen diagnose`; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    console = Console()
    threads = os.environ.get("AVGEN_NUM_THREADS")
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    try:
        paths = run(args, console)
    except DiagnoseError as err:
        print(f"avgen diagnose: error: {err}", file=sys.stderr)
        return 2
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

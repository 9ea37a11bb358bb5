"""`avgen data`: make the synthetic dataset, probe media files, check manifests."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from av_model.data.synthetic import FAMILIES, SynthConfig, dataset_is_current, make_dataset
from avio import ManifestEntry, ManifestError, MediaError, load_manifest, probe, read_clip

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avgen data",
        description="Data jobs: make the synthetic audio-video dataset, probe media files, check manifests.",
    )
    sub = parser.add_subparsers(dest="job", required=True, metavar="JOB")

    d = SynthConfig()
    synth = sub.add_parser(
        "synth", help="make the synthetic dataset (mp4 clips + manifest.jsonl)",
        description="Generate procedural clips in which every sound has a visible cause at a known time, "
        "write them as H.264/AAC mp4 files under OUT/<split>/ and list them in OUT/manifest.jsonl "
        "(captions, event times, parameters). Running it again with the same options does nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    synth.add_argument("--out", required=True, type=Path, help="dataset folder")
    synth.add_argument("--n-train", type=int, default=1000, help="training clips")
    synth.add_argument("--n-val", type=int, default=100, help="validation clips (same combinations as train)")
    synth.add_argument("--n-heldout", type=int, default=100, help="clips with combinations never seen in training")
    synth.add_argument("--width", type=int, default=d.width, help="frame width in pixels (even, >= 32)")
    synth.add_argument("--height", type=int, default=d.height, help="frame height in pixels (even, >= 32)")
    synth.add_argument("--fps", type=float, default=d.fps, help="frames per second")
    synth.add_argument("--duration", type=float, default=d.duration, help="clip length in seconds (>= 1)")
    synth.add_argument("--sample-rate", type=int, default=d.sample_rate, help="audio sample rate in Hz")
    synth.add_argument("--families", default=",".join(FAMILIES), help="comma-separated scene families")
    synth.add_argument("--max-noise", type=float, default=d.max_noise, help="largest background noise level")
    synth.add_argument("--crf", type=int, default=d.crf, help="x264 quality (0 lossless .. 51)")
    synth.add_argument("--seed", type=int, default=0, help="dataset seed")
    synth.add_argument("--workers", type=int, default=2, help="processes generating and encoding clips")
    synth.add_argument("--overwrite", action="store_true", help="replace a different dataset already in --out")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")

    pr = sub.add_parser("probe", help="print what is in media files",
                        description="Print duration, video and audio streams of each file.")
    pr.add_argument("files", nargs="+", type=Path, metavar="FILE")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")

    ck = sub.add_parser(
        "check", help="decode every entry of a manifest and report failures",
        description="Load a manifest (JSONL or CSV, or a dataset folder), decode every clip the way training "
        "would, and list the entries that fail with the reason (missing or corrupt files, no audio, audio that "
        "covers only part of the video, too short for --duration). Exit status 1 if any fails.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ck.add_argument("manifest", type=Path, metavar="MANIFEST")
    ck.add_argument("--split", default=None, help="check only this split")
    ck.add_argument("--fps", type=float, default=None, help="decode at this frame rate (default: the file's)")
    ck.add_argument("--size", type=int, default=None, help="decode at this square size (default: the file's)")
    ck.add_argument("--duration", type=float, default=None,
                    help="require this many seconds from each entry's start (default: start to end)")
    ck.add_argument("--sample-rate", type=int, default=None, help="resample audio to this rate")
    ck.add_argument("--no-audio-ok", action="store_true", help="accept files without audio")
    ck.add_argument("--workers", type=int, default=2, help="decoding processes (0 or 1: decode in this process)")
    return parser


def _synth(args: argparse.Namespace) -> int:
    cfg = SynthConfig(
        width=args.width, height=args.height, fps=args.fps, duration=args.duration, sample_rate=args.sample_rate,
        families=tuple(f.strip() for f in args.families.split(",") if f.strip()), max_noise=args.max_noise,
        crf=args.crf,
    )
    counts = {"train": args.n_train, "val": args.n_val, "heldout": args.n_heldout}
    already = dataset_is_current(args.out, cfg, counts, args.seed)
    t0 = time.perf_counter()
    manifest = make_dataset(args.out, cfg, args.n_train, args.n_val, args.n_heldout, seed=args.seed,
                            workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    entries = load_manifest(manifest)
    splits = Counter(e.split for e in entries)
    families = Counter(e.extra.get("family") for e in entries)
    print(f"manifest: {manifest}")
    print("clips:    " + ", ".join(f"{s} {splits.get(s, 0)}" for s in ("train", "val", "heldout")) + f" ({len(entries)} in all)")
    print("families: " + ", ".join(f"{f} {n}" for f, n in sorted(families.items())))
    print(f"geometry: {cfg.width}x{cfg.height} px, {cfg.fps:g} fps, {cfg.duration:g} s, {cfg.sample_rate} Hz mono")
    if already:
        print("time:     0 s (the folder already held this dataset; nothing was generated)")
    else:
        print(f"time:     {seconds:.1f} s ({len(entries) / seconds:.1f} clips/s, {args.workers} workers)")
    return 0


def _probe(args: argparse.Namespace) -> int:
    failed = 0
    for f in args.files:
        try:
            info = probe(f)
        except MediaError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({**asdict(info), "path": str(info.path)}))
        else:
            print(info)
    return 1 if failed else 0


def _check_one(job: tuple[ManifestEntry, dict]) -> tuple[str, str, str | None]:
    entry, opts = job
    duration = opts.pop("duration") or entry.duration
    missing = entry.missing_file()
    if missing is not None:
        return entry.id, str(entry.path), missing
    try:
        read_clip(entry.path, start=entry.start, duration=duration, **opts)
    except MediaError as err:
        return entry.id, str(entry.path), str(err)
    return entry.id, str(entry.path), None


def _collect(results: Iterable[tuple[str, str, str | None]], failures: list[tuple[str, str, str]], bar: tqdm) -> None:
    for clip_id, path, error in results:
        if error is not None:
            failures.append((clip_id, path, error))
        bar.update()


def _check(args: argparse.Namespace) -> int:
    try:
        entries = load_manifest(args.manifest)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.split is not None:
        entries = [e for e in entries if e.split == args.split]
        if not entries:
            print(f"error: {args.manifest} has no entries with split {args.split!r}.", file=sys.stderr)
            return 1
    opts = {"fps": args.fps, "size": args.size, "duration": args.duration, "sample_rate": args.sample_rate,
            "require_audio": not args.no_audio_ok}
    jobs = [(e, dict(opts)) for e in entries]
    failures: list[tuple[str, str, str]] = []
    bar = tqdm(total=len(jobs), desc="decoding", unit="clip")
    if args.workers <= 1:  # one worker process buys nothing over decoding here
        results: Iterable[tuple[str, str, str | None]] = map(_check_one, jobs)
        _collect(results, failures, bar)
    else:
        with mp.get_context("spawn" if sys.platform == "darwin" else None).Pool(args.workers) as pool:
            _collect(pool.imap(_check_one, jobs, chunksize=4), failures, bar)
    bar.close()
    print(f"{len(entries) - len(failures)} of {len(entries)} entries decode.")
    for clip_id, _, error in failures:
        print(f"FAILED {clip_id}: {error}")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    """Entry point of `avgen data`."""
    args = _parser().parse_args(argv)
    try:
        return {"synth": _synth, "probe": _probe, "check": _check}[args.job](args)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

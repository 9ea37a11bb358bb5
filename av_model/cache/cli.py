"""`avgen cache build|check`: encode a dataset once into the latent cache the generator trains on.

The audio codec, the video autoencoder and the text encoder(s) run here, offline, so training reads
only small latents. The layout is described in `av_model.cache.format`. A build is resumable: the
clips are cut into shards in manifest order, each shard is written atomically and listed in
`meta.json`, and a rerun of the same command skips the listed shards. A build into a cache made by
other encoders (or with other geometry) is refused with the differences named. A clip that cannot be
decoded is skipped and listed with its reason (`--strict`: the build stops there, exit status 2); a
build in which no clip could be encoded fails (exit status 1).

Usage:

    avgen cache build -c configs/cache/synthetic.yaml
    avgen cache build --manifest data/manifest.jsonl --codec codec.pt --vae vae.pt --text minilm --out cache/
    avgen cache check cache/ [--codec codec.pt --vae vae.pt --text minilm] [--deep] [--repair]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from av_model.cache.build import (
    STORAGE_DTYPES,
    BadClipError,
    CacheBuildConfig,
    build_cache,
    load_build_config,
)
from av_model.cache.format import (
    SHARD_DIR,
    CacheEntry,
    CacheError,
    CacheMeta,
    ShardReader,
    read_index,
    read_meta,
    read_shard_rows,
    write_index,
)

__all__ = ["CacheBuildConfig", "build_cache", "check_cache", "load_build_config", "main"]


# ---------------------------------------------------------------------------------------- checking
def check_cache(
    cache_dir: str | Path, *, codec: str | None = None, vae: str | None = None, text: list[str] | None = None,
    deep: bool = False, repair: bool = False, console: Console | None = None,
) -> list[str]:
    """Verify a cache; returns the problems found (empty when it is sound) and prints a summary.

    Args:
        cache_dir: the cache directory.
        codec, vae, text: when given, their fingerprints must match the cache's.
        deep: load every tensor and check shapes and finiteness (reads the whole cache).
        repair: rewrite `index.jsonl` from the shards (after an interrupted final step).
    """
    console = console or Console()
    cache_dir = Path(cache_dir)
    meta = read_meta(cache_dir)
    problems: list[str] = []
    if not meta.complete:
        problems.append(f"incomplete: {len(meta.shards)} of {meta.num_shards} shards written; rerun the build")
    entries = []
    for s in meta.shards:
        try:
            entries += read_shard_rows(cache_dir / SHARD_DIR / s["name"])
        except CacheError as err:
            problems.append(str(err))
    if meta.complete:
        if repair:
            write_index(cache_dir, entries)
        try:
            _, indexed = read_index(cache_dir)
            if [e.id for e in indexed] != [e.id for e in entries]:
                problems.append("index.jsonl disagrees with the shards; run `avgen cache check --repair`")
        except CacheError as err:
            problems.append(str(err))
    given = {"codec": codec, "vae": vae}
    if any(given.values()) or text:
        from audio_codec import load_codec
        from av_model.text import load_text_encoder
        from av_model.vae import load_video_autoencoder

        prints = {}
        if codec:
            prints["codec"] = load_codec(codec).fingerprint
        if vae:
            prints["vae"] = load_video_autoencoder(vae).fingerprint
        if text:
            prints["text"] = load_text_encoder(text if len(text) > 1 else text[0]).fingerprint
        for key, value in prints.items():
            if meta.fingerprints[key] != value:
                problems.append(f"the {key} fingerprint differs: cache {meta.fingerprints[key]}, given {value}")
    if deep:
        reader = ShardReader(cache_dir)
        for e in tqdm(entries, desc="reading tensors", unit="clip"):
            t = reader.read(e)
            if tuple(t["video"].shape) != e.video_shape or tuple(t["audio"].shape) != e.audio_shape:
                problems.append(f"clip {e.id}: stored shapes differ from the index")
            elif not (torch.isfinite(t["video"].float()).all() and torch.isfinite(t["audio"].float()).all()):
                problems.append(f"clip {e.id}: latents contain NaN or infinite values")
    _print_summary(console, cache_dir, meta, entries)
    for p in problems:
        console.print(f"[red]problem:[/red] {p}")
    return problems


def _print_summary(console: Console, cache_dir: Path, meta: CacheMeta, entries: list[CacheEntry]) -> None:
    size = sum(f.stat().st_size for f in (cache_dir / SHARD_DIR).glob("*.safetensors"))
    table = Table(title=f"latent cache {cache_dir} ({size / 2**20:.1f} MiB, {len(meta.shards)} shards)")
    for col in ("split", "video latents (C,T,H,W)", "audio latents (C,T)", "seconds", "clips"):
        table.add_column(col)
    buckets = Counter((e.split, e.video_shape, e.audio_shape, e.duration) for e in entries)
    for (split, v, a, d), n in sorted(buckets.items()):
        table.add_row(split, str(v), str(a), f"{d:g}", str(n))
    console.print(table)
    console.print(f"fingerprints: {meta.fingerprints}")
    console.print(f"latent rates: video {meta.video_rate:g}/s, audio {meta.audio_rate:g}/s; text dims {meta.text['dims']}")
    skipped = sum(len(s["skipped"]) for s in meta.shards)
    if skipped:
        console.print(f"{skipped} clips were skipped at build time (undecodable); see meta.json")


# --------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avgen cache", description="Build or check the latent cache.")
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="encode a manifest into a latent cache (resumable)",
                       description="Encode every clip of a manifest with the audio codec, the video autoencoder "
                       "and the text encoder(s) into sharded safetensors. Rerun the same command to resume.")
    b.add_argument("-c", "--config", help="YAML file of CacheBuildConfig fields (flags override it)")
    b.add_argument("--manifest", help="JSONL or CSV manifest of the clips")
    b.add_argument("--out", help="cache directory")
    b.add_argument("--codec", help="audio codec file (codec.pt from `avgen codec fit`)")
    b.add_argument("--vae", help="video autoencoder file (vae.pt from `avgen vae fit`)")
    b.add_argument("--text", nargs="+", help="text encoder specs (default: minilm)")
    b.add_argument("--split", help="encode only this split (default: all)")
    b.add_argument("--fps", type=float, help="decode video at this frame rate (default 16)")
    b.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="frame size (default 64 64)")
    b.add_argument("--max-duration", type=float, help="cut clips to at most this many seconds")
    b.add_argument("--duration-step", type=float, help="round durations down to a multiple of this")
    b.add_argument("--shard-size", type=int, help="clips per shard (default 256)")
    b.add_argument("--batch-size", type=int, help="clips encoded together (default 8)")
    b.add_argument("--workers", type=int, help="decoding processes (default 2)")
    b.add_argument("--device", help="auto, cpu, cuda, cuda:N (default auto)")
    b.add_argument("--dtype", choices=sorted(STORAGE_DTYPES), help="storage precision (default float32)")
    b.add_argument("--strict", action="store_true", default=None,
                   help="stop at the first clip that cannot be decoded (exit 2); by default it is skipped, named, "
                        "and listed at the end")
    c = sub.add_parser("check", help="verify a cache and print what it holds",
                       description="Check that every shard is present and readable, the index agrees, and "
                       "(optionally) that given encoders match the cache's fingerprints.")
    c.add_argument("cache_dir", help="cache directory")
    c.add_argument("--codec", help="codec file whose fingerprint must match")
    c.add_argument("--vae", help="video autoencoder file whose fingerprint must match")
    c.add_argument("--text", nargs="+", help="text encoder specs whose fingerprint must match")
    c.add_argument("--deep", action="store_true", help="read every tensor and check shapes and values")
    c.add_argument("--repair", action="store_true", help="rewrite index.jsonl from the shards")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen cache`."""
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        if args.action == "build":
            cfg = load_build_config(
                args.config, manifest=args.manifest, out=args.out, codec=args.codec, vae=args.vae, text=args.text,
                split=args.split, fps=args.fps, size=tuple(args.size) if args.size else None,
                max_duration=args.max_duration, duration_step=args.duration_step, shard_size=args.shard_size,
                batch_size=args.batch_size, workers=args.workers, device=args.device, dtype=args.dtype,
                strict=args.strict,
            )
            build_cache(cfg, console=console)
            return 0
        problems = check_cache(args.cache_dir, codec=args.codec, vae=args.vae, text=args.text, deep=args.deep,
                               repair=args.repair, console=Console())
        return 1 if problems else 0
    except BadClipError as err:
        console.print(f"[red]avgen cache {args.action}: {err}[/red]")
        return 2
    except (CacheError, ValueError, FileNotFoundError, RuntimeError) as err:
        console.print(f"[red]avgen cache {args.action}: {err}[/red]")
        return 1


if __name__ == "__main__":
    sys.exit(main())

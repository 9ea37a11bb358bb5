"""`avgen vae`: train the video autoencoder, encode and decode files, inspect a trained one.

    avgen vae fit -c configs/vae/small.yaml [--data.manifest M] [--trainer.max_steps N] [--ckpt_path last]
    avgen vae validate -c configs/vae/small.yaml --ckpt_path PATH
    avgen vae encode IN.mp4 OUT.safetensors --vae runs/vae/small/vae.pt
    avgen vae decode IN.safetensors OUT.mp4 --vae runs/vae/small/vae.pt
    avgen vae reconstruct --manifest data/manifest.jsonl --split heldout --vae vae.pt --out runs/recon
    avgen vae info runs/vae/small/vae.pt
    avgen vae presets
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE = """usage: avgen vae <command> [options]

Video autoencoder (Movie Gen-style factorized temporal VAE).

commands:
  fit       train with Lightning from a YAML config: avgen vae fit -c configs/vae/small.yaml [overrides]
            (writes <trainer.default_root_dir>/vae.pt; resume with --ckpt_path last)
  validate  reconstruction metrics (L1, PSNR, SSIM) of a checkpoint on the validation split
  encode    encode the video of a media file into a latent .safetensors file
  decode    decode a latent .safetensors file into an mp4
  reconstruct  clips of a manifest through the autoencoder (mp4 + sidecar, original audio): the
            ceiling of any generator that decodes with it, for `avgen eval`
  info      print the architecture, fingerprint, latent statistics and training record of a vae.pt
  presets   list the named architectures with their sizes

Run `avgen vae <command> --help` for the options of one command."""


def _lightning(subcommand: str, argv: list[str]) -> int:
    from avtrain.cli import make_cli, run_cli

    from .data import VideoClipDataModule
    from .lit import VideoAutoencoderModule

    return run_cli(lambda: make_cli(
        VideoAutoencoderModule, VideoClipDataModule, [subcommand, *argv], prog=f"avgen vae {subcommand}",
        description="Train the video autoencoder.",
        auto_configure_optimizers=False,  # the module builds its two optimizers from model.optimizer
        # vae.pt is exported at the end of fit; the checkpoints are for resuming, so only last.ckpt is kept.
        checkpoint={"every_n_train_steps": 200, "save_top_k": 0},
    ), f"avgen vae {subcommand}")


def _chunk_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("chunking (bounded memory for long or large clips)")
    g.add_argument("--chunk-frames", type=int, default=32,
                   help="frames per temporal window, a multiple of the temporal compression (default 32)")
    g.add_argument("--overlap-frames", type=int, default=8,
                   help="frames shared by neighbouring windows, blended (default 8)")
    g.add_argument("--tile-size", type=int, default=None,
                   help="pixels per spatial tile, a multiple of the spatial compression (default: whole frames)")
    g.add_argument("--tile-overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default 32)")
    g.add_argument("--no-chunking", action="store_true", help="process the whole clip at once")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _chunks(args: argparse.Namespace):  # -> ChunkConfig | None
    from .config import ChunkConfig

    if args.no_chunking:
        return None
    return ChunkConfig(args.chunk_frames, args.overlap_frames, args.tile_size, args.tile_overlap)


def _encode(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="avgen vae encode",
        description="Encode the video of a media file into latents (safetensors: 'latent' (C, T', H', W') "
        "plus metadata to restore the clip). Clips whose frame count or size the autoencoder cannot take "
        "are padded by repeating the last frame and edge pixels; decoding crops the padding.",
    )
    p.add_argument("input", help="video file (mp4, mkv, webm, ...)")
    p.add_argument("output", help="latent file to write (.safetensors)")
    p.add_argument("--vae", required=True, help="trained autoencoder (vae.pt from `avgen vae fit`)")
    p.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: the file's)")
    p.add_argument("--size", type=int, nargs="+", default=None, metavar="PX",
                   help="scale and centre-crop to H W (or one number for a square); default: the file's size")
    p.add_argument("--start", type=float, default=0.0, help="seconds from the start of the file (default 0)")
    p.add_argument("--duration", type=float, default=None, help="seconds to encode (default: to the end)")
    p.add_argument("--normalize", action="store_true",
                   help="store normalized latents (per-channel zero mean, unit std), as the generator sees them")
    _chunk_args(p)
    args = p.parse_args(argv)
    size = None
    if args.size is not None:
        if len(args.size) not in (1, 2):
            p.error("--size takes one number (a square) or two (H W)")
        size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])

    from .files import encode_file
    from .io import load_video_autoencoder

    vae = load_video_autoencoder(args.vae)
    shape = encode_file(
        args.input, args.output, vae, fps=args.fps, size=size, start=args.start, duration=args.duration,
        chunks=_chunks(args), normalize=args.normalize, device=args.device, progress=not args.quiet,
    )
    print(f"wrote {args.output}: latent {tuple(shape)}")
    return 0


def _decode(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="avgen vae decode",
        description="Decode a latent file from `avgen vae encode` (or any safetensors holding 'latent' "
        "(C, T', H', W')) into an H.264 mp4.",
    )
    p.add_argument("input", help="latent file (.safetensors)")
    p.add_argument("output", help="video file to write (.mp4)")
    p.add_argument("--vae", required=True, help="the autoencoder that encoded the latents (vae.pt)")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: recorded in the file, else 16)")
    p.add_argument("--audio-from", default=None, help="mux the audio of this media file (from 0 s) into the output")
    _chunk_args(p)
    args = p.parse_args(argv)

    from .files import decode_file
    from .io import load_video_autoencoder

    vae = load_video_autoencoder(args.vae)
    shape = decode_file(
        args.input, args.output, vae, fps=args.fps, chunks=_chunks(args), audio_from=args.audio_from,
        device=args.device, progress=not args.quiet,
    )
    print(f"wrote {args.output}: {shape[0]} frames of {shape[1]}x{shape[2]}")
    return 0


def _reconstruct(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="avgen vae reconstruct",
        description="Encode and decode the clips of a manifest with a trained autoencoder and write each as an "
        "mp4 with the clip's own audio (or, with --codec, its audio through that codec's latents) and a JSON "
        "sidecar naming its id and caption. `avgen eval` scores this folder like a generated set: the best any "
        "generator decoding through this autoencoder (and codec) can do.",
    )
    p.add_argument("--manifest", required=True, help="dataset manifest (.jsonl/.csv) or its folder")
    p.add_argument("--vae", required=True, help="trained autoencoder (vae.pt)")
    p.add_argument("--out", required=True, help="folder for <id>.mp4 and <id>.json")
    p.add_argument("--split", default=None, help="only this split of the manifest (e.g. heldout)")
    p.add_argument("--limit", type=int, default=None, help="at most this many clips (the first ones)")
    p.add_argument("--codec", default=None, help="also pass the audio through this audio codec (codec.pt)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")

    import torch

    from avio import MediaError, load_manifest, read_clip, write_clip, write_sidecar

    from .io import load_video_autoencoder

    entries = [e for e in load_manifest(args.manifest) if args.split is None or e.split == args.split]
    vae = load_video_autoencoder(args.vae)
    if not entries:
        print(f"avgen vae reconstruct: no clip of split {args.split!r} in {args.manifest}.", file=sys.stderr)
        return 1
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    vae = vae.to(device).eval()
    codec = None
    if args.codec is not None:
        from audio_codec import load_codec

        codec = load_codec(args.codec).to(device).eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tc, sc = vae.temporal_compression, vae.spatial_compression
    written, skipped = 0, []
    from tqdm.auto import tqdm

    for e in tqdm(entries[: args.limit], desc="reconstructing", unit="clip"):
        try:
            clip = read_clip(e.path, start=e.start, duration=None if e.end is None else e.end - e.start,
                             sample_rate=None if codec is None else codec.sample_rate,
                             channels=None if codec is None else codec.channels)
        except (MediaError, FileNotFoundError) as err:
            skipped.append(f"{e.id}: {err}")
            continue
        t, h, w = clip.frames.shape[:3]
        if t < tc or h % sc or w % sc:
            skipped.append(f"{e.id}: {t} frames of {h}x{w} do not fit the autoencoder (x{tc} frames, x{sc} pixels)")
            continue
        t = t // tc * tc
        x = clip.frames[:t].permute(3, 0, 1, 2)[None].float().div(127.5).sub(1).to(device)  # (1, 3, T, H, W)
        with torch.no_grad():
            y = vae.decode(vae.encode(x))[0].clamp(-1, 1)  # (3, T, H, W)
        frames = y.add(1).mul(127.5).round().byte().permute(1, 2, 3, 0).cpu()  # (T, H, W, 3)
        audio = None if clip.audio is None else clip.audio[:, : round(t / clip.fps * (clip.sample_rate or 1))]
        if audio is not None and codec is not None:
            with torch.no_grad():
                a = audio[None].to(device)  # (1, C, S)
                audio = codec.decode(codec.encode(a), length=a.shape[-1])[0].clamp(-1, 1).cpu()
        write_clip(out / f"{e.id}.mp4", frames, clip.fps, audio, clip.sample_rate)
        write_sidecar(out / f"{e.id}.json", {"id": e.id, "prompt": e.caption, "reconstructed_by": str(args.vae),
                                             **({} if codec is None else {"audio_reconstructed_by": str(args.codec)})})
        written += 1
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"wrote {written} reconstructions to {out}" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return 0 if written else 1


def _info(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="avgen vae info", description="Describe a trained autoencoder file.")
    p.add_argument("vae", help="vae.pt")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    from avtrain.commands import print_info

    from .io import load_video_autoencoder

    vae = load_video_autoencoder(args.vae)
    info = {
        "path": str(args.vae),
        "fingerprint": vae.fingerprint,
        "parameters": sum(p.numel() for p in vae.parameters()),
        "config": vae.config.to_dict(),
        "latent_stats_set": vae.has_latent_stats,
        "latent_mean": [round(v, 5) for v in vae.latent_mean.tolist()],
        "latent_std": [round(v, 5) for v in vae.latent_std.tolist()],
        "metadata": vae.metadata,
    }
    print_info(info, as_json=args.json)
    return 0


def _presets(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="avgen vae presets", description="List the named architectures.")
    p.parse_args(argv)
    import torch

    from .config import PRESETS
    from .model import VideoAutoencoder

    print(f"{'preset':<14} {'tc':>3} {'sc':>3} {'ch':>3}  {'params':>9}  levels")
    for name, cfg in PRESETS.items():
        with torch.device("meta"):  # shapes only: no memory, no initialization time
            n = sum(q.numel() for q in VideoAutoencoder(cfg).parameters())
        print(f"{name:<14} {cfg.temporal_compression:>3} {cfg.spatial_compression:>3} "
              f"{cfg.latent_channels:>3}  {n / 1e6:>8.2f}M  {list(cfg.channels)}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `avgen vae`. A bad input (a missing or corrupt file, a checkpoint that is not
    a vae.pt, a latent file of another autoencoder) ends in its message and exit status 1."""
    from avtrain.commands import run_subcommand

    handlers = {"fit": lambda rest: _lightning("fit", rest), "validate": lambda rest: _lightning("validate", rest),
                "encode": _encode, "decode": _decode, "reconstruct": _reconstruct, "info": _info,
                "presets": _presets}
    return run_subcommand(argv, prog="avgen vae", usage=USAGE, commands=handlers)

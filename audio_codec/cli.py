"""`avgen codec`: fit, stats, encode, decode, export, info.

    avgen codec fit -c configs/codec/small.yaml [--section.field value ...]
    avgen codec stats --codec runs/codec/small/codec.pt --manifest data/manifest.jsonl
    avgen codec encode clip.mp4 clip.safetensors --codec codec.pt [--codes --bandwidth 2.4]
    avgen codec decode clip.safetensors clip.wav --codec codec.pt
    avgen codec export --ckpt runs/codec/small/.../last.ckpt --out codec.pt [--manifest M]
    avgen codec info codec.pt

`--codec` takes a codec file written by `avgen codec fit`/`export`, an official EnCodec checkpoint
file, or "encodec_24khz"/"encodec_48khz" (official file in `$TORCH_HOME/hub/checkpoints/`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from avtrain.commands import print_info, run_subcommand
from avtrain.weights_file import UnreadableWeightsError, load_weights_file

logger = logging.getLogger("audio_codec")

USAGE = """usage: avgen codec <fit|stats|encode|decode|export|info> [options]

Audio codec (EnCodec): waveform <-> continuous latents and discrete codes.

subcommands:
  fit     train or fine-tune a codec (LightningCLI; -c configs/codec/<name>.yaml), write codec.pt
  stats   compute per-channel latent mean/std over a manifest's clips and store them in the codec
  encode  audio or video file -> latents (or codes) in a .safetensors file
  decode  .safetensors latents or codes -> wav file
  export  turn a Lightning training checkpoint into a codec.pt
  info    print a codec's architecture, rates, statistics and fingerprint

Run `avgen codec <subcommand> --help` for its options."""


def _device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _load(spec: str, device: torch.device) -> Any:
    from audio_codec.checkpoint import load_codec

    return load_codec(spec, map_location=device)


def _stats_over_manifest(codec: Any, manifest: str, split: str | None, max_clips: int, *,
                         max_seconds: float = 30.0, num_workers: int = 0) -> int:
    """Compute and store `codec`'s latent statistics over up to `max_clips` clips; returns the clip count."""
    from torch.utils.data import DataLoader

    from audio_codec.data import AudioClipDataset, collate_audio, load_audio_entries
    from audio_codec.stats import compute_latent_stats

    entries = load_audio_entries(manifest, split or None)[:max_clips]
    dataset = AudioClipDataset(entries, codec.sample_rate, codec.channels, max_seconds=max_seconds)
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, collate_fn=collate_audio)
    stats = compute_latent_stats(codec, loader, total=len(loader))
    codec.set_latent_stats(stats.mean, stats.std, stats.num_frames)
    print(f"latent statistics over {stats.num_frames} frames of {len(entries)} clips")
    return len(entries)


# -- stats ----------------------------------------------------------------------------------------------
def stats_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avgen codec stats",
        description="Compute per-channel latent mean/std over a manifest's clips and store them with the codec, "
                    "so the generator trains on normalized latents.")
    parser.add_argument("--codec", required=True, help="codec file (codec.pt), official EnCodec file, or preset name")
    parser.add_argument("--manifest", required=True, help="JSONL/CSV manifest of the clips")
    parser.add_argument("--split", default="train", help="split to use ('' for all clips; default: train)")
    parser.add_argument("--max-clips", type=int, default=1000, help="use at most this many clips (default 1000)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="read at most this much of each clip")
    parser.add_argument("--out", help="where to write the codec (default: overwrite --codec when it is a file "
                                      "written by this project, else required)")
    parser.add_argument("--device", help="torch device (default: cuda if available)")
    parser.add_argument("--num-workers", type=int, default=1, help="decoding worker processes")
    args = parser.parse_args(argv)
    if args.max_clips <= 0:
        parser.error("--max-clips must be > 0")

    from audio_codec.base import CHECKPOINT_FORMAT

    device = _device(args.device)
    codec = _load(args.codec, device)
    out = args.out
    if out is None:
        source = Path(args.codec)
        ours = source.is_file() and source.suffix == ".pt" and _is_codec_file(source, CHECKPOINT_FORMAT)
        if not ours:
            parser.error("--out is required when --codec is not a codec.pt written by this project")
        out = str(source)
    n_clips = _stats_over_manifest(codec, args.manifest, args.split, args.max_clips, max_seconds=args.max_seconds,
                                   num_workers=args.num_workers)
    codec.save(out, stats_manifest=str(args.manifest), stats_clips=n_clips)
    print(f"wrote {out} (fingerprint {codec.fingerprint})")
    return 0


def _is_codec_file(path: Path, fmt: str) -> bool:
    try:
        payload = load_weights_file(path)
    except UnreadableWeightsError:
        return False
    return isinstance(payload, dict) and payload.get("format") == fmt


# -- encode / decode -----------------------------------------------------------------------------------
def encode_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avgen codec encode",
        description="Encode the audio of a file (wav, mp3, flac, mp4, ...) into continuous latents (B=1: (D, T)) "
                    "or discrete codes ((K, T)) stored in a .safetensors file with the codec's fingerprint.")
    parser.add_argument("input", help="audio or video file")
    parser.add_argument("output", help="output .safetensors file")
    parser.add_argument("--codec", required=True, help="codec file (codec.pt), official EnCodec file, or preset name")
    parser.add_argument("--codes", action="store_true", help="store discrete codes instead of continuous latents")
    parser.add_argument("--bandwidth", type=float, help="kbps for --codes (default: the codec's highest)")
    parser.add_argument("--normalized", action="store_true",
                        help="store normalized latents (what the generator sees) instead of raw ones")
    parser.add_argument("--device", help="torch device (default: cuda if available)")
    args = parser.parse_args(argv)
    if not args.output.endswith(".safetensors"):
        parser.error(f"output must end in .safetensors, got {args.output!r}")
    if args.bandwidth is not None and not args.codes:
        parser.error("--bandwidth only applies with --codes")
    if args.normalized and args.codes:
        parser.error("--normalized applies to continuous latents, not to --codes")

    from safetensors.torch import save_file

    from avio import read_audio

    device = _device(args.device)
    codec = _load(args.codec, device)
    wav, sr = read_audio(args.input)  # (C, S)
    meta = {"kind": "codes" if args.codes else "latents", "codec_fingerprint": codec.fingerprint,
            "codec": str(args.codec), "sample_rate": str(codec.sample_rate), "channels": str(codec.channels),
            "hop_length": str(codec.hop_length), "frame_rate": repr(codec.frame_rate), "source": str(args.input),
            "source_sample_rate": str(sr), "num_samples": str(round(wav.shape[-1] * codec.sample_rate / sr)),
            "normalized": str(bool(args.normalized))}
    with torch.inference_mode():
        if args.codes:
            codes, scale = codec.encode_codes(wav[None], args.bandwidth, sample_rate=sr, return_scale=True)
            tensors = {"codes": codes[0].to(torch.int32).cpu().contiguous()}  # (K, T)
            if scale is not None:
                tensors["scale"] = scale[0].cpu().contiguous()  # (T,)
            meta["bandwidth"] = repr(args.bandwidth if args.bandwidth is not None else codec.bandwidths[-1])
        else:
            z = codec.encode(wav[None], sample_rate=sr, progress=True)  # (1, D, T)
            if args.normalized:
                z = codec.normalize(z)
            tensors = {"latents": z[0].cpu().contiguous()}  # (D, T)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, args.output, metadata=meta)
    key = next(iter(tensors))
    print(f"{args.input} -> {args.output}: {key} {tuple(tensors[key].shape)} at {codec.frame_rate:g} frames/s")
    return 0


def decode_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avgen codec decode",
        description="Decode latents or codes written by `avgen codec encode` back to a wav file.")
    parser.add_argument("input", help=".safetensors file from `avgen codec encode`")
    parser.add_argument("output", help="output .wav file")
    parser.add_argument("--codec", required=True, help="the codec that encoded the file")
    parser.add_argument("--force", action="store_true",
                        help="decode even if the file was written by a codec with another fingerprint "
                             "(e.g. the same weights with recomputed statistics)")
    parser.add_argument("--device", help="torch device (default: cuda if available)")
    args = parser.parse_args(argv)
    if not args.output.endswith(".wav"):
        parser.error(f"output must end in .wav, got {args.output!r}")

    from safetensors import safe_open

    from avio import write_audio

    path = Path(args.input)
    if not path.is_file():
        parser.error(f"{path} does not exist")
    device = _device(args.device)
    codec = _load(args.codec, device)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    if meta.get("kind") not in ("latents", "codes") or meta["kind"] not in tensors:
        parser.error(f"{path} was not written by `avgen codec encode` (no 'latents' or 'codes' entry with metadata)")
    if int(meta.get("sample_rate", 0)) != codec.sample_rate or int(meta.get("hop_length", 0)) != codec.hop_length:
        parser.error(f"{path} was encoded at {meta.get('sample_rate')} Hz, hop {meta.get('hop_length')}, but this codec "
                     f"works at {codec.sample_rate} Hz, hop {codec.hop_length}: use the codec that encoded it")
    if meta.get("codec_fingerprint") != codec.fingerprint and not args.force:
        parser.error(f"{path} was encoded by codec {meta.get('codec_fingerprint')} ({meta.get('codec')}) but "
                     f"{args.codec} is {codec.fingerprint}; pass the same codec, or --force if only its statistics changed")
    length = int(meta["num_samples"]) if "num_samples" in meta else None
    with torch.inference_mode():
        if meta["kind"] == "codes":
            scale = tensors["scale"][None] if "scale" in tensors else None
            wav = codec.decode_codes(tensors["codes"][None].long(), length=length, scale=scale)  # (1, C, S)
        else:
            z = tensors["latents"][None]  # (1, D, T)
            if meta.get("normalized") == "True":
                z = codec.denormalize(z.to(codec.device))
            wav = codec.decode(z, length=length, progress=True)  # (1, C, S)
    write_audio(args.output, wav[0].clamp(-1, 1).cpu(), codec.sample_rate)
    print(f"{args.input} -> {args.output}: {wav.shape[-1] / codec.sample_rate:.2f} s at {codec.sample_rate} Hz")
    return 0


# -- export / info ---------------------------------------------------------------------------------------
def export_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avgen codec export",
        description="Write a codec.pt from a Lightning checkpoint of `avgen codec fit` (e.g. after an interrupted "
                    "run), optionally computing latent statistics on a manifest.")
    parser.add_argument("--ckpt", required=True, help="Lightning checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, help="codec file to write")
    parser.add_argument("--manifest", help="compute latent statistics on this manifest's training clips")
    parser.add_argument("--split", default="train", help="split for the statistics (default: train)")
    parser.add_argument("--max-clips", type=int, default=256, help="clips for the statistics (default 256)")
    args = parser.parse_args(argv)

    from audio_codec.config import CodecConfig
    from audio_codec.encodec_codec import EncodecCodec

    ckpt = Path(args.ckpt)
    if not ckpt.is_file():
        parser.error(f"checkpoint {ckpt} does not exist")
    payload = torch.load(ckpt, map_location="cpu", weights_only=False)
    hparams = payload.get("hyper_parameters", {}) if isinstance(payload, dict) else {}
    if "codec" not in hparams or "state_dict" not in payload:
        parser.error(f"{ckpt} is not a checkpoint of `avgen codec fit` (no codec hyper-parameters)")
    codec = EncodecCodec(CodecConfig.from_dict(hparams["codec"]))
    state = {k.removeprefix("codec."): v for k, v in payload["state_dict"].items() if k.startswith("codec.")}
    codec.load_state_dict(state)
    codec.eval()
    if args.manifest:
        _stats_over_manifest(codec, args.manifest, args.split, args.max_clips)
    elif not codec.has_latent_stats:
        logger.warning("no latent statistics: pass --manifest or run `avgen codec stats` before training a generator")
    codec.save(args.out, exported_from=str(ckpt), steps=int(payload.get("global_step", 0)))
    print(f"{ckpt} -> {args.out} (fingerprint {codec.fingerprint})")
    return 0


def info_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="avgen codec info",
                                     description="Print a codec's architecture, rates, statistics and fingerprint.")
    parser.add_argument("codec", help="codec file (codec.pt), official EnCodec file, or preset name")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    codec = _load(args.codec, torch.device("cpu"))
    info = {
        "codec": args.codec, "type": codec.codec_type, "fingerprint": codec.fingerprint,
        "sample_rate": codec.sample_rate, "channels": codec.channels, "hop_length": codec.hop_length,
        "frame_rate": codec.frame_rate, "latent_dim": codec.latent_dim,
        "bandwidths_kbps": getattr(codec, "bandwidths", None),
        "parameters": sum(p.numel() for p in codec.parameters()),
        "latent_stats_frames": int(codec.latent_stats_frames),
        "config": codec.config_dict(),
    }
    print_info(info, as_json=args.json)
    return 0


def _fit_main(argv: list[str]) -> int:
    from audio_codec.fit import fit_main  # Lightning: imported only for training

    return fit_main(argv)


SUBCOMMANDS = {"fit": _fit_main, "stats": stats_main, "encode": encode_main, "decode": decode_main,
               "export": export_main, "info": info_main}


def main(argv: list[str]) -> int:
    """Entry of `avgen codec`. Bad inputs (files, configs, codecs, audio) end with their message and
    exit status 2, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_subcommand(argv, prog="avgen codec", usage=USAGE, commands=SUBCOMMANDS, error_status=2)

"""`avgen sample`: mp4 clips with sound from prompts, videos (v2a), audio tracks (a2v), clips to
continue, first frames (i2av) or clips to retake, each written with a JSON sidecar as soon as it is
made. Clips longer than the training window are made chunk by chunk (`--window`, `--history`).

A job over a list (`--prompts`, `--video-list`, `--audio-list`, or repeated `--video`/`--audio`/
`--extend`/`--image`/`--retake`) is a batch job:

- a bad item (a missing or unreadable input, an input without the stream the task needs, a
  malformed list line) is skipped; it is named with its reason as it is found and again in the
  summary at the end;
- the exit status is 0 when at least one clip exists at the end, 1 when nothing usable is left,
  and 2 when `--strict` stopped the job at its first bad item;
- a rerun into the same `--out` keeps every clip whose mp4 and sidecar are already there and match
  the item (prompt, input, seed, sampler settings, checkpoint and length), and makes only the rest.

Across GPUs or processes: `torchrun --nproc-per-node N -m av_model.cli sample ...` (the same
arguments) gives each rank a contiguous share of the items, on `cuda:LOCAL_RANK` with `--device
auto`; every clip keeps its index, seed and id, so the folder ends up as a single process's would.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from av_model.sample.generator_file import load_generator
from av_model.sample.pipeline import AVPipeline, GeneratedClip, SkippedItem
from avio.errors import ManifestError
from avio.manifest import parse_record, read_lines, resolve_listed

__all__ = ["main"]

EXIT_NOTHING_MADE = 1
EXIT_STRICT = 2


@dataclass
class _Item:
    """One clip to make: its id, prompt, input file (v2a/a2v/extend/i2av/retake) and position in the job's list."""

    id: str
    prompt: str
    index: int
    input: str | None = None


@dataclass
class _Listing:
    """The items of a list file, and the lines that could not be read as items."""

    items: list[_Item] = field(default_factory=list)
    bad: list[SkippedItem] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ lists
def _lines(path: Path, flag: str) -> list[tuple[int, str]]:
    """Non-empty (line number, text) of a UTF-8 list file (`avio.manifest.read_lines`)."""
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} does not exist.")
    try:
        return read_lines(path)
    except ManifestError as err:
        raise ValueError(f"{flag} {err}") from None


def _record(path: Path, n: int, line: str, flag: str, listing: _Listing, needs: str) -> dict[str, Any] | None:
    """Line `n` of a JSONL list as its object, or None after naming it among the bad items."""
    try:
        return parse_record(path, n, line)
    except ManifestError as err:
        listing.bad.append(SkippedItem(f"{path.name}:{n}", f"{flag} {err} A JSONL list has {needs} per line."))
        return None


def _read_prompt_file(path: Path) -> _Listing:
    """Prompts from a text file (one per line) or a JSONL manifest (`id` and `caption`/`prompt`);
    a malformed JSONL line becomes a bad item named by its line."""
    lines = _lines(path, "--prompts")
    listing = _Listing()
    if not (path.suffix == ".jsonl" or (lines and lines[0][1].startswith("{"))):
        listing.items = [_Item(f"{i:04d}", text, i) for i, (_, text) in enumerate(lines)]
        return listing
    for i, (n, line) in enumerate(lines):  # JSONL whatever the file is called
        row = _record(path, n, line, "--prompts", listing, "one object with 'caption' (or 'prompt') and 'id'")
        if row is None:
            continue
        if not ({"caption", "prompt"} & row.keys()):
            listing.bad.append(SkippedItem(f"{path.name}:{n}", f"--prompts {path}:{n}: no 'caption' or 'prompt' "
                                                               "field."))
            continue
        listing.items.append(_Item(str(row.get("id", f"{i:04d}")), str(row.get("prompt", row.get("caption", ""))), i))
    return listing


def _read_input_list(path: Path, flag: str) -> _Listing:
    """Inputs from lines "path[<TAB>prompt]" or a JSONL manifest (`path`, `caption`/`prompt`, `id`).

    Relative paths are resolved against the list's folder (see `avio.manifest.resolve_listed`).
    """
    listing = _Listing()
    jsonl = path.suffix == ".jsonl"
    for i, (n, line) in enumerate(_lines(path, flag)):
        if jsonl:
            row = _record(path, n, line, flag, listing, "one object with 'path' and optionally 'caption' and 'id'")
            if row is None:
                continue
            if not isinstance(row.get("path"), str):
                listing.bad.append(SkippedItem(f"{path.name}:{n}", f"{flag} {path}:{n}: no 'path' field; each line "
                                                                   "needs 'path' and optionally 'caption' and 'id'."))
                continue
            name, prompt, cid = row["path"], str(row.get("caption", row.get("prompt", ""))), row.get("id")
        else:
            name, _, prompt = line.partition("\t")
            cid = None
        resolved = resolve_listed(name.strip(), path.parent)
        listing.items.append(_Item(str(cid) if cid is not None else Path(name.strip()).stem, prompt.strip(), i,
                                   str(resolved)))
    ids = [it.id for it in listing.items]
    if len(set(ids)) != len(ids):
        for it in listing.items:
            it.id = f"{it.index:04d}_{it.id}"
    return listing


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60].strip("_") or "clip"


# ----------------------------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avgen sample",
        description="Generate mp4 clips with sound from prompts, a video (video-to-audio), an audio track "
        "(audio-to-video), a clip to continue, a first frame (image-to-audio-video), or a clip to retake (a time "
        "span regenerated). Writes <out>/<id>.mp4 and <out>/<id>.json as each clip is made. Bad items of a list "
        "are skipped and named; a rerun keeps the clips already made.")
    p.add_argument("--ckpt", required=True, help="generator checkpoint (final.ckpt from `avgen fit`, or exported)")
    p.add_argument("--lora", type=Path, help="LoRA adapters to merge into --ckpt (lora.safetensors of an `avgen fit` "
                   "run with a model.lora section)")
    p.add_argument("--lora-scale", type=float, help="multiplier of the adapters' update (default 1; 0 gives the "
                   "base model)")
    p.add_argument("--codec", help="audio codec file (default: the one the latent cache was built with)")
    p.add_argument("--vae", help="video autoencoder file (default: the one the latent cache was built with)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", action="append", help="a text prompt (repeat for several)")
    src.add_argument("--prompts", type=Path, help="file of prompts: one per line, or JSONL with id and caption")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--video", type=Path, action="append", help="video-to-audio: the video to add sound to")
    cond.add_argument("--video-list", type=Path, help="video-to-audio for many videos: lines 'path[<TAB>prompt]' "
                      "or a JSONL manifest (relative paths are from the list's folder)")
    cond.add_argument("--audio", type=Path, action="append", help="audio-to-video: the sound to make a video for")
    cond.add_argument("--audio-list", type=Path, help="audio-to-video for many audio files: lines "
                      "'path[<TAB>prompt]' or a JSONL manifest (relative paths are from the list's folder)")
    cond.add_argument("--extend", type=Path, action="append", help="continuation: the clip to continue")
    cond.add_argument("--image", type=Path, action="append", help="image-to-audio-video: the first frame (PNG, "
                      "JPEG, ...; another size is scaled to cover the frame and centre-cropped)")
    cond.add_argument("--retake", type=Path, action="append", help="retake: the clip (with sound) of which "
                      "--span is generated again, the rest kept")
    p.add_argument("--extend-seconds", type=float, default=1.0, help="seconds of --extend kept as the given "
                   "beginning (default 1.0)")
    p.add_argument("--span", type=float, nargs=2, metavar=("START", "END"), help="--retake: the seconds to "
                   "generate again (widened to whole video tokens, 0.25 s by default)")
    p.add_argument("--modality", choices=("both", "video", "audio"), default="both", help="--retake: what to "
                   "generate again inside the span; the other is kept whole (default both)")
    p.add_argument("--window", type=float, help="seconds the model makes at once; longer clips (t2av, --image, "
                   "--extend) are made chunk by chunk (default: the training clips' duration)")
    p.add_argument("--history", type=float, help="seconds of each chunk given from the chunk before (default: "
                   "half the window, the longest clean prefix the model is trained on)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--duration", type=float, help="seconds per clip (default: the training clips' duration; "
                   "v2a/a2v: each input's own length)")
    p.add_argument("--steps", type=int, help="sampler steps (default 25; a distilled student's own, e.g. 4)")
    p.add_argument("--solver", choices=("euler", "heun"), help="ODE solver (default heun; a distilled student's "
                   "own: euler)")
    p.add_argument("--cfg-video", type=float, help="guidance scale of the video (default 3; 1 for a distilled "
                   "student, whose guidance is folded in)")
    p.add_argument("--cfg-audio", type=float, help="guidance scale of the audio (default 3; 1 for a distilled "
                   "student)")
    p.add_argument("--enhance-prompt", metavar="template|PATH", help="rewrite each prompt into the training "
                   "captions' style before encoding it: 'template' (the synthetic caption grammar, no weights) or "
                   "the folder of a local causal language model; the sidecar keeps both prompts")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LOW", "HIGH"), default=(0.0, 1.0),
                   help="guide only the steps with flow time in [LOW, HIGH] (1 = noise); the others run one "
                   "pass instead of two (default 0 1: every step)")
    p.add_argument("--seed", type=int, default=0, help="base seed; item i of the list uses seed + i (default 0)")
    p.add_argument("--batch-size", type=int, default=4, help="clips sampled together; v2a/a2v batch only inputs "
                   "of one length (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--text", nargs="+", help="text encoder specs (default: the cache's)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad item with exit status 2 "
                   "(default: skip it, name it, and go on)")
    return p


# ------------------------------------------------------------------------------------------- job
def _items(args: argparse.Namespace) -> tuple[str, list[_Item], list[SkippedItem]]:
    """(task, items, bad items) of the command line."""
    prompts: _Listing | None = None
    if args.prompts:
        prompts = _read_prompt_file(args.prompts)
    elif args.prompt:
        prompts = _Listing([_Item(f"{i:04d}", text, i) for i, text in enumerate(args.prompt)])
    task, inputs = "t2av", None
    if args.video_list or args.audio_list:
        task = "v2a" if args.video_list else "a2v"
        inputs = _read_input_list(args.video_list or args.audio_list,
                                  "--video-list" if args.video_list else "--audio-list")
    elif args.video or args.audio or args.extend or args.image or args.retake:
        task = ("v2a" if args.video else "a2v" if args.audio else "extend" if args.extend else
                "i2av" if args.image else "retake")
        if task == "retake" and args.span is None:
            raise ValueError("--retake needs --span START END: the seconds of the clip to generate again.")
        paths = [str(p) for p in (args.video or args.audio or args.extend or args.image or args.retake)]
        inputs = _Listing([_Item(f"{i:04d}_{_slug(Path(p).stem)}", "", i, p) for i, p in enumerate(paths)])
    if task != "retake" and (args.span is not None or args.modality != "both"):
        raise ValueError("--span and --modality choose what --retake generates again; give --retake IN.mp4 too.")
    if inputs is None:
        if prompts is None or not (prompts.items or prompts.bad):
            raise ValueError("nothing to sample: give --prompt, --prompts, --video, --video-list, --audio, "
                             "--audio-list, --extend, --image or --retake.")
        return task, prompts.items, prompts.bad
    bad = inputs.bad + (prompts.bad if prompts else [])
    texts = [it.prompt for it in prompts.items] if prompts else []
    if texts:  # prompts given apart from the inputs: one for all, or one per input
        if len(texts) == 1:
            texts = texts * len(inputs.items)
        if len(texts) != len(inputs.items):
            raise ValueError(f"{len(texts)} prompts for {len(inputs.items)} inputs; give one prompt, or one per input.")
        for it, text in zip(inputs.items, texts):
            it.prompt = text
    items = []
    for it in inputs.items:
        assert it.input is not None
        if Path(it.input).is_file():
            items.append(it)
        else:  # say where the path was looked for: list paths are resolved from the list's folder
            bad.append(SkippedItem(it.id, f"{it.input} does not exist (resolved to {Path(it.input).absolute()}); "
                                          "relative paths in a list are taken from the list's folder.", it.input))
    return task, items, bad


def _expected(pipe: AVPipeline, args: argparse.Namespace, task: str, item: _Item,
              duration: float | None) -> dict[str, Any] | None:
    """The sidecar fields a finished output of `item` must have (None: its length is unknown)."""
    want: dict[str, Any] = {
        "id": item.id, "prompt": item.prompt, "task": task, "seed": args.seed + item.index, "sampler": args.solver,
        "steps": args.steps, "guidance": {"video": args.cfg_video, "audio": args.cfg_audio,
                                          "interval": [float(v) for v in args.guidance_interval]},
        "checkpoint_sha256": pipe.checkpoint_sha256, "fps": pipe.fps, "sample_rate": pipe.sample_rate,
        "size": list(pipe.size), **_lora_fields(args), "prompt_enhancer": _enhancer_name(pipe),
    }
    if item.input is not None:
        want["input"] = item.input
    if task in ("v2a", "a2v", "retake"):
        assert item.input is not None
        try:
            want["duration"] = pipe._input_seconds(item.input, duration, video=task != "a2v", task=task,
                                                   modality=args.modality, span=args.span)
        except (ValueError, OSError):
            return None  # the input is bad: generation will skip it with the reason
    else:
        want["duration"] = duration
    if task == "extend":
        want["extend_seconds"] = pipe._floor_duration(args.extend_seconds)
    if task == "retake":
        want["span_asked"], want["modality"] = [float(v) for v in args.span], args.modality
    if task in ("t2av", "extend", "i2av") and duration is not None:
        try:
            long = pipe.long_clip(duration, args.window, args.history)
        except ValueError:
            return None  # generation explains it
        if long is not None:
            want["window"], want["history"] = long
    return want


def _enhancer_name(pipe: AVPipeline) -> str | None:
    enhancer = pipe.prompt_enhancer
    return None if enhancer is None else str(enhancer.name)


_SAMPLER_DEFAULTS = {"steps": 25, "solver": "heun", "cfg_video": 3.0, "cfg_audio": 3.0}


def _sampler_defaults(args: argparse.Namespace, pipe: AVPipeline) -> None:
    """Fill the sampler flags not given: a distilled student's own settings (its step count, Euler,
    guidance 1), the command's defaults for any other generator."""
    distill = pipe.extra.get("distill")
    own = {"steps": pipe.sampler.steps, "solver": pipe.sampler.solver, "cfg_video": pipe.sampler.guidance_video,
           "cfg_audio": pipe.sampler.guidance_audio} if distill else _SAMPLER_DEFAULTS
    for key, value in own.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if distill and (args.cfg_video != 1.0 or args.cfg_audio != 1.0):
        print(f"note: {args.ckpt} is a distilled student with guidance {distill.get('guidance_video')}/"
              f"{distill.get('guidance_audio')} folded in; --cfg-video/--cfg-audio other than 1 guide it again (and run "
              "two passes per step).", file=sys.stderr)


def _lora_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Sidecar fields of the merged adapters (None without --lora, as in sidecars that predate them)."""
    return {"lora_sha256": getattr(args, "lora_sha256", None), "lora_scale": args.lora_scale}


def _finished(out: Path, want: dict[str, Any]) -> bool:
    """Whether `out` holds this item's clip: a valid sidecar with the expected fields, and its mp4."""
    from avio import FormatError, probe, read_sidecar

    side, mp4 = out / f"{want['id']}.json", out / f"{want['id']}.mp4"
    if not (side.is_file() and mp4.is_file()):
        return False
    try:
        record = read_sidecar(side)
        info = probe(mp4)
    except (OSError, FormatError):  # unreadable sidecar or mp4: make the clip again
        return False
    for key, value in want.items():
        have = record.get(key)
        if isinstance(value, float) and isinstance(have, int | float):
            if not math.isclose(value, have, abs_tol=1e-6):
                return False
        elif have != value:
            return False
    return info.has_video and info.has_audio and abs(info.duration - float(want["duration"])) < 0.1


def _summary(made: int, kept: int, skipped: list[SkippedItem], out: Path) -> None:
    line = f"wrote {made} clips to {out}"
    if kept:
        line += f"; kept {kept} made by an earlier run"
    print(line, file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} items:", file=sys.stderr)
        for s in skipped:
            print(f"  {s.id}: {s.reason}", file=sys.stderr)


def _merge_lora(pipe: AVPipeline, args: argparse.Namespace) -> None:
    """Merge --lora into the pipeline's generator, times --lora-scale; say so when its base differs."""
    from av_model.dit.lora import merge_lora_file

    lora = merge_lora_file(pipe.model, args.lora, scale=args.lora_scale)  # type: ignore[arg-type]
    base_sha = lora.base.get("sha256")
    if base_sha and base_sha != pipe.checkpoint_sha256:
        print(f"note: the adapters {args.lora} were trained from {lora.base.get('path')} (sha256 {base_sha[:12]}), "
              f"not from {args.ckpt} (sha256 {str(pipe.checkpoint_sha256)[:12]}); merging them anyway.",
              file=sys.stderr)
    args.lora_sha256 = lora.sha256


@dataclass(frozen=True)
class _Launch:
    """This process's place in a multi-process launch (one process per GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @staticmethod
    def detect() -> _Launch:
        """The launch torchrun (or `srun torchrun`) started this process in; one process otherwise.

        Read from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, what Lightning's
        `TorchElasticEnvironment` reads): sampling needs no process group, since ranks share nothing
        but the output folder, and it loads without Lightning (tests/test_layering.py).

        Raises:
            ValueError: the variables are malformed or inconsistent.
        """
        env = os.environ
        if not all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")):
            return _Launch()
        try:
            launch = _Launch(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))
        except ValueError:
            raise ValueError(f"RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r}, LOCAL_RANK={env['LOCAL_RANK']!r} "
                             "are not integers; start several processes with torchrun.") from None
        if not 0 <= launch.rank < launch.world_size:
            raise ValueError(f"RANK {launch.rank} is outside WORLD_SIZE {launch.world_size}; start several processes "
                             "with torchrun, which sets both.")
        return launch

    def share(self, items: list[_Item]) -> list[_Item]:
        """This rank's items: a contiguous block of the list, ranks' blocks differing by at most one
        item. Each item keeps its index (so its seed and id), so its clip is the one a single
        process makes; and with one process's `--batch-size` the batches are the same too."""
        n = len(items)
        return items[self.rank * n // self.world_size: (self.rank + 1) * n // self.world_size]


def _sample(args: argparse.Namespace) -> int:
    # 1. Check inputs: what to sample and from which inputs; bad items are named now (by rank 0 of
    #    a multi-process launch, in which each rank samples and writes its share of the items).
    launch = _Launch.detect()
    task, items, skipped = _items(args)
    for s in skipped:
        if launch.rank == 0:
            print(f"skipping {s.id}: {s.reason}", file=sys.stderr)
    if skipped and args.strict:
        print("avgen sample: stopped at the first bad item (--strict).", file=sys.stderr)
        return EXIT_STRICT
    if launch.world_size > 1:
        skipped = skipped if launch.rank == 0 else []
        total, items = len(items), launch.share(items)
        print(f"rank {launch.rank} of {launch.world_size}: {len(items)} of {total} items", file=sys.stderr)
        if not items:
            return 0  # more ranks than items: this one has nothing to do, which is no failure
        if args.device == "auto":
            import torch

            if torch.cuda.is_available():
                args.device = f"cuda:{launch.local_rank}"
    enhancer = None
    if args.enhance_prompt:  # before the model loads: a wrong path is reported at once
        from av_model.text.enhance import load_enhancer

        enhancer = load_enhancer(args.enhance_prompt)
    # 2. Load the model (the decoders are the cache's, as the checkpoint records them, unless given).
    codec, vae = args.codec, args.vae
    if not (codec and vae):
        encoders = load_generator(args.ckpt, map_location="cpu").cache_meta["encoders"]
        codec, vae = codec or encoders["codec"], vae or encoders["vae"]
    pipe = AVPipeline.from_checkpoint(args.ckpt, codec, vae, device=args.device, text=args.text)
    if args.lora is not None:
        _merge_lora(pipe, args)
    _sampler_defaults(args, pipe)
    pipe.prompt_enhancer = enhancer
    duration = args.duration
    if duration is None and task in ("t2av", "extend", "i2av"):
        duration = float(pipe.meta.get("train_duration") or 2.0)
    # 3. Resume: keep the clips an earlier run of this job already made.
    todo = []
    for it in items:
        want = _expected(pipe, args, task, it, duration)
        if want is None or not _finished(args.out, want):
            todo.append(it)
    kept = len(items) - len(todo)
    if kept:
        print(f"resuming {args.out}: {kept} of {len(items)} clips already made", file=sys.stderr)
    # 4. Sample the rest, writing each clip as soon as it is made.
    made = 0
    if todo:
        inputs = [str(it.input) for it in todo] if task != "t2av" else None
        results = pipe.generate(
            [it.prompt for it in todo], task=task, videos=inputs if task in ("v2a", "extend", "retake") else None,
            audios=inputs if task == "a2v" else None, images=inputs if task == "i2av" else None, duration=duration,
            extend_seconds=args.extend_seconds, span=None if args.span is None else tuple(args.span),
            modality=args.modality, window=args.window, history=args.history,
            steps=args.steps, solver=args.solver, cfg_video=args.cfg_video, cfg_audio=args.cfg_audio,
            guidance_interval=tuple(args.guidance_interval), seeds=[args.seed + it.index for it in todo],
            batch_size=args.batch_size, ids=[it.id for it in todo])
        for result in results:
            if isinstance(result, GeneratedClip):
                if args.lora is not None:
                    result.info.update(lora=str(args.lora), **_lora_fields(args))
                pipe.save([result], args.out)
                made += 1
                continue
            print(f"skipping {result.id}: {result.reason}", file=sys.stderr)
            skipped.append(result)
            if args.strict:
                _summary(made, kept, skipped, args.out)
                print("avgen sample: stopped at the first bad item (--strict).", file=sys.stderr)
                return EXIT_STRICT
    # 5. Summary: what was made, kept and skipped, and why.
    _summary(made, kept, skipped, args.out)
    if made + kept == 0:
        print("avgen sample: no clip could be made; fix or remove the items above.", file=sys.stderr)
        return EXIT_NOTHING_MADE
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avgen sample`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.lora_scale is not None and args.lora is None:
        parser.error("--lora-scale needs --lora.")
    if args.lora is not None and args.lora_scale is None:
        args.lora_scale = 1.0
    try:
        return _sample(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"avgen sample: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

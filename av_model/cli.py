"""The `avgen` command: one subcommand per job.

Each subcommand lives in the module that owns the job and is imported only when it runs, so
`avgen --help` stays fast and a missing optional dependency of one job does not break the others.
A job module exposes `main(argv: list[str]) -> int`.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module:function, one-line description). The order is the order of `avgen --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("av_model.data.cli:main", "make the synthetic dataset, probe media files, check manifests"),
    "codec": ("audio_codec.cli:main", "audio codec: fit, stats, encode, decode"),
    "vae": ("av_model.vae.cli:main", "video autoencoder: fit, encode, decode"),
    "text": ("av_model.text.cli:main", "text encoders: list, encode prompts into the embedding cache"),
    "cache": ("av_model.cache.cli:main", "build or check the latent cache"),
    "fit": ("av_model.train.cli:fit_main", "train the diffusion transformer (LightningCLI)"),
    "validate": ("av_model.train.cli:validate_main", "validate a diffusion transformer checkpoint (LightningCLI)"),
    "distill": ("av_model.train.distill_cli:distill_main", "distil a generator into a few-step student (LightningCLI)"),
    "sample": ("av_model.sample.cli:main", "generate mp4 clips with sound from prompts, video, or audio"),
    "export": ("av_model.sample.generator_file:export_main", "write a generator checkpoint (file or sharded folder) as one file"),
    "diagnose": ("av_model.train.diagnose:main", "conditioning diagnostics: does a generator use its video, audio, text?"),
    "model": ("av_model.dit.cli:main", "list presets with parameter counts and FLOPs per token"),
    "eval": ("eval.cli:main", "automatic metrics on generated vs reference clips, with a report"),
    "codec-check": ("eval.codec_check:main", "does an audio codec keep the events? onsets through its latents"),
    "prefs": ("eval.preference.cli:main", "preference statistics: net win rates, leaderboard, agreement"),
    "study": ("human_eval_app.cli:study_main", "human evaluation studies: create, list, export"),
    "app": ("human_eval_app.cli:app_main", "start the human evaluation app (Streamlit)"),
    "demo": ("av_model.demo.run:main", "the main job end to end on the embedded default"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [
        "usage: avgen <command> [options]",
        "",
        "Joint audio-video generation: data, codecs, the diffusion transformer, metrics and studies.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Run `avgen <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"avgen: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            print(f"avgen: the command {name!r} is not available in this installation ({err}).", file=sys.stderr)
            return 2
        raise
    result = getattr(module, func_name)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

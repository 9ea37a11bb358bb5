"""`avgen demo`: the main job end to end on the embedded synthetic default.

Every stage is a real `avgen` command, as a researcher would run it, writing under one run
directory. A stage is skipped when its outputs exist and are valid, so an interrupted demo resumes
where it stopped. Independent jobs (the two autoencoders; the generators; the metrics) run side by
side with the CPU cores shared out between them (one thread each on 2 cores), because small models
use two single-threaded processes better than one two-threaded process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from eval.claims import AUTOENCODER

console = Console(width=None if sys.stdout.isatty() else 160)  # logs keep the claims table readable


@dataclass(frozen=True)
class Generator:
    """One generator the demo trains: its system name, YAML config and seed."""

    name: str
    config: str
    seed: int = 0


@dataclass
class DemoConfig:
    """Sizes of the demo run.

    `DemoConfig()` is the CPU profile (`make demo` on a machine without a GPU: the whole loop in
    under 15 minutes on 2 cores), `gpu()` the reference recipe for one GPU, `reduced()` the
    handful-of-clips version the test suite runs.
    """

    run_dir: Path = Path("runs/demo")
    profile: str = "cpu"
    n_train: int = 500
    n_val: int = 32
    n_heldout: int = 32
    codec_steps: int = 500
    vae_steps: int = 400
    dit_steps: int = 600
    models: tuple[tuple[str, str], ...] = (("moe", "configs/dit/tiny_moe.yaml"), ("dense", "configs/dit/tiny_dense.yaml"))
    seeds: int = 1  # each model trained with seeds 0 .. seeds-1 (names gain "_s<seed>" after the first)
    codec_config: str = "configs/codec/small.yaml"
    vae_config: str = "configs/vae/small.yaml"
    text: str = "minilm"
    workers: int = 2
    diag_clips: int = 16
    sample_steps: int = 16
    n_prompts: int = 16
    start_app: bool = True
    seed: int = 0
    extra_fit_args: list[str] = field(default_factory=list)

    @property
    def generators(self) -> tuple[Generator, ...]:
        """The generators to train: every model at every seed, seed by seed."""
        return tuple(Generator(name if seed == 0 else f"{name}_s{seed}", config, seed)
                     for seed in range(self.seeds) for name, config in self.models)

    @property
    def systems(self) -> tuple[str, ...]:
        """Generated systems, in report order: the generators, then the untrained floor."""
        return (*(g.name for g in self.generators), "untrained")

    @classmethod
    def reduced(cls, run_dir: Path) -> DemoConfig:
        return cls(
            run_dir=run_dir,
            n_train=12,
            n_val=4,
            n_heldout=4,
            codec_steps=4,
            vae_steps=4,
            dit_steps=6,
            codec_config="configs/codec/debug.yaml",
            vae_config="configs/vae/debug.yaml",
            models=(("moe", "configs/dit/debug.yaml"), ("dense", "configs/dit/debug_dense.yaml")),
            sample_steps=2,
            n_prompts=2,
            diag_clips=4,
            start_app=False,
        )

    @classmethod
    def gpu(cls, run_dir: Path) -> DemoConfig:
        """The reference recipe on one GPU: every choice and its reason is in the YAML files named here."""
        return cls(
            run_dir=run_dir,
            profile="gpu",
            # The `small` generators overfit 500 clips after ~1,500 steps of 32; clips are free to make.
            n_train=2500,
            n_val=48,
            n_heldout=48,
            codec_steps=1500,
            vae_steps=1000,
            dit_steps=1600,  # the most that fits 15 minutes; sync began to show only at the end of 1,000 steps (configs/dit/small_moe.yaml)
            workers=max(2, (os.cpu_count() or 4) - 2),
            diag_clips=48,
            codec_config="configs/codec/gpu_reference.yaml",
            vae_config="configs/vae/gpu_reference.yaml",
            # Two seeds of each: the mixture of experts has to beat its dense twin beyond seed noise.
            models=(("moe", "configs/dit/small_moe.yaml"), ("dense", "configs/dit/small_dense.yaml")),
            seeds=2,
            sample_steps=25,
            n_prompts=48,
        )


@dataclass
class Stage:
    """One step of the demo: commands run side by side, then a check that the outputs are valid."""

    name: str
    commands: list[list[str]]
    is_done: Callable[[], bool]
    describe: Callable[[], str] = lambda: ""


def _avgen(*args: object) -> list[str]:  # paths and numbers become their str()
    return [sys.executable, "-m", "av_model.cli", *map(str, args)]


def _run_parallel(commands: list[list[str]], log_dir: Path, stage: str) -> None:
    """Runs commands concurrently (the CPU cores shared out between them), logs to files, fails loudly."""
    env = dict(os.environ)
    if len(commands) > 1:
        # The cores shared out: one thread each on a 2-core laptop, several each on a GPU host's 16.
        threads = str(max(1, (os.cpu_count() or 1) // len(commands)))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, AVGEN_NUM_THREADS=threads)
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, cmd in enumerate(commands):
        log = log_dir / f"{stage}.{i}.log"
        console.print(f"  [dim]$ {shlex.join(cmd[2:] if cmd[1] == '-m' else cmd)}  (log: {log})[/dim]")
        if len(commands) == 1:
            # A single command keeps the terminal so its own progress bar shows.
            procs.append((subprocess.Popen(cmd, env=env), log, cmd))
        else:
            fh = log.open("w")
            procs.append((subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT), log, cmd))
    failed = []
    for proc, log, cmd in procs:
        if proc.wait() != 0:
            failed.append((proc.returncode, log, cmd))
    for rc, log, cmd in failed:
        tail = log.read_text()[-3000:] if log.exists() else ""
        console.print(f"[red]stage {stage!r} failed (exit {rc}): {shlex.join(cmd)}[/red]\n{tail}")
    if failed:
        raise SystemExit(f"demo stopped at stage {stage!r}; fix the error above and run again (finished stages are kept)")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _count_mp4(folder: Path) -> int:
    return len(list(folder.glob("*.mp4"))) if folder.is_dir() else 0


def build_stages(cfg: DemoConfig) -> list[Stage]:
    run = cfg.run_dir.resolve()  # absolute: `avgen eval` resolves listed files against the cwd
    data, manifest = run / "data", run / "data" / "manifest.jsonl"
    codec, vae = run / "codec" / "codec.pt", run / "vae" / "vae.pt"
    cache = run / "cache"
    untrained_dir = run / "dit_untrained"
    samples = run / "samples"
    prompts = run / "heldout_prompts.jsonl"
    heldout_videos = run / "heldout_videos.txt"
    n_clips = cfg.n_train + cfg.n_val + cfg.n_heldout
    gen_dirs = {g.name: run / f"dit_{g.name}" for g in cfg.generators}
    ckpts = {**{n: d / "final.ckpt" for n, d in gen_dirs.items()}, "untrained": untrained_dir / "final.ckpt"}

    def manifest_ok() -> bool:
        if not manifest.exists():
            return False
        lines = [ln for ln in manifest.read_text().splitlines() if ln.strip()]
        return len(lines) == n_clips and all((data / json.loads(ln)["path"]).exists() for ln in lines)

    def fit_args(config: str, out: Path, seed: int) -> list[str]:
        # An interrupted generator continues from its last checkpoint (steps, optimizer, average, data order).
        resume = ["--ckpt_path", "last"] if (out / "checkpoints" / "last.ckpt").exists() else []
        return [
            "-c", config,
            "--data.cache_dir", str(cache),
            "--trainer.default_root_dir", str(out),
            "--trainer.max_steps", str(cfg.dit_steps),
            "--seed_everything", str(seed),
            *resume,
            *cfg.extra_fit_args,
        ]

    def sample_cmds(task: str) -> list[list[str]]:
        cmds = []
        for name in cfg.systems:
            common = ["--ckpt", ckpts[name], "--codec", codec, "--vae", vae, "--steps", str(cfg.sample_steps),
                      "--seed", str(cfg.seed)]
            if task == "t2av":
                cmds.append(_avgen("sample", *common, "--prompts", prompts, "--out", samples / name))
            else:  # v2a and a2v take the held-out clips' video or sound, with their captions
                source = "--video-list" if task == "v2a" else "--audio-list"
                cmds.append(_avgen("sample", *common, source, heldout_videos, "--out", samples / f"{name}_{task}"))
        return cmds

    def eval_cmd(task: str) -> list[str]:
        folder = {"t2av": "{}", "v2a": "{}_v2a", "a2v": "{}_a2v"}[task]
        pair = ["--pair-by", "id"] if task in ("v2a", "a2v") else []
        # t2av: the held-out clips through the autoencoder are scored too, the ceiling of any generator.
        ceiling = ["--generated", f"{AUTOENCODER}={samples / AUTOENCODER}"] if task == "t2av" else []
        return _avgen("eval", *sum((["--generated", f"{n}={samples / folder.format(n)}"] for n in cfg.systems), []),
                      *ceiling,
                      "--reference", manifest, "--reference-split", "heldout", "--task", task, *pair,
                      "--codec", codec,  # FAD on the demo codec's latents: the distance to the held-out audio
                      "--out", run / "eval" / task, "--no-progress")

    return [
        Stage(
            "1. synthetic dataset",
            [_avgen("data", "synth", "--out", data, "--n-train", cfg.n_train, "--n-val", cfg.n_val,
                    "--n-heldout", cfg.n_heldout, "--seed", cfg.seed, "--workers", cfg.workers)],
            manifest_ok,
            lambda: f"{n_clips} clips in {data}",
        ),
        Stage(
            "2. audio codec + video autoencoder",
            [
                _avgen("codec", "fit", "-c", cfg.codec_config, "--data.manifest", manifest,
                       "--trainer.max_steps", cfg.codec_steps, "--trainer.default_root_dir", codec.parent),
                _avgen("vae", "fit", "-c", cfg.vae_config, "--data.manifest", manifest,
                       "--trainer.max_steps", cfg.vae_steps, "--trainer.default_root_dir", vae.parent),
            ],
            lambda: codec.exists() and vae.exists(),
            lambda: f"{codec}, {vae}",
        ),
        Stage(
            "3. latent cache",
            [_avgen("cache", "build", "--manifest", manifest, "--codec", codec, "--vae", vae,
                    "--text", cfg.text, "--workers", cfg.workers, "--out", cache)],
            lambda: (cache / "meta.json").exists() and _read_json(cache / "meta.json").get("complete", False),
            lambda: str(cache),
        ),
        Stage(
            "4. generators: mixture of experts and dense baseline",
            [_avgen("fit", *fit_args(g.config, gen_dirs[g.name], g.seed)) for g in cfg.generators],
            lambda: all(ckpts[g.name].exists() for g in cfg.generators),
            lambda: ", ".join(str(d) for d in gen_dirs.values()),
        ),
        Stage(
            "5. untrained reference model",
            [_avgen("fit", *fit_args(cfg.generators[0].config, untrained_dir, cfg.seed), "--trainer.max_steps", "0")],
            lambda: ckpts["untrained"].exists(),
            lambda: "same architecture, no training: the floor the trained models must clear",
        ),
        Stage(
            "6. generate: text-to-audio-video",
            sample_cmds("t2av"),
            lambda: all(_count_mp4(samples / n) >= cfg.n_prompts for n in cfg.systems),
            lambda: f"{cfg.n_prompts} held-out prompts per system in {samples}",
        ),
        Stage(
            "7. generate: video-to-audio, audio-to-video; autoencoder ceiling",
            [*sample_cmds("v2a"), *sample_cmds("a2v"),
             _avgen("vae", "reconstruct", "--manifest", manifest, "--split", "heldout", "--limit", cfg.n_prompts,
                    "--vae", vae, "--out", samples / AUTOENCODER)],
            lambda: all(_count_mp4(samples / f"{n}_{t}") >= cfg.n_prompts for n in cfg.systems for t in ("v2a", "a2v"))
            and _count_mp4(samples / AUTOENCODER) >= cfg.n_prompts,
            lambda: f"{cfg.n_prompts} held-out videos and sounds per system; the same clips through the autoencoder",
        ),
        Stage(
            "8. automatic metrics and conditioning diagnostics",
            # A resumed run repeats only the jobs whose report is missing (stage 8 takes minutes).
            [*(eval_cmd(t) for t in ("t2av", "v2a", "a2v") if not (run / "eval" / t / "report.json").exists()),
             *([] if (run / "diagnostics" / "conditioning.json").exists() else [
                 _avgen("diagnose", *sum((["--ckpt", f"{n}={ckpts[n]}"] for n in cfg.systems), []), "--cache", cache,
                        "--split", "val", "--max-clips", cfg.diag_clips, "--out", run / "diagnostics",
                        "--no-progress")])],
            lambda: all((run / "eval" / t / "report.json").exists() for t in ("t2av", "v2a", "a2v"))
            and (run / "diagnostics" / "conditioning.json").exists(),
            lambda: ", ".join(str(run / "eval" / t / "report.html") for t in ("t2av", "v2a", "a2v")),
        ),
        Stage(
            "9. human evaluation study",
            [_avgen("study", "create", run / "study.yaml", "--db", f"sqlite:///{run.resolve() / 'study.db'}")],
            lambda: (run / "study.db").exists() and (run / "study.created").exists(),
            lambda: f"sqlite:///{run / 'study.db'}",
        ),
    ]


def _write_inputs(cfg: DemoConfig) -> None:
    """Held-out prompts and reference videos for generation, and the study spec (after stage 1)."""
    from avio import load_manifest

    run = cfg.run_dir.resolve()  # absolute: `avgen eval` resolves listed files against the cwd
    manifest = run / "data" / "manifest.jsonl"
    if not manifest.exists():
        return
    heldout = [e for e in load_manifest(manifest) if e.split == "heldout"][: cfg.n_prompts]
    prompts = run / "heldout_prompts.jsonl"
    if not prompts.exists():
        prompts.write_text("\n".join(json.dumps({"id": e.id, "caption": e.caption}) for e in heldout) + "\n")
    videos = run / "heldout_videos.txt"
    if not videos.exists():
        videos.write_text("".join(f"{(run / 'data' / e.path).resolve()}\t{e.caption}\n" for e in heldout))
    spec = run / "study.yaml"
    if not spec.exists():
        import yaml

        spec.write_text(yaml.safe_dump({
            "name": "demo: mixture of experts vs dense baseline",
            "description": "The tiny mixture-of-experts generator against the dense baseline of equal "
                           "active size, on held-out synthetic prompts.",
            "systems": [{"name": "moe", "path": "samples/moe"}, {"name": "dense", "path": "samples/dense"}],
            "model": "moe",
            "questions": ["overall", "visual", "audio", "sync", "prompt"],
            "raters_per_pair": 3,
            "gold": {"count": min(4, cfg.n_prompts), "per_rater": min(2, cfg.n_prompts), "kinds": ["audio_shift"], "shift_seconds": 0.5},
            "open_join": True,
            "seed": cfg.seed,
        }, sort_keys=False))


def _summary(cfg: DemoConfig, timings: list[tuple[str, float, bool]]) -> None:
    from av_model.demo.summary import claims_of_run, print_claims, write_summary

    table = Table(title=f"avgen demo ({cfg.profile} profile): stages")
    for col in ("stage", "seconds", "status"):
        table.add_column(col)
    for name, sec, skipped in timings:
        table.add_row(name, f"{sec:.1f}", "kept (already done)" if skipped else "ran")
    console.print(table)
    run = cfg.run_dir.resolve()
    problems: list[str] = []
    claims = claims_of_run(run, problems)
    for line in problems:
        console.print(f"[yellow]left out of the summary: {line}[/yellow]")
    print_claims(claims, console)
    summary = write_summary(run, claims, timings, cfg.profile)
    console.print(f"\n[bold]Everything is under {run}/[/bold]: data/, codec/codec.pt, vae/vae.pt, cache/, "
                  f"{', '.join(f'dit_{g.name}/' for g in cfg.generators)}, samples/, eval/*/report.html, "
                  f"study.db, {summary.name}")


def run_demo(cfg: DemoConfig, stop_after: int | None = None) -> int:
    """Runs the stages not yet done; with `stop_after`, stops after that stage (a later run continues)."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float, bool]] = []
    total = time.perf_counter()
    for number, stage in enumerate(build_stages(cfg), start=1):
        if stop_after is not None and number > stop_after:
            console.print(f"[bold]stopped after stage {stop_after}[/bold] (--stop-after); run the same command "
                          f"without it to continue from stage {number}: finished stages are kept")
            return 0
        _write_inputs(cfg)
        t0 = time.perf_counter()
        if stage.is_done():
            console.print(f"[green]✓ {stage.name}[/green] (kept: {stage.describe()})")
            timings.append((stage.name, 0.0, True))
            continue
        console.rule(f"[bold]{stage.name}")
        _run_parallel(stage.commands, cfg.run_dir / "logs", stage.name.split(".")[0])
        if stage.name.startswith("9."):
            (cfg.run_dir / "study.created").write_text("ok\n")
        if not stage.is_done():
            raise SystemExit(f"stage {stage.name!r} finished but its outputs are missing or invalid; "
                             f"see the logs in {cfg.run_dir / 'logs'}")
        sec = time.perf_counter() - t0
        timings.append((stage.name, sec, False))
        console.print(f"[green]✓ {stage.name}[/green] in {sec:.1f} s: {stage.describe()}")
    timings.append(("total", time.perf_counter() - total, False))
    _summary(cfg, timings)
    if cfg.start_app:
        return _start_app(cfg)
    return 0


def _start_app(cfg: DemoConfig, port: int = 8501) -> int:
    """Serve the demo's study and print the rater link and the lead pages with their password."""
    import secrets

    from human_eval_app.auth import admin_configured
    from human_eval_app.store import open_store
    from human_eval_app.studies import admin_hashes, list_studies

    db = f"sqlite:///{cfg.run_dir.resolve() / 'study.db'}"
    store = open_store(db, create=False)
    try:
        codes = [info.code for info in list_studies(store)]
        has_admin = admin_configured(None, extra_hashes=admin_hashes(store))  # env, or named admins in the db
    finally:
        store.dispose()
    env = dict(os.environ)
    url = f"http://localhost:{port}"
    console.print(f"\n[bold]rating app[/bold] on {db} (Ctrl-C to stop; DEMO_APP=0 skips this)")
    for code in codes:
        console.print(f"  rater link:  {url}/?study={code}")
    if has_admin:
        console.print(f"  admin pages: {url}/studies and {url}/dashboard (your configured admin password)")
    else:
        # A password for this session only, so the lead pages open without any setup.
        env["AVGEN_ADMIN_PASSWORD"] = password = secrets.token_urlsafe(9)
        console.print(f"  admin pages: {url}/studies and {url}/dashboard, password for this session: {password}")
    return subprocess.call(_avgen("app", "--db", db, "--port", str(port)), env=env)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _apply_sets(cfg: DemoConfig, sets: list[str]) -> DemoConfig:
    """`--set FIELD=VALUE` overrides of DemoConfig's number and text fields, checked."""
    import dataclasses

    settable = {f.name: f for f in dataclasses.fields(cfg) if f.type in ("int", "str") and f.name != "profile"}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or key not in settable:
            raise SystemExit(f"--set {item!r}: use FIELD=VALUE with FIELD one of {', '.join(sorted(settable))}.")
        if settable[key].type == "int":
            try:
                number = int(value)
            except ValueError:
                raise SystemExit(f"--set {item!r}: {key} must be a whole number.") from None
            if number < (0 if key == "seed" else 1):
                raise SystemExit(f"--set {item!r}: {key} must be at least {0 if key == 'seed' else 1}.")
            setattr(cfg, key, number)
        else:
            setattr(cfg, key, value)
    return cfg


def _check_profile(cfg: DemoConfig) -> None:
    """A run directory holds one profile: mixing a CPU codec with GPU generators would be silently wrong."""
    marker = cfg.run_dir / "profile.txt"
    if marker.exists() and marker.read_text().strip() != cfg.profile:
        raise SystemExit(f"{cfg.run_dir} holds a demo run of the {marker.read_text().strip()!r} profile; this is "
                         f"the {cfg.profile!r} profile. Use another --run-dir (or delete that one).")
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(cfg.profile + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="avgen demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="where every stage writes (default runs/demo)")
    ap.add_argument("--profile", choices=("auto", "cpu", "gpu"), default="auto",
                    help="cpu: the whole loop in minutes on a CPU; gpu: the reference recipe on one GPU "
                         "(auto, the default: gpu when a CUDA device is present)")
    ap.add_argument("--reduced", action="store_true", help="debug sizes and a handful of clips (seconds, for tests)")
    ap.add_argument("--text", default=None, help="text encoder: 'minilm' (default, the packaged one) or a local folder")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a size of the profile, e.g. --set dit_steps=1200 --set n_train=1000")
    ap.add_argument("--no-app", action="store_true", help="do not start the app at the end (also: DEMO_APP=0)")
    ap.add_argument("--stop-after", type=int, choices=range(1, 10), metavar="N",
                    help="stop after stage N (1-9), e.g. to split the run over jobs with a time limit; "
                         "the same command without it continues")
    args = ap.parse_args(argv)
    profile = args.profile
    if profile == "auto" and not args.reduced:
        profile = "gpu" if _cuda_available() else "cpu"
        console.print(f"[bold]profile: {profile}[/bold] ("
                      + ("a CUDA device is present: the reference recipe" if profile == "gpu" else
                         "no CUDA device: the CPU demo") + "; choose with --profile cpu|gpu)")
    if profile == "gpu" and not _cuda_available():
        raise SystemExit("--profile gpu needs a CUDA device and none is visible to torch; use --profile cpu.")
    if args.reduced:
        cfg = DemoConfig.reduced(args.run_dir)
        cfg.profile = "gpu-reduced" if profile == "gpu" else "reduced"
    else:
        cfg = DemoConfig.gpu(args.run_dir) if profile == "gpu" else DemoConfig(run_dir=args.run_dir)
    if args.text:
        cfg.text = args.text
    _apply_sets(cfg, args.set)
    if args.no_app or os.environ.get("DEMO_APP", "1") == "0":
        cfg.start_app = False
    _check_profile(cfg)
    return run_demo(cfg, stop_after=args.stop_after)

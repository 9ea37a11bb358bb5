"""`avgen demo`: the main job end to end on the embedded synthetic default.

Every stage is a real `avgen` command, as a researcher would run it, writing under one run
directory. A stage is skipped when its outputs exist and are valid, so an interrupted demo resumes
where it stopped. Independent jobs (the two autoencoders; the generators; the metrics) run side by
side with the CPU cores shared out between them (one thread each on 2 cores), because small models
use two single-threaded processes better than one two-threaded process. The GPU profile also starts a job
as soon as its inputs exist (`Stage.start_after`), beside the stages still running: the untrained
reference beside the generators, the conditioning diagnostics and the conditioned sampling beside
text-to-audio-video sampling, the first metrics beside the rest of the sampling.
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
    eval_jobs: int = 1  # processes per `avgen eval` of stage 8 for its per-clip work (three evals run side by side)
    diag_clips: int = 16
    sample_steps: int = 16
    n_prompts: int = 16
    start_app: bool = True
    seed: int = 0
    overlap: bool = False  # start jobs early, beside later stages (Stage.start_after): a GPU host's cores and memory
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
            # Stage 8 is CPU work: the three evaluations side by side share the host's cores.
            eval_jobs=max(1, ((os.cpu_count() or 4) - 2) // 3),
            diag_clips=48,
            codec_config="configs/codec/gpu_reference.yaml",
            vae_config="configs/vae/gpu_reference.yaml",
            # Two seeds of each: the mixture of experts has to beat its dense twin beyond seed noise.
            models=(("moe", "configs/dit/small_moe.yaml"), ("dense", "configs/dit/small_dense.yaml")),
            seeds=2,
            sample_steps=25,
            n_prompts=48,
            # Sampling, scoring and diagnostics of small models leave most of an H100 idle: overlap them.
            overlap=True,
        )


@dataclass
class Stage:
    """One step of the demo: commands run side by side, then a check that the outputs are valid.

    `start_after[i]` is the number of the stage after which command i may start early, beside the
    stages between (with `DemoConfig.overlap`); None, or no entry, waits for this stage's turn.
    """

    name: str
    commands: list[list[str]]
    is_done: Callable[[], bool]
    describe: Callable[[], str] = lambda: ""
    start_after: list[int | None] = field(default_factory=list)

    def ready_after(self, i: int) -> int | None:
        return self.start_after[i] if i < len(self.start_after) else None


def _avgen(*args: object) -> list[str]:  # paths and numbers become their str()
    return [sys.executable, "-m", "av_model.cli", *map(str, args)]


class _Jobs:
    """The demo's processes: started at their stage's turn or early, waited for stage by stage.

    Jobs running together share the CPU cores out (one thread each on a 2-core laptop, several each
    on a GPU host's 16); each writes its own log. A failure is reported at its stage's turn, with
    the log's tail, and ends the jobs still running.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[int, list[tuple[subprocess.Popen, Path, list[str]]]] = {}
        self.started: set[tuple[int, int]] = set()
        self.early: set[tuple[int, int]] = set()

    def _running(self) -> int:
        return sum(proc.poll() is None for procs in self.procs.values() for proc, _, _ in procs)

    def start(self, number: int, stage: Stage, indices: list[int], early: bool = False) -> None:
        indices = [i for i in indices if (number, i) not in self.started]
        if not indices:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        together = len(indices) + self._running()
        env = dict(os.environ)
        if together > 1:
            threads = str(max(1, (os.cpu_count() or 1) // together))
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, AVGEN_NUM_THREADS=threads)
        for i in indices:
            cmd, log = stage.commands[i], self.log_dir / f"{number}.{i}.log"
            early_note = f", started early for stage {number}" if early else ""
            console.print(f"  [dim]$ {shlex.join(cmd[2:] if cmd[1] == '-m' else cmd)}  (log: {log}{early_note})[/dim]")
            if together == 1:
                # A single command keeps the terminal so its own progress bar shows; a log left by an
                # earlier run must not be shown as this one's if it fails.
                log.unlink(missing_ok=True)
                proc = subprocess.Popen(cmd, env=env)
            else:
                with log.open("w") as fh:
                    proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
            self.procs.setdefault(number, []).append((proc, log, cmd))
            self.started.add((number, i))
            if early:
                self.early.add((number, i))

    def start_early(self, stages: list[Stage], finished: int, last: int) -> None:
        """Starts the commands of stages `finished`+2 .. `last` that may run once stage `finished` is done."""
        for number, stage in enumerate(stages, start=1):
            if not finished + 1 < number <= last or (number not in self.procs and stage.is_done()):
                continue
            ready = [i for i in range(len(stage.commands)) if (stage.ready_after(i) or number) <= finished]
            self.start(number, stage, ready, early=True)

    def wait(self, number: int, name: str) -> int:
        """Waits for the stage's processes and fails loudly; returns how many had started early."""
        procs = self.procs.get(number, [])
        failed = [(proc.returncode, log, cmd) for proc, log, cmd in procs if proc.wait() != 0]
        for rc, log, cmd in failed:
            tail = log.read_text()[-3000:] if log.exists() else ""
            console.print(f"[red]stage {name!r} failed (exit {rc}): {shlex.join(cmd)}[/red]\n{tail}")
        if failed:
            self.stop()
            raise SystemExit(f"demo stopped at stage {name!r}; fix the error above and run again (finished stages are kept)")
        return sum(n == number for n, _ in self.early)

    def stop(self) -> None:
        """Ends every job still running (after a failure or an interrupt); their stages rerun next time."""
        for procs in self.procs.values():
            for proc, _, _ in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()


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
                      "--out", run / "eval" / task, "--no-progress", "--jobs", cfg.eval_jobs)

    conditioned = [*sample_cmds("v2a"), *sample_cmds("a2v"),
                   _avgen("vae", "reconstruct", "--manifest", manifest, "--split", "heldout", "--limit", cfg.n_prompts,
                          "--vae", vae, "--codec", codec, "--out", samples / AUTOENCODER)]
    # A resumed run repeats only the stage-8 jobs whose report is missing (stage 8 takes minutes); each
    # may start as soon as what it reads exists: t2av's clips after stage 6, the checkpoints after stage 5.
    metrics = [(eval_cmd(t), {"t2av": 6, "v2a": None, "a2v": None}[t])
               for t in ("t2av", "v2a", "a2v") if not (run / "eval" / t / "report.json").exists()]
    if not (run / "eval" / "codec.json").exists():  # does the codec keep the held-out onsets? (after stage 2)
        metrics.append((_avgen("codec-check", "--codec", codec, "--manifest", manifest, "--split", "heldout",
                               "--out", run / "eval" / "codec.json", "--no-progress"), 2))
    if not (run / "diagnostics" / "conditioning.json").exists():
        metrics.append((_avgen("diagnose", *sum((["--ckpt", f"{n}={ckpts[n]}"] for n in cfg.systems), []),
                               "--cache", cache, "--split", "val", "--max-clips", cfg.diag_clips,
                               "--out", run / "diagnostics", "--no-progress"), 5))
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
            start_after=[3],  # needs the cache only
        ),
        Stage(
            "6. generate: text-to-audio-video",
            sample_cmds("t2av"),
            lambda: all(_count_mp4(samples / n) >= cfg.n_prompts for n in cfg.systems),
            lambda: f"{cfg.n_prompts} held-out prompts per system in {samples}",
        ),
        Stage(
            "7. generate: video-to-audio, audio-to-video; autoencoder ceiling",
            conditioned,
            lambda: all(_count_mp4(samples / f"{n}_{t}") >= cfg.n_prompts for n in cfg.systems for t in ("v2a", "a2v"))
            and _count_mp4(samples / AUTOENCODER) >= cfg.n_prompts,
            lambda: f"{cfg.n_prompts} held-out videos and sounds per system; the same clips through the autoencoder",
            start_after=[5] * len(conditioned),  # beside text-to-audio-video sampling
        ),
        Stage(
            "8. automatic metrics and conditioning diagnostics",
            [cmd for cmd, _ in metrics],
            lambda: all((run / "eval" / t / "report.json").exists() for t in ("t2av", "v2a", "a2v"))
            and (run / "diagnostics" / "conditioning.json").exists() and (run / "eval" / "codec.json").exists(),
            lambda: ", ".join(str(run / "eval" / t / "report.html") for t in ("t2av", "v2a", "a2v")),
            start_after=[after for _, after in metrics],
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
    from av_model.demo.summary import (
        claims_of_run,
        codec_check_of_run,
        print_claims,
        print_codec_check,
        write_summary,
    )

    table = Table(title=f"avgen demo ({cfg.profile} profile): stages")
    for col in ("stage", "seconds", "status"):
        table.add_column(col)
    for name, sec, skipped in timings:
        table.add_row(name, f"{sec:.1f}", "kept (already done)" if skipped else "ran")
    console.print(table)
    run = cfg.run_dir.resolve()
    problems: list[str] = []
    claims = claims_of_run(run, problems)
    codec = codec_check_of_run(run, problems)
    for line in problems:
        console.print(f"[yellow]left out of the summary: {line}[/yellow]")
    print_claims(claims, console)
    print_codec_check(codec, console)
    summary = write_summary(run, claims, timings, cfg.profile, codec)
    console.print(f"\n[bold]Everything is under {run}/[/bold]: data/, codec/codec.pt, vae/vae.pt, cache/, "
                  f"{', '.join(f'dit_{g.name}/' for g in cfg.generators)}, samples/, eval/*/report.html, "
                  f"study.db, {summary.name}")


def run_demo(cfg: DemoConfig, stop_after: int | None = None) -> int:
    """Runs the stages not yet done; with `stop_after`, stops after that stage (a later run continues)."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    stages = build_stages(cfg)
    if not cfg.overlap:
        for stage in stages:
            stage.start_after = []
    jobs = _Jobs(cfg.run_dir / "logs")
    try:
        timings = _run_stages(cfg, stages, jobs, stop_after)
    finally:
        jobs.stop()
    if timings is None:
        return 0
    _summary(cfg, timings)
    if cfg.start_app:
        return _start_app(cfg)
    return 0


def _run_stages(cfg: DemoConfig, stages: list[Stage], jobs: _Jobs,
                stop_after: int | None) -> list[tuple[str, float, bool]] | None:
    """Each stage in turn (its early jobs already running); None when stopped by `stop_after`."""
    timings: list[tuple[str, float, bool]] = []
    total = time.perf_counter()
    last = len(stages) if stop_after is None else stop_after
    for number, stage in enumerate(stages, start=1):
        if number > last:
            console.print(f"[bold]stopped after stage {stop_after}[/bold] (--stop-after); run the same command "
                          f"without it to continue from stage {number}: finished stages are kept")
            return None
        _write_inputs(cfg)
        t0 = time.perf_counter()
        if number not in jobs.procs and stage.is_done():
            console.print(f"[green]✓ {stage.name}[/green] (kept: {stage.describe()})")
            timings.append((stage.name, 0.0, True))
            jobs.start_early(stages, number, last)
            continue
        console.rule(f"[bold]{stage.name}")
        jobs.start(number, stage, list(range(len(stage.commands))))
        early = jobs.wait(number, stage.name)
        if stage.name.startswith("9."):
            (cfg.run_dir / "study.created").write_text("ok\n")
        if not stage.is_done():
            raise SystemExit(f"stage {stage.name!r} finished but its outputs are missing or invalid; "
                             f"see the logs in {cfg.run_dir / 'logs'}")
        sec = time.perf_counter() - t0
        timings.append((stage.name, sec, False))
        started = f" ({early} of its jobs started earlier, beside the stages before)" if early else ""
        console.print(f"[green]✓ {stage.name}[/green] in {sec:.1f} s{started}: {stage.describe()}")
        jobs.start_early(stages, number, last)
    timings.append(("total", time.perf_counter() - total, False))
    return timings


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
    ap.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                    help="an extra option for every generator's `avgen fit` (stages 4-5), e.g. "
                         "--fit-arg=--model.parallel.compile=true; checked by `avgen fit` itself")
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
    cfg.extra_fit_args = [*cfg.extra_fit_args, *args.fit_arg]
    if args.no_app or os.environ.get("DEMO_APP", "1") == "0":
        cfg.start_app = False
    _check_profile(cfg)
    return run_demo(cfg, stop_after=args.stop_after)

"""`avgen demo`: the main job end to end on the embedded synthetic default.

Every stage is a real `avgen` command, as a researcher would run it, writing under one run
directory. A stage is skipped when its outputs exist and are valid, so an interrupted demo resumes
where it stopped. Independent stages (the two autoencoders; the two generators) run side by side,
one CPU thread each, because small models use two single-threaded processes better than one
two-threaded process.
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

console = Console()


@dataclass
class DemoConfig:
    """Sizes of the demo run. `reduced()` gives the handful-of-clips version the test suite runs."""

    run_dir: Path = Path("runs/demo")
    n_train: int = 500
    n_val: int = 32
    n_heldout: int = 32
    codec_steps: int = 500
    vae_steps: int = 400
    dit_steps: int = 600
    dit_moe_config: str = "configs/dit/tiny_moe.yaml"
    dit_dense_config: str = "configs/dit/tiny_dense.yaml"
    codec_config: str = "configs/codec/small.yaml"
    vae_config: str = "configs/vae/small.yaml"
    sample_steps: int = 16
    n_prompts: int = 16
    start_app: bool = True
    seed: int = 0
    extra_fit_args: list[str] = field(default_factory=list)

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
            dit_moe_config="configs/dit/debug.yaml",
            dit_dense_config="configs/dit/debug_dense.yaml",
            sample_steps=2,
            n_prompts=2,
            start_app=False,
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
    """Runs commands concurrently (one CPU thread each when more than one), logs to files, fails loudly."""
    env = dict(os.environ)
    if len(commands) > 1:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", AVGEN_NUM_THREADS="1")
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
    moe_dir, dense_dir, untrained_dir = run / "dit_moe", run / "dit_dense", run / "dit_untrained"
    samples = run / "samples"
    prompts = run / "heldout_prompts.jsonl"
    heldout_videos = run / "heldout_videos.txt"
    n_clips = cfg.n_train + cfg.n_val + cfg.n_heldout

    def manifest_ok() -> bool:
        if not manifest.exists():
            return False
        lines = [ln for ln in manifest.read_text().splitlines() if ln.strip()]
        return len(lines) == n_clips and all((data / json.loads(ln)["path"]).exists() for ln in lines)

    def fit_args(config: str, out: Path) -> list[str]:
        return [
            "-c", config,
            "--data.cache_dir", str(cache),
            "--trainer.default_root_dir", str(out),
            "--trainer.max_steps", str(cfg.dit_steps),
            "--seed_everything", str(cfg.seed),
            *cfg.extra_fit_args,
        ]

    def sample_cmds(task: str) -> list[list[str]]:
        cmds = []
        for name, ckpt in (("moe", moe_dir / "final.ckpt"), ("dense", dense_dir / "final.ckpt"),
                           ("untrained", untrained_dir / "final.ckpt")):  # SYSTEMS
            common = ["--ckpt", ckpt, "--codec", codec, "--vae", vae, "--steps", str(cfg.sample_steps),
                      "--seed", str(cfg.seed)]
            if task == "t2av":
                cmds.append(_avgen("sample", *common, "--prompts", prompts, "--out", samples / name))
            else:
                cmds.append(_avgen("sample", *common, "--video-list", heldout_videos, "--out",
                                   samples / f"{name}_v2a"))
        return cmds

    return [
        Stage(
            "1. synthetic dataset",
            [_avgen("data", "synth", "--out", data, "--n-train", cfg.n_train, "--n-val", cfg.n_val,
                    "--n-heldout", cfg.n_heldout, "--seed", cfg.seed)],
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
                    "--text", "minilm", "--out", cache)],
            lambda: (cache / "meta.json").exists() and _read_json(cache / "meta.json").get("complete", False),
            lambda: str(cache),
        ),
        Stage(
            "4. generators: mixture of experts and dense baseline",
            [_avgen("fit", *fit_args(cfg.dit_moe_config, moe_dir)),
             _avgen("fit", *fit_args(cfg.dit_dense_config, dense_dir))],
            lambda: (moe_dir / "final.ckpt").exists() and (dense_dir / "final.ckpt").exists(),
            lambda: f"{moe_dir}, {dense_dir}",
        ),
        Stage(
            "5. untrained reference model",
            [_avgen("fit", *fit_args(cfg.dit_moe_config, untrained_dir), "--trainer.max_steps", "0")],
            lambda: (untrained_dir / "final.ckpt").exists(),
            lambda: "same architecture, no training: the floor the trained models must clear",
        ),
        Stage(
            "6. generate: text-to-audio-video",
            sample_cmds("t2av"),
            lambda: all(_count_mp4(samples / n) >= cfg.n_prompts for n in ("moe", "dense", "untrained")),
            lambda: f"{cfg.n_prompts} held-out prompts per system in {samples}",
        ),
        Stage(
            "7. generate: video-to-audio",
            sample_cmds("v2a"),
            lambda: all(_count_mp4(samples / f"{n}_v2a") >= cfg.n_prompts for n in ("moe", "dense", "untrained")),
            lambda: f"{cfg.n_prompts} held-out reference videos per system",
        ),
        Stage(
            "8. automatic metrics",
            [
                _avgen("eval", *sum((["--generated", f"{n}={samples / n}"] for n in SYSTEMS), []),
                       "--reference", manifest, "--reference-split", "heldout", "--task", "t2av",
                       "--out", run / "eval" / "t2av", "--no-progress"),
                _avgen("eval", *sum((["--generated", f"{n}={samples / (n + '_v2a')}"] for n in SYSTEMS), []),
                       "--reference", manifest, "--reference-split", "heldout", "--task", "v2a",
                       "--pair-by", "id", "--out", run / "eval" / "v2a", "--no-progress"),
            ],
            lambda: all((run / "eval" / t / "report.csv").exists() for t in ("t2av", "v2a")),
            lambda: f"{run / 'eval' / 't2av' / 'report.html'}, {run / 'eval' / 'v2a' / 'report.html'}",
        ),
        Stage(
            "9. human evaluation study",
            [_avgen("study", "create", run / "study.yaml", "--db", f"sqlite:///{run.resolve() / 'study.db'}")],
            lambda: (run / "study.db").exists() and (run / "study.created").exists(),
            lambda: f"sqlite:///{run / 'study.db'}",
        ),
    ]


SYSTEMS = ("moe", "dense", "untrained")


def _write_inputs(cfg: DemoConfig) -> None:
    """Held-out prompts and reference videos for generation, and the study spec (after stage 1)."""
    from av_model.data import load_manifest

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


def _event_rows(run: Path) -> list[dict]:
    """Event precision/recall per system and task from the metrics reports."""
    import pandas as pd

    rows = []
    for task in ("t2av", "v2a"):
        csv = run / "eval" / task / "report.csv"
        if not csv.exists():
            continue
        df = pd.read_csv(csv)
        for _, r in df[df["metric"] == "events"].iterrows():
            if r["status"] != "ok":  # e.g. an untrained model's video shows no event at all
                rows.append({"task": task, "system": r["system"], "f1": 0.0, "precision": float("nan"),
                             "recall": 0.0, "offset_ms": f"not computed: {r['reason']}"})
                continue
            rows.append({"task": task, "system": r["system"], "f1": r["value"],
                         "precision": r.get("extra.precision"), "recall": r.get("extra.recall"),
                         "offset_ms": r.get("extra.offset_ms")})
    return rows


LEARNED_MARGIN = 0.05  # event F1 above the untrained model's that counts as learned, not noise


def _verdicts(rows: list[dict]) -> list[str]:
    """One line per task: the mixture-of-experts model's event F1 against the untrained floor."""
    lines = []
    for task in ("t2av", "v2a"):
        f1 = {r["system"]: r["f1"] for r in rows if r["task"] == task}
        if "moe" not in f1 or "untrained" not in f1:
            continue
        moe, floor = float(f1["moe"]), float(f1["untrained"])
        learned = moe >= floor + LEARNED_MARGIN
        lines.append(f"{task}: moe event F1 {moe:.3f} vs untrained {floor:.3f} -> "
                     + ("[green]learned[/green]" if learned else
                        f"[yellow]not clearly above the floor[/yellow] (needs +{LEARNED_MARGIN})"))
    return lines


def _summary(cfg: DemoConfig, timings: list[tuple[str, float, bool]]) -> None:
    table = Table(title="avgen demo: stages")
    for col in ("stage", "seconds", "status"):
        table.add_column(col)
    for name, sec, skipped in timings:
        table.add_row(name, f"{sec:.1f}", "kept (already done)" if skipped else "ran")
    console.print(table)
    rows = _event_rows(cfg.run_dir)
    if rows:
        ev = Table(title="Did the models learn? Audio onsets against visible events (higher is better)")
        for col in ("task", "system", "precision", "recall", "F1", "mean |offset| ms"):
            ev.add_column(col)
        for r in rows:
            ev.add_row(r["task"], r["system"], *(f"{v:.3f}" if isinstance(v, float) else str(v)
                                                   for v in (r["precision"], r["recall"], r["f1"])),
                       f"{r['offset_ms']:.1f}" if isinstance(r["offset_ms"], float) else str(r["offset_ms"]))
        console.print(ev)
        console.print("t2av: onsets in the generated audio against events seen in the generated video; "
                      "v2a: generated audio against the reference clip's true event times. 'untrained' is "
                      "the same architecture before training: the floor.")
        for line in _verdicts(rows):
            console.print(line)
    run = cfg.run_dir.resolve()  # absolute: `avgen eval` resolves listed files against the cwd
    console.print(f"\n[bold]Everything is under {run}/[/bold]: data/, codec/codec.pt, vae/vae.pt, cache/, "
                  f"dit_moe/, dit_dense/, samples/, eval/*/report.html, study.db")


def run_demo(cfg: DemoConfig) -> int:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float, bool]] = []
    total = time.perf_counter()
    for stage in build_stages(cfg):
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="avgen demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="where every stage writes (default runs/demo)")
    ap.add_argument("--reduced", action="store_true", help="debug sizes and a handful of clips (seconds, for tests)")
    ap.add_argument("--no-app", action="store_true", help="do not start the app at the end (also: DEMO_APP=0)")
    args = ap.parse_args(argv)
    cfg = DemoConfig.reduced(args.run_dir) if args.reduced else DemoConfig(run_dir=args.run_dir)
    if args.no_app or os.environ.get("DEMO_APP", "1") == "0":
        cfg.start_app = False
    return run_demo(cfg)

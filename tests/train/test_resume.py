"""Exact resume: a run killed with SIGKILL mid-epoch continues the loss curve of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from av_model.train.cli import fit_main

from .conftest import fit_args

REPO = Path(__file__).resolve().parents[2]
TOTAL_STEPS = 10


def _args(cache: Path, root: Path, *extra: str) -> list[str]:
    # 16 clips in two buckets, batches of 4: 4 batches per epoch, so checkpoints every 3 steps fall
    # mid-epoch and the runs cross epoch boundaries. The schedule length is fixed (decay_steps) so
    # it does not depend on max_steps; one loader process exercises the worker path.
    return fit_args(cache, root, "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "0",
                    "--checkpoint.every_n_train_steps", "3", "--model.optimizer.decay_steps", "40",
                    "--data.num_workers", "1", *extra)


def _losses(root: Path) -> pd.Series:
    """`train/loss` by step from the newest log of `root` (the killed run's log may be empty or cut)."""
    newest = max(root.glob("logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    m = pd.read_csv(newest / "metrics.csv").dropna(subset=["train/loss"])
    return m.set_index("step")["train/loss"].sort_index()


def _kill_after_checkpoint(proc: subprocess.Popen, last: Path, deadline: float) -> None:
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)


@pytest.mark.timeout(240)
def test_sigkill_and_resume_continue_the_same_curve(fake_cache: Path, tmp_path: Path) -> None:
    # The run to kill is a process of its own that would train on and on; it uses as many threads
    # as this process so its arithmetic is the same as the in-process runs'.
    env = {**os.environ, "AVGEN_NUM_THREADS": str(torch.get_num_threads()), "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen(
        [sys.executable, "-m", "av_model.cli", "fit", *_args(fake_cache, tmp_path / "run", "--trainer.max_steps", "1000")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    killer = threading.Thread(target=_kill_after_checkpoint, args=(victim, last, time.time() + 180))
    killer.start()
    # Meanwhile, here: the uninterrupted reference run.
    assert fit_main(_args(fake_cache, tmp_path / "ref", "--trainer.max_steps", str(TOTAL_STEPS))) == 0
    killer.join()
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read()[-2000:]
    assert last.exists(), f"no checkpoint before the kill: {victim.stderr.read()[-2000:]}"
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < killed_at < TOTAL_STEPS and killed_at % 4 != 0, f"killed at step {killed_at}, not mid-epoch"

    assert fit_main(_args(fake_cache, tmp_path / "run", "--trainer.max_steps", str(TOTAL_STEPS),
                          "--ckpt_path", str(last))) == 0
    ref, res = _losses(tmp_path / "ref"), _losses(tmp_path / "run")
    after = ref.index[ref.index >= killed_at]
    assert len(after) == TOTAL_STEPS - killed_at
    pd.testing.assert_series_equal(res.loc[after], ref.loc[after], rtol=1e-5, check_names=False)


def test_resuming_from_a_truncated_checkpoint_says_so_and_names_the_others(
        fake_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    torch.save({"global_step": 3}, ckpts / "step0000003.ckpt")
    whole = (ckpts / "step0000003.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(whole[: len(whole) // 2])  # a save cut short by a killed job
    assert fit_main(_args(fake_cache, tmp_path / "run", "--trainer.max_steps", "2",
                          "--ckpt_path", str(ckpts / "last.ckpt"))) == 1
    err = capsys.readouterr().err
    assert "last.ckpt is not a readable checkpoint: the file is damaged or truncated" in err
    assert "step0000003.ckpt" in err and "Traceback" not in err

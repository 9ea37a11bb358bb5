"""Exact resume: a run killed with SIGKILL mid-epoch continues the loss curve of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from .conftest import fit_args

REPO = Path(__file__).resolve().parents[2]


def _fit(cache: Path, root: Path, *extra: str) -> subprocess.Popen:
    # 16 clips in two buckets, batches of 4: 4 batches per epoch, so checkpoints every 3 steps fall
    # mid-epoch and the runs cross epoch boundaries. The schedule length is fixed (decay_steps) so
    # it does not depend on max_steps; one loader process exercises the worker path.
    args = fit_args(cache, root, "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "0",
                    "--checkpoint.every_n_train_steps", "3", "--model.optimizer.decay_steps", "40",
                    "--data.num_workers", "1", "--samples.codec", "null", *extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AVGEN_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "av_model.cli", "fit", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _losses(root: Path) -> pd.Series:
    frames = [pd.read_csv(p) for p in sorted(root.glob("logs/version_*/metrics.csv"))]
    m = pd.concat(frames).dropna(subset=["train/loss"])
    return m.set_index("step")["train/loss"].sort_index()


@pytest.mark.timeout(180)
def test_sigkill_and_resume_continue_the_same_curve(fake_cache: Path, tmp_path: Path) -> None:
    total = 10
    reference = _fit(fake_cache, tmp_path / "ref", "--trainer.max_steps", str(total))
    victim = _fit(fake_cache, tmp_path / "run", "--trainer.max_steps", "1000")  # would run on and on
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert last.exists(), f"no checkpoint before the kill: {victim.stderr.read()[-2000:]}"
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < killed_at < total and killed_at % 4 != 0  # mid-epoch

    resumed = _fit(fake_cache, tmp_path / "run", "--trainer.max_steps", str(total), "--ckpt_path", str(last))
    for proc in (reference, resumed):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    ref, res = _losses(tmp_path / "ref"), _losses(tmp_path / "run")
    after = ref.index[ref.index >= killed_at]
    assert len(after) == total - killed_at
    pd.testing.assert_series_equal(res.loc[after], ref.loc[after], rtol=1e-5, check_names=False)

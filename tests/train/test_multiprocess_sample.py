"""`avgen sample` under torchrun: two CPU processes split the prompts and write the files one process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from av_model.sample.cli import main
from avio import sha256_file

from .conftest import Encoders

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["a red ball bounces", "a beep", "two balls collide", "a green ring slides", "a flash"]


def _args(trained: Path, enc: Encoders, out: Path) -> list[str]:
    args = ["--ckpt", str(trained / "final.ckpt"), "--codec", str(enc.codec_path), "--vae", str(enc.vae_path),
            "--out", str(out), "--steps", "2", "--device", "cpu", "--duration", "1.0", "--batch-size", "2",
            "--seed", "5"]
    for p in PROMPTS:
        args += ["--prompt", p]
    return args


def test_two_processes_split_the_prompts_and_match_one(trained: Path, encoders: Encoders, tmp_path: Path) -> None:
    # Both runs in fresh processes with one thread and MKL's strict reproducibility (MKL_CBWR):
    # without it MKL's float results may depend on how a buffer happens to be aligned, which differs
    # from process to process, and a last-bit difference can flip a rounded pixel of the mp4.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AVGEN_NUM_THREADS": "1",
           "MKL_CBWR": "AUTO,STRICT"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.run([*launch, "-m", "av_model.cli", "sample", *_args(trained, encoders, tmp_path / "two")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Contiguous shares of 5 items: rank 0 makes 2, rank 1 makes 3.
    assert "rank 0 of 2: 2 of 5 items" in proc.stderr and "rank 1 of 2: 3 of 5 items" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "av_model.cli", "sample", *_args(trained, encoders, tmp_path / "one")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = sorted((tmp_path / "one").glob("*.mp4")), sorted((tmp_path / "two").glob("*.mp4"))
    assert [p.name for p in one] == [p.name for p in two] == [f"{i:04d}.mp4" for i in range(len(PROMPTS))]
    for a, b in zip(one, two):
        side_a, side_b = (json.loads(p.with_suffix(".json").read_text()) for p in (a, b))
        assert side_a["seed"] == side_b["seed"] and side_a["prompt"] == side_b["prompt"]
        assert sha256_file(a) == sha256_file(b), f"{a.name} differs between one process and two"


def test_the_comparison_catches_a_share_that_renumbers_items(trained: Path, encoders: Encoders, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranks of a launch, one after the other in this process: right, the union is one process's
    folder; with the planted error (each rank numbers its share from 0, so seeds restart), it is not."""
    from dataclasses import replace

    from av_model.sample import cli

    def run(out: Path, share: Any) -> dict[str, str]:
        monkeypatch.setattr(cli._Launch, "share", share)
        for rank in (0, 1):
            monkeypatch.setattr(cli._Launch, "detect", staticmethod(lambda r=rank: cli._Launch(r, 2, r)))
            assert main(_args(trained, encoders, out)) == 0
        return {json.loads(p.read_text())["prompt"]: sha256_file(p.with_suffix(".mp4")) for p in out.glob("*.json")}

    good_share = cli._Launch.share

    def renumbered(self: Any, items: list) -> list:
        return [replace(it, index=i, id=f"r{self.rank}_{i:04d}") for i, it in enumerate(good_share(self, items))]

    one = run(tmp_path / "good", good_share)
    monkeypatch.undo()
    assert main(_args(trained, encoders, tmp_path / "one")) == 0
    reference = {json.loads(p.read_text())["prompt"]: sha256_file(p.with_suffix(".mp4"))
                 for p in (tmp_path / "one").glob("*.json")}
    assert one == reference
    bad = run(tmp_path / "bad", renumbered)
    assert bad.keys() == reference.keys() and bad != reference


def test_launch_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from av_model.sample.cli import _Item, _Launch

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert _Launch.detect() == _Launch(0, 1, 0)  # not under torchrun: one process
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="RANK 3 is outside WORLD_SIZE 2"):
        _Launch.detect()
    monkeypatch.setenv("RANK", "1")
    items = [_Item(f"{i:04d}", "p", i) for i in range(5)]
    assert [it.index for it in _Launch.detect().share(items)] == [2, 3, 4]

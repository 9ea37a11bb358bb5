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
from avio import read_clip, sha256_file

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
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "AVGEN_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "av_model.cli", "sample", *_args(trained, encoders, tmp_path / "two")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Contiguous shares of 5 items: rank 0 makes 2, rank 1 makes 3.
    assert "rank 0 of 2: 2 of 5 items" in proc.stderr and "rank 1 of 2: 3 of 5 items" in proc.stderr
    assert main(_args(trained, encoders, tmp_path / "one")) == 0
    one, two = sorted((tmp_path / "one").glob("*.mp4")), sorted((tmp_path / "two").glob("*.mp4"))
    assert [p.name for p in one] == [p.name for p in two] == [f"{i:04d}.mp4" for i in range(len(PROMPTS))]
    for a, b in zip(one, two):
        side_a, side_b = (json.loads(p.with_suffix(".json").read_text()) for p in (a, b))
        assert side_a["seed"] == side_b["seed"] and side_a["prompt"] == side_b["prompt"]
        if sha256_file(a) != sha256_file(b):
            # Another process may take another CPU kernel path (its buffers aligned otherwise), and a
            # last-bit float difference can flip a rounded pixel: then the clips must agree closely.
            # Another seed or item gives unrelated noise, far outside these bounds.
            ca, cb = read_clip(a), read_clip(b)
            pixels = (ca.frames.float() - cb.frames.float()).abs()
            assert pixels.mean() < 0.5 and pixels.max() <= 8, f"{a.name} differs: {pixels.mean():.2f} mean"
            assert ca.audio is not None and cb.audio is not None
            assert (ca.audio - cb.audio).abs().max() < 0.02, f"{a.name}: its sound differs"


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

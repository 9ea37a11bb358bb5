"""`avgen data`: synth, probe and check from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from av_model.cli import main as avgen


def test_synth_probe_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    args = ["data", "synth", "--out", str(out), "--n-train", "3", "--n-val", "1", "--n-heldout", "1",
            "--width", "32", "--height", "32", "--duration", "1", "--workers", "1", "--quiet"]
    assert avgen(args) == 0
    text = capsys.readouterr().out
    assert "train 3, val 1, heldout 1 (5 in all)" in text and "clips/s" in text
    assert avgen(args) == 0  # the same dataset again: nothing to do
    assert "nothing was generated" in capsys.readouterr().out
    assert avgen([*args[:4], "--n-train", "4", *args[6:]]) == 2  # a different one: refused
    assert "--overwrite" in capsys.readouterr().err

    clip = next((out / "train").glob("*.mp4"))
    assert avgen(["data", "probe", "--json", str(clip)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["has_audio"] and info["width"] == 32 and info["num_frames"] == 16

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk" * 10)
    assert avgen(["data", "probe", str(clip), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "32x32" in captured.out and "bad.mp4" in captured.err

    assert avgen(["data", "check", str(out), "--workers", "1"]) == 0
    assert "5 of 5 entries decode" in capsys.readouterr().out
    # an entry pointing at a corrupt file fails the check and is named
    with (out / "manifest.jsonl").open("a") as f:
        f.write(json.dumps({"id": "broken", "path": str(bad), "caption": "x", "split": "val"}) + "\n")
    assert avgen(["data", "check", str(out / "manifest.jsonl"), "--split", "val", "--workers", "1"]) == 1
    text = capsys.readouterr().out
    assert "1 of 2 entries decode" in text and "FAILED broken:" in text


def test_bad_options_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert avgen(["data", "synth", "--out", str(tmp_path), "--width", "33", "--quiet"]) == 2
    assert "even int >= 32" in capsys.readouterr().err
    assert avgen(["data", "check", str(tmp_path / "none.jsonl")]) == 1
    assert "no such manifest" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        avgen(["data", "synth", "--help"])
    assert "--n-heldout" in capsys.readouterr().out


def test_check_names_partial_audio_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from avio import write_clip

    ds = tmp_path / "ds"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (48, 32, 32, 3), dtype=np.uint8)  # 3 s at 16 fps
    sound = (0.1 * rng.standard_normal((1, 48000))).astype(np.float32)
    write_clip(ds / "clips" / "whole.mp4", frames, 16.0, sound, 16000)
    write_clip(ds / "clips" / "partial.mp4", frames, 16.0, sound[:, :16000], 16000)  # 1 s of sound
    rows = [{"id": "whole", "path": "clips/whole.mp4", "caption": "x"},
            {"id": "partial", "path": "clips/partial.mp4", "caption": "x"},
            {"id": "gone", "path": "clips/gone.mp4", "caption": "x"}]
    (ds / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)  # relative paths resolve from the manifest's folder, not from here
    assert avgen(["data", "check", "ds/manifest.jsonl", "--workers", "1"]) == 1
    text = capsys.readouterr().out
    assert "1 of 3 entries decode" in text
    partial = next(line for line in text.splitlines() if line.startswith("FAILED partial:"))
    assert "the audio covers only 1.0" in partial and "of the 3.000 s of video" in partial
    gone = next(line for line in text.splitlines() if line.startswith("FAILED gone:"))
    assert str((ds / "clips" / "gone.mp4").absolute()) in gone and "manifest.jsonl:3" in gone
    assert "'clips/gone.mp4'" in gone and "resolved from the manifest's folder" in gone

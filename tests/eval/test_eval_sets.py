"""Sets of clips (folders, manifests), pairing, and the media reader's timing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avio import write_clip
from eval.onsets import detect_onsets
from eval.reader import EvalInputError, read_audio, read_video
from eval.sets import load_set, pair_sets
from eval.testing import bouncing_clip


def test_folder_with_sidecars(write_set) -> None:
    folder = write_set("gen", 3, duration=1.0)
    (folder / "clip1.json").write_text(json.dumps({"prompt": "a red ball", "reference_id": "ref-7", "seed": 3}))
    clips = load_set(folder)
    assert clips.name == "gen" and len(clips) == 3 and clips.has_captions
    rec = clips.by_id()["clip1"]
    assert rec.caption == "a red ball" and rec.reference_id == "ref-7" and rec.extra["seed"] == 3
    assert load_set(folder, name="mine").name == "mine"


def test_manifest_jsonl_csv_and_split(small_sets: dict[str, Path], tmp_path: Path) -> None:
    ref = load_set(small_sets["manifest"])
    assert len(ref) == 4 and ref.has_events and ref.records[0].events[0].kind
    held = load_set(small_sets["manifest"], split="heldout")
    assert [r.id for r in held] == ["clip1", "clip3"]
    with pytest.raises(EvalInputError, match="splits"):
        load_set(small_sets["manifest"], split="nope")
    rows = [json.loads(line) for line in small_sets["manifest"].read_text().splitlines()]
    csv = small_sets["manifest"].parent / "m.csv"
    import pandas as pd

    pd.DataFrame([{**r, "events": json.dumps(r["events"])} for r in rows]).to_csv(csv, index=False)
    from_csv = load_set(csv)
    assert [r.id for r in from_csv] == [r.id for r in ref]
    assert from_csv.records[0].events == ref.records[0].events


def test_pairing_by_id_and_prompt(small_sets: dict[str, Path]) -> None:
    gen, ref = load_set(small_sets["sync"]), load_set(small_sets["manifest"])
    pairs = pair_sets(gen, ref, by="id")
    assert [(g.id, r.id) for g, r in pairs] == [(f"clip{i}", f"clip{i}") for i in range(4)]
    assert [r.id for _, r in pair_sets(gen, ref, by="prompt")] == [f"clip{i}" for i in range(4)]
    with pytest.raises(EvalInputError, match="no partner"):
        pair_sets(gen, ref.limit(2), by="id")
    with pytest.raises(EvalInputError, match="'id' or 'prompt'"):
        pair_sets(gen, ref, by="seed")


def _expect(tmp_path: Path, content: str | None, match: str, name: str = "manifest.jsonl", **kw) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(EvalInputError, match=match):
        load_set(path, **kw)


def test_bad_sets_give_clear_errors(tmp_path: Path, write_set) -> None:
    _expect(tmp_path, None, "no such folder", name="missing")
    (tmp_path / "empty").mkdir()
    _expect(tmp_path, None, "empty", name="empty")
    _expect(tmp_path, "", "no rows")
    _expect(tmp_path, "{not json\n", "not valid JSON")
    _expect(tmp_path, '{"path": "a.mp4"}\n', "missing 'id'")
    _expect(tmp_path, '{"id": "a", "path": "a.mp4"}\n', "do not exist")
    _expect(tmp_path, '{"id": "a", "path": "a.mp4", "start": 2, "end": 1}\n', "'end'")
    _expect(tmp_path, '{"id": "a", "path": "a.mp4", "events": [{"kind": "x"}]}\n', "'time'")
    folder = write_set("dup", 1, duration=1.0)
    line = json.dumps({"id": "x", "path": str(folder / "clip0.mp4")})
    _expect(tmp_path, line + "\n" + line + "\n", "duplicate id")
    (folder / "clip0.json").write_text("{oops")
    with pytest.raises(EvalInputError, match="sidecar"):
        load_set(folder)
    with pytest.raises(EvalInputError, match="single media file"):
        load_set(folder / "clip0.mp4")


def test_relative_folder_and_listed_paths_resolve_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`avgen eval runs/x` from the project root: a relative folder, and manifests listing paths
    relative to their own folder (or, written by hand, to the current directory)."""
    monkeypatch.chdir(tmp_path)
    folder = Path("runs") / "x"
    clip = bouncing_clip(0, duration=1.0)
    for stem in ("a", "b"):
        write_clip(folder / f"{stem}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
        (folder / f"{stem}.json").write_text(json.dumps({"prompt": stem, "id": stem, "path": f"{stem}.mp4"}))
    from_folder = load_set("runs/x")
    assert [r.id for r in from_folder] == ["a", "b"]
    assert all(r.path.is_file() and r.path.resolve() == (tmp_path / "runs/x" / f"{r.id}.mp4") for r in from_folder)

    # relative to the manifest's folder; relative to the cwd; absolute
    rows = [{"id": "a", "path": "a.mp4"}, {"id": "b", "path": "runs/x/b.mp4"},
            {"id": "c", "path": str(tmp_path / "runs/x/a.mp4")}]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    listed = load_set("runs/x/manifest.jsonl")
    assert [r.path.resolve() for r in listed] == [tmp_path / "runs/x" / n for n in ("a.mp4", "b.mp4", "a.mp4")]

    # a manifest read from another cwd still finds the files beside it
    (folder / "beside.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:1] + rows[2:]))
    monkeypatch.chdir(tmp_path / "runs")
    assert [r.path.resolve() for r in load_set("x/beside.jsonl")] == [tmp_path / "runs/x/a.mp4"] * 2
    monkeypatch.chdir(tmp_path)

    # a file that is really missing is named, with the folder it was looked for in
    (folder.parent / "bad.jsonl").write_text(json.dumps({"id": "z", "path": "gone/z.mp4"}) + "\n")
    with pytest.raises(EvalInputError, match="do not exist") as err:
        load_set("runs/bad.jsonl")
    assert "runs/gone/z.mp4" in str(err.value) and str(tmp_path / "runs") in str(err.value)


def test_reader_keeps_audio_and_video_in_sync(tmp_path: Path) -> None:
    clip = bouncing_clip(5, duration=2.0, sample_rate=24000, min_event_gap=0.2)
    path = write_clip(tmp_path / "c.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
    frames, fps = read_video(path)
    assert frames.shape == clip.frames.shape and fps == 16.0
    assert np.abs(frames.astype(int) - clip.frames).mean() < 2.0  # H.264 at crf 18
    audio, sr = read_audio(path)
    assert sr == 24000 and audio.shape[0] == 1
    onsets = detect_onsets(audio, sr)
    # AAC priming must not delay the sound: onsets stay within 2 ms of the events
    nearest = np.array([np.min(np.abs(onsets - t)) for t in clip.events])
    assert nearest.max() < 0.002, nearest
    small, fps8 = read_video(path, fps=8, size=(16, 32), start=0.5, duration=1.0)
    assert small.shape == (8, 16, 32, 3) and fps8 == 8
    a16, _ = read_audio(path, sample_rate=16000, channels=2, duration=1.0)
    assert a16.shape == (2, 16000)


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalInputError, match="no such file"):
        read_video(tmp_path / "none.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(EvalInputError, match="cannot be opened as media"):
        read_audio(bad)
    silent = write_clip(tmp_path / "silent.mp4", np.zeros((4, 16, 16, 3), np.uint8), 8.0)
    with pytest.raises(EvalInputError, match="no audio stream"):
        read_audio(silent)
    with pytest.raises(EvalInputError, match="frame size"):
        read_video(silent, size=0)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_latin1_manifest_names_its_line(tmp_path: Path, suffix: str) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    if suffix == ".jsonl":
        text = '{"id": "a", "path": "a.mp4", "caption": "a drum"}\n{"id": "b", "path": "a.mp4", "caption": "un caf\u00e9"}\n'
    else:
        text = "id,path,caption\na,a.mp4,a drum\nb,a.mp4,un caf\u00e9\n"
    path = tmp_path / f"manifest{suffix}"
    path.write_bytes(text.encode("latin-1"))
    line = 2 if suffix == ".jsonl" else 3
    with pytest.raises(EvalInputError, match=rf"manifest{suffix}:{line}: not UTF-8 \(byte 0xe9"):
        load_set(path)
    path.write_bytes(text.encode("utf-8"))
    assert [r.caption for r in load_set(path)] == ["a drum", "un caf\u00e9"]

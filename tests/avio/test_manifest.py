"""Manifest loading: JSONL and CSV, relative paths, extra fields, and a clear error for bad records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avio import ManifestEntry, ManifestError, load_manifest, save_manifest


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_with_relative_paths_and_extras(tmp_path: Path) -> None:
    m = _write_jsonl(tmp_path / "m.jsonl", [
        {"id": "a", "path": "clips/a.mp4", "caption": "a dog barks", "start": 1.5, "end": 4.0, "split": "train",
         "events": [{"time": 2.0}], "speaker": "x"},
        {"id": "b", "path": "/abs/b.mp4", "caption": "rain"},
    ])
    a, b = load_manifest(m)
    assert a.path == tmp_path / "clips/a.mp4" and a.start == 1.5 and a.end == 4.0 and a.duration == 2.5
    assert a.split == "train" and a.extra == {"events": [{"time": 2.0}], "speaker": "x"}
    assert b.path == Path("/abs/b.mp4") and b.start == 0.0 and b.end is None and b.split is None and b.duration is None


def test_csv_and_folder_lookup(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text(
        "id,path,caption,start,end,split,rating\n"
        "1,x.mp4,\"a car, then a horn\",,,val,4\n"
        "2,y.mp4,,0.5,2,train,5\n"
    )
    one, two = load_manifest(tmp_path)  # a folder: its manifest.csv
    assert one.id == "1" and one.caption == "a car, then a horn" and one.start == 0.0 and one.end is None
    assert one.split == "val" and one.extra == {"rating": 4}
    assert two.caption == "" and two.start == 0.5 and two.end == 2.0


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    entries = [ManifestEntry("a", tmp_path / "d" / "a.mp4", "cap", 0.0, 2.0, "train", {"family": "bounce"})]
    path = save_manifest(entries, tmp_path / "d" / "manifest.jsonl")
    assert json.loads(path.read_text())["path"] == "a.mp4"  # stored relative to the manifest
    assert load_manifest(path) == entries


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "path": "a.mp4"}\n', r"m\.jsonl:1: missing field\(s\) \['caption'\]"),
        ('{"id": "a", "path": "a.mp4", "caption": ""}\n{not json\n', r"m\.jsonl:2: not valid JSON"),
        ('["a", "b"]\n', "must be a JSON object"),
        ('{"id": "a", "path": "a.mp4", "caption": "", "start": "soon"}\n', "start must be a number"),
        ('{"id": "a", "path": "a.mp4", "caption": "", "start": 3, "end": 2}\n', r"end \(2.0\) must be after start"),
        ('{"id": "a", "path": "a.mp4", "caption": "", "start": -1}\n', "finite number >= 0"),
        ('{"id": "a", "path": "a.mp4", "caption": ""}\n{"id": "a", "path": "b.mp4", "caption": ""}\n',
         r"m\.jsonl:2: duplicate id 'a' \(first at .*m\.jsonl:1\)"),
        ("\n\n", "has no records"),
    ],
)
def test_bad_records_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_bad_manifest_paths(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="folder has no manifest.jsonl or manifest.csv"):
        load_manifest(tmp_path)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match=r"\.jsonl or \.csv"):
        load_manifest(tmp_path / "m.txt")
    (tmp_path / "bad.csv").write_text("id,path\n1,a.mp4\n")
    with pytest.raises(ManifestError, match=r"bad\.csv:2: missing field\(s\) \['caption'\]"):
        load_manifest(tmp_path / "bad.csv")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_latin1_manifest_names_its_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"manifest{suffix}"
    if suffix == ".jsonl":
        text = '{"id": "a", "path": "a.mp4", "caption": "a drum"}\n{"id": "b", "path": "b.mp4", "caption": "un caf\u00e9"}\n'
    else:
        text = "id,path,caption\na,a.mp4,a drum\nb,b.mp4,un caf\u00e9\n"
    path.write_bytes(text.encode("latin-1"))
    line = 2 if suffix == ".jsonl" else 3
    with pytest.raises(ManifestError, match=rf"manifest{suffix}:{line}: not UTF-8 \(byte 0xe9.*iconv"):
        load_manifest(path)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # UTF-8 with a byte-order mark is fine
    assert [e.caption for e in load_manifest(path)] == ["a drum", "un caf\u00e9"]

"""Reading sample folders and manifests, matching by prompt, and refusing paths that escape."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from app_clips import make_clip

from human_eval_app.sources import match_prompts, read_source
from human_eval_app.spec import SpecError


def test_folder_with_sidecars(systems: dict[str, Path]) -> None:
    clips = read_source(systems["ours"])
    assert len(clips) == 4 and all(c.path.is_file() for c in clips)
    assert clips[0].prompt == "a red ball bounces twice" and clips[0].source_id == "clip000"


def test_jsonl_and_csv_manifests(tmp_path: Path) -> None:
    make_clip(tmp_path / "clips" / "a.mp4", 0)
    make_clip(tmp_path / "clips" / "b.mp4", 1)
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"id": "a", "path": "clips/a.mp4", "caption": "first"}) + "\n"
        + json.dumps({"id": "b", "path": "clips/b.mp4", "prompt": "second"}) + "\n")
    (tmp_path / "m.csv").write_text("path,prompt\nclips/a.mp4,first\nclips/b.mp4,second\n")
    for manifest in ("m.jsonl", "m.csv"):
        clips = read_source(tmp_path / manifest)
        assert [c.prompt for c in clips] == ["first", "second"]
        assert clips[1].path == (tmp_path / "clips" / "b.mp4").resolve()


@pytest.mark.parametrize("bad_path", ["../outside.mp4", "clips/../../outside.mp4", "/etc/passwd"])
def test_manifest_paths_cannot_leave_the_folder(tmp_path: Path, bad_path: str) -> None:
    (tmp_path / "study").mkdir()
    make_clip(tmp_path / "outside.mp4", 0)
    (tmp_path / "study" / "m.jsonl").write_text(json.dumps({"path": bad_path, "prompt": "x"}) + "\n")
    with pytest.raises(SpecError, match="leads outside"):
        read_source(tmp_path / "study" / "m.jsonl")


def test_symlink_out_of_a_sample_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "samples").mkdir()
    make_clip(tmp_path / "secret.mp4", 0)
    os.symlink(tmp_path / "secret.mp4", tmp_path / "samples" / "x.mp4")
    (tmp_path / "samples" / "x.json").write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(SpecError, match="leads outside"):
        read_source(tmp_path / "samples")


def test_missing_prompt_and_missing_sidecar(tmp_path: Path) -> None:
    make_clip(tmp_path / "s" / "a.mp4", 0)
    with pytest.raises(SpecError, match="no sidecar a.json"):
        read_source(tmp_path / "s")
    (tmp_path / "s" / "a.json").write_text(json.dumps({"seed": 3}))
    with pytest.raises(SpecError, match="no prompt"):
        read_source(tmp_path / "s")
    with pytest.raises(SpecError, match="no such folder"):
        read_source(tmp_path / "nope")


def test_matching_by_prompt_text(systems: dict[str, Path]) -> None:
    sources = {n: read_source(p) for n, p in systems.items()}
    matched, unmatched = match_prompts(sources)
    assert len(matched) == 4 and unmatched == {"ours": 0, "base": 0, "other": 0}
    for m in matched:  # "other" lists its clips in reverse order: still matched by text
        assert {c.prompt for c in m.clips.values()} == {m.text}
    assert len({m.key for m in matched}) == 4


def test_matching_normalizes_and_pairs_repeats(tmp_path: Path) -> None:
    from human_eval_app.sources import SourceClip

    def clip(name: str, prompt: str) -> SourceClip:
        return SourceClip(tmp_path / name, prompt, name)

    sources = {
        "a": [clip("a1", "A  Ball"), clip("a2", "a ball"), clip("a3", "only in a")],
        "b": [clip("b1", "a ball "), clip("b2", "A BALL"), clip("b3", "a ball")],
    }
    matched, unmatched = match_prompts(sources)
    assert [(m.clips["a"].source_id, m.clips["b"].source_id) for m in matched] == [("a1", "b1"), ("a2", "b2")]
    assert unmatched == {"a": 1, "b": 1}

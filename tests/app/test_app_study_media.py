"""What a study serves: every clip normalised the same way, and clips that cannot be used skipped."""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest
from app_clips import make_clip, make_foreign_system, make_system
from conftest import PROMPTS
from sqlalchemy import select

from avio import MediaError
from human_eval_app.media import read_registered
from human_eval_app.spec import StudySpec
from human_eval_app.store import Pair, Sample, Store
from human_eval_app.studies import create_study, list_studies


def _signature(path: Path) -> dict:
    """Everything a file says about how it was made, minus what depends on the picture itself."""
    with av.open(str(path)) as c:
        streams = []
        for s in c.streams:
            cc = s.codec_context
            entry = {"type": s.type, "codec": cc.name, "profile": cc.profile, "metadata": dict(s.metadata),
                     "time_base": str(s.time_base)}
            if s.type == "video":
                entry.update(pix_fmt=cc.pix_fmt, has_b_frames=cc.has_b_frames)
            else:
                entry.update(rate=cc.sample_rate, layout=cc.layout.name)  # (read-back bit rates follow content)
            streams.append(entry)
        return {"format": c.format.name, "metadata": dict(c.metadata), "streams": streams}


def _x264_settings(data: bytes) -> str | None:
    """The x264 "encoder settings" SEI text, if the file carries one."""
    m = re.search(rb"x264 - core [^\x00]*", data)
    return m.group(0).decode("latin-1") if m else None


def test_every_served_clip_is_encoded_alike(store: Store, systems: dict, tmp_path: Path) -> None:
    """Regular clips, transcoded .mkv clips and the gold copies carry the same bytes-level marks."""
    foreign = make_foreign_system(tmp_path / "secretsys", PROMPTS, seed=9)
    spec = StudySpec(name="alike", systems=[{"name": "ours", "path": str(systems["ours"])},
                                            {"name": "secretsys", "path": str(foreign)}],
                     questions=["overall", "sync", "visual"], raters_per_pair=1, pairs_per_rater=2,
                     gold={"count": 2, "per_rater": 1, "kinds": ["audio_shift", "video_blur"]})
    created = create_study(store, spec)
    assert created.info.n_gold == 2
    with store.session() as s:
        samples = s.scalars(select(Sample)).all()
        roles = {x.system.role for x in samples}
    assert roles == {"model", "baseline", "gold"}
    signatures, settings = [], set()
    for sample in samples:
        data = read_registered(store.media_dir, sample.media_path, sample.sha256)
        for secret in (b"secretsys", b"clip00", b"made by", b"Lavf", b"Lavc"):
            assert secret not in data, (secret, sample.original_path)
        settings.add(_x264_settings(data))
        signatures.append(_signature(store.media_dir / sample.media_path))
    assert settings == {None}  # the x264 settings message is removed from every file
    for sig in signatures:
        assert sig == signatures[0]
    assert signatures[0]["metadata"].get("encoder") is None
    assert created.transcoded == len(PROMPTS)  # the .mkv clips browsers could not play as they were


def _system_with_bad_clips(folder: Path) -> Path:
    """PROMPTS' clips where the second is not media and the third has no sound."""
    make_system(folder, PROMPTS, seed=5)
    (folder / "clip001.mp4").write_bytes(b"not a video at all")
    make_clip(folder / "clip002.mp4", 7, with_audio=False)
    return folder


def test_unusable_clips_are_skipped_with_their_reason(store: Store, systems: dict, tmp_path: Path) -> None:
    bad = _system_with_bad_clips(tmp_path / "bad")
    messages: list[str] = []
    spec = StudySpec(name="partial", systems=[{"name": "ours", "path": str(systems["ours"])},
                                              {"name": "bad", "path": str(bad)}],
                     gold={"count": 1, "per_rater": 1})
    with pytest.raises(MediaError, match="--strict") as err:
        create_study(store, spec, strict=True)
    assert "cannot be opened as media" in str(err.value) and "has no sound" in str(err.value)
    assert list_studies(store) == []

    created = create_study(store, spec, progress=lambda done, total, msg: messages.append(msg))
    assert created.info.n_pairs == 2 and created.info.n_gold == 1
    reasons = sorted((x.system, Path(x.path).name, x.reason.split(": ", 1)[1][:20]) for x in created.skipped)
    assert reasons == [("bad", "clip001.mp4", "cannot be opened as "), ("bad", "clip002.mp4", "has no sound; raters")]
    assert sum("skipped" in m for m in messages) == 2 and len(messages) == 4 * 2 + 1  # one line per clip
    # The rerun (after the strict failure) reused every normalised copy it had made: 6 clips, 1 gold copy.
    assert created.reused == 7 and sum("reused" in m for m in messages) == 7
    with store.session() as s:
        for pair in s.scalars(select(Pair)):
            assert (store.media_dir / pair.sample_a.media_path).is_file()
            assert (store.media_dir / pair.sample_b.media_path).is_file()


def test_nothing_usable_fails(store: Store, systems: dict, tmp_path: Path) -> None:
    silent = make_system(tmp_path / "silent", PROMPTS, seed=6, with_audio=False)
    spec = StudySpec(name="mute", systems=[{"name": "ours", "path": str(systems["ours"])},
                                           {"name": "silent", "path": str(silent)}])
    with pytest.raises(MediaError, match="no pair of clips is left") as err:
        create_study(store, spec)
    assert str(err.value).count("has no sound") == len(PROMPTS)
    assert list_studies(store) == []


def test_cli_create_reports_each_clip_and_exits_by_what_is_usable(tmp_path: Path, systems: dict,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import yaml

    from av_model.cli import main as avgen

    bad = _system_with_bad_clips(tmp_path / "bad")
    spec = {"name": "cli partial", "systems": [{"name": "ours", "path": str(systems["ours"])},
                                               {"name": "bad", "path": str(bad)}]}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    db = f"sqlite:///{tmp_path / 'db' / 's.db'}"
    assert avgen(["study", "create", str(spec_file), "--db", db, "--strict"]) == 1
    captured = capsys.readouterr()
    assert "not created" in captured.err and "clip001.mp4" in captured.err and "has no sound" in captured.err
    assert avgen(["study", "create", str(spec_file), "--db", db]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 8 and sum("skipped" in line for line in lines) == 2  # one line per clip
    assert sum(line.endswith(": reused") for line in lines) == 6  # the strict run's copies
    assert "2 pairs" in out and "skipped 2 clips" in out and "cannot be opened as media" in out

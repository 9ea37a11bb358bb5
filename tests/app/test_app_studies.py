"""Study creation (pairs, gold pairs, designs, clean-up on failure) and export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from avio import MediaError
from eval.preference import net_win_rates, validate_judgments
from human_eval_app.raters import create_invites, load_item, queue_state, start_queue, submit_answers
from human_eval_app.spec import SpecError, StudySpec
from human_eval_app.store import Assignment, Pair, Sample, Store
from human_eval_app.studies import (
    JUDGMENT_COLUMNS,
    create_study,
    export_judgments,
    judgments_frame,
    list_studies,
    set_status,
    study_progress,
)


def test_create_vs_model_with_gold(store: Store, make_study) -> None:
    created = make_study(gold={"count": 2, "per_rater": 1, "kinds": ["audio_shift"]})
    info = created.info
    assert (info.n_prompts, info.n_pairs, info.n_gold) == (4, 4, 2)
    assert info.systems == ("ours", "base") and info.model == "ours" and len(info.code) == 8
    assert info.raters_needed == 4  # 4 pairs x 2 raters / 2 pairs per rater
    with store.session() as s:
        gold = s.scalars(select(Pair).where(Pair.is_gold)).all()
        for pair in gold:
            assert json.loads(pair.gold_answers_json) == {"sync": "a"}
            a, b = s.get(Sample, pair.sample_a_id), s.get(Sample, pair.sample_b_id)
            assert a.system.name == "ours" and b.system.role == "gold" and b.prompt_id == a.prompt_id
        for sample in s.scalars(select(Sample)):
            assert (store.media_dir / sample.media_path).is_file()
            assert sample.media_path.startswith(info.code + "/")


def test_create_all_pairs_of_three_systems(make_study) -> None:
    info = make_study(names=("ours", "base", "other"), design="all_pairs").info
    assert info.n_pairs == 4 * 3


def test_name_taken_and_nothing_matches(store: Store, make_study, tmp_path: Path) -> None:
    make_study()
    with pytest.raises(SpecError, match="exists already"):
        make_study()
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "m.csv").write_text("path,prompt\n")
    with pytest.raises(SpecError, match="lists no clips"):
        make_study(name="second", systems=[{"name": "a", "path": str(tmp_path / "lonely" / "m.csv")},
                                           {"name": "b", "path": str(tmp_path / "lonely" / "m.csv")}])


def test_failed_creation_leaves_no_media_and_no_rows(store: Store, systems: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for clip in sorted(systems["base"].glob("*.json")):
        (broken / clip.name).write_text(clip.read_text())
        (broken / clip.with_suffix(".mp4").name).write_bytes(b"not a video")
    spec = StudySpec(name="broken", systems=[{"name": "ours", "path": str(systems["ours"])},
                                             {"name": "base", "path": str(broken)}])
    with pytest.raises(MediaError, match="system 'base'"):
        create_study(store, spec)
    assert list_studies(store) == []
    # Nothing of the study is left; only the cache of normalised copies stays, for a rerun.
    assert not any(p.is_file() for p in store.media_dir.rglob("*") if "_normalized" not in p.parts)


def _rate_all(store: Store, study_id: int, n_raters: int, answer_for) -> None:
    for invite in create_invites(store, study_id, n_raters):
        start_queue(store, invite.rater_id)
        while (state := queue_state(store, invite.rater_id)).next_assignment_id:
            item = load_item(store, invite.rater_id, state.next_assignment_id)
            submit_answers(store, invite.rater_id, item.assignment_id, answer_for(store, item), 2.5)


def _model_side(store: Store, assignment_id: int) -> str:
    with store.session() as s:
        a = s.get(Assignment, assignment_id)
        return "left" if a.left_is_a else "right"


def test_export_maps_sides_to_systems_and_feeds_the_statistics(store: Store, make_study, tmp_path: Path) -> None:
    """Raters always prefer the model's clip: wherever it was shown, the export and the net win rate say so."""
    info = make_study(gold={"count": 2, "per_rater": 1}).info

    def prefer_model(store, item):
        side = _model_side(store, item.assignment_id)
        return {"overall": side, "sync": side}

    _rate_all(store, info.id, 4, prefer_model)
    frame = judgments_frame(store, info.id)
    assert list(frame.columns) == JUDGMENT_COLUMNS
    regular = frame[~frame.is_gold]
    assert len(regular) == 4 * 2 * 2  # pairs x raters x questions
    chosen = regular.apply(lambda r: r.system_left if r.answer == "left" else r.system_right, axis=1)
    assert (chosen == "ours").all()
    assert set(regular.system_left) == {"ours", "base"}  # both sides were used
    gold = frame[frame.is_gold]
    assert set(gold.question) == {"sync"} and (gold.answer == gold.gold_answer).all()
    table = net_win_rates(frame, n_boot=0)
    assert (table.net_win_rate == 100.0).all() and set(table.baseline) == {"base"}
    for fmt in ("csv", "parquet"):
        path = export_judgments(store, info.code, tmp_path / f"j.{fmt}")
        back = pd.read_csv(path, dtype=str) if fmt == "csv" else pd.read_parquet(path)
        assert len(back) == len(frame)
        validate_judgments(back)  # what `avgen prefs` reads
    everything = judgments_frame(store, info.id, all_gold_rows=True)
    assert len(everything) == len(frame) + len(gold)  # the unscored 'overall' answers on gold pairs


def test_likert_gold_answer_as_seen(store: Store, make_study) -> None:
    info = make_study(questions=[{"key": "sync", "scale": "likert5"}], gold={"count": 1, "per_rater": 1}).info

    def five(store, item):
        return {"sync": 5}

    _rate_all(store, info.id, 1, five)
    frame = judgments_frame(store, info.id)
    gold = frame[frame.is_gold].iloc[0]
    assert gold.answer == "5" and gold.gold_answer in ("1", "5")
    # "a" (the original) is the better one: on the left the known answer is 1, else 5
    assert (gold.gold_answer == "1") == (gold.system_left == "ours")


def test_progress_and_status(store: Store, make_study) -> None:
    info = make_study().info
    _rate_all(store, info.id, 1, lambda s, item: {"overall": "tie", "sync": "tie"})
    p = study_progress(store, info.id)
    assert (p.ratings_done, p.ratings_target, p.pairs_complete, p.n_judgments) == (2, 8, 0, 4)
    assert p.raters[["done", "total"]].values.tolist() == [[2, 2]]
    assert set_status(store, info.code, "closed").status == "closed"
    with pytest.raises(ValueError, match="open"):
        set_status(store, info.code, "paused")

"""Study specs: defaults, validation messages, and every example in configs/study."""

from __future__ import annotations

from pathlib import Path

import pytest

from human_eval_app.spec import Question, SpecError, StudySpec, load_spec

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "study").glob("*.yaml"))
SYSTEMS = [{"name": "a", "path": "x"}, {"name": "b", "path": "y"}]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_specs_load(path: Path) -> None:
    spec = load_spec(path)
    assert len(spec.systems) >= 2 and all(Path(s.path).is_absolute() for s in spec.systems)


def test_defaults() -> None:
    spec = StudySpec(name="s", systems=SYSTEMS)
    assert spec.model == "a" and spec.baselines == ["b"] and spec.system_pairs() == [("a", "b")]
    assert [q.key for q in spec.questions] == ["overall", "visual", "audio", "sync", "prompt"]
    assert Question("overall").options == ("left", "tie", "right")
    assert Question("overall", scale="likert5").options == ("1", "2", "3", "4", "5")


def test_all_pairs_design() -> None:
    spec = StudySpec(name="s", systems=[*SYSTEMS, {"name": "c", "path": "z"}], design="all_pairs")
    assert spec.system_pairs() == [("a", "b"), ("a", "c"), ("b", "c")]


@pytest.mark.parametrize("fields, message", [
    ({"systems": SYSTEMS[:1]}, "two or more systems"),
    ({"systems": [SYSTEMS[0], SYSTEMS[0]]}, "unique"),
    ({"model": "zzz"}, "not one of the systems"),
    ({"questions": ["overall", "colour"]}, "needs a text"),
    ({"questions": ["Overall; DROP TABLE studies"]}, "lowercase letters"),
    ({"raters_per_pair": 0}, "raters_per_pair must be an integer >= 1"),
    ({"gold": {"count": 2, "per_rater": 3}}, "cannot exceed"),
    ({"gold": {"count": 2}, "questions": ["overall"]}, "does not ask"),
    ({"gold": {"count": 1, "kinds": ["nope"]}}, "choose from"),
    ({"completion_url": "javascript:alert(1)"}, "http"),
    ({"design": "round_robin"}, "vs_model"),
    ({"colour": "red"}, "unknown fields"),
])
def test_invalid_specs_name_the_problem(fields: dict, message: str) -> None:
    data = {"name": "s", "systems": SYSTEMS, **fields}
    with pytest.raises(SpecError, match=message):
        StudySpec.from_dict(data)


def test_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(bad)

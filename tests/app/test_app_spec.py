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
    ({"model": "zzz"}, "model must be one of the systems"),
    ({"questions": ["overall", "colour"]}, "needs a text"),
    ({"questions": ["Overall; DROP TABLE studies"]}, "lowercase letters"),
    ({"raters_per_pair": 0}, "raters_per_pair must be an integer >= 1"),
    ({"gold": {"count": 2, "per_rater": 3}}, "cannot exceed"),
    ({"gold": {"count": 2}, "questions": ["overall"]}, "does not ask"),
    ({"gold": {"count": 1, "kinds": ["nope"]}}, "a list of kinds from"),
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


# Every field of a spec with a value of the wrong type: the message names the field and what was given.
WRONG_TYPES = [
    ({"name": 5}, "name must be non-empty text", "5 (an integer)"),
    ({"systems": "ours"}, "systems must be a list", "'ours' (text)"),
    ({"systems": [SYSTEMS[0], 3]}, "each of systems must be a mapping", "3 (an integer)"),
    ({"systems": [{"name": ["a"], "path": "x"}, SYSTEMS[1]]}, "a system's name must be", "['a'] (a list)"),
    ({"systems": [{"name": "a", "path": 5}, SYSTEMS[1]]}, "system 'a': path", "5 (an integer)"),
    ({"model": 3}, "model must be one of the systems", "3 (an integer)"),
    ({"design": ["vs_model"]}, "design must be", "['vs_model'] (a list)"),
    ({"questions": "overall"}, "questions must be a list", "'overall' (text)"),
    ({"questions": [None]}, "each of questions must be", "None (null)"),
    ({"questions": [{"key": 5}]}, "question's key must be", "5 (an integer)"),
    ({"questions": [{"key": "x", "text": 5}]}, "question 'x': text must be text", "5 (an integer)"),
    ({"questions": [{"key": "overall", "scale": 5}]}, "question 'overall': scale must be", "5 (an integer)"),
    ({"raters_per_pair": "3"}, "raters_per_pair must be an integer", "'3' (text)"),
    ({"pairs_per_rater": 2.5}, "pairs_per_rater must be an integer", "2.5 (a number)"),
    ({"gold": 3}, "gold must be a mapping", "3 (an integer)"),
    ({"gold": {"count": "2"}}, "gold.count must be an integer", "'2' (text)"),
    ({"gold": {"count": 1, "per_rater": True}}, "gold.per_rater must be an integer", "True (true/false)"),
    ({"gold": {"count": 1, "kinds": 5}}, "gold.kinds must be a list", "5 (an integer)"),
    ({"gold": {"count": 1, "kinds": [["audio_shift"]]}}, "gold.kinds must be a list of kinds", "[['audio_shift']]"),
    ({"gold": {"shift_seconds": "abc"}}, "gold.shift_seconds must be a number", "'abc' (text)"),
    ({"gold": {"downscale": "4"}}, "gold.downscale must be an integer", "'4' (text)"),
    ({"description": None}, "description must be text", "None (null)"),
    ({"instructions": ["read"]}, "instructions must be text", "['read'] (a list)"),
    ({"max_prompts": True}, "max_prompts (or null for all) must be an integer", "True (true/false)"),
    ({"open_join": "no"}, "open_join must be true or false", "'no' (text)"),
    ({"completion_url": 5}, "completion_url must be text", "5 (an integer)"),
    ({"token_days": "3"}, "token_days must be a number", "'3' (text)"),
    ({"token_days": float("nan")}, "token_days must be a number in (0, 3650] days", "nan"),
    ({"seed": [1, 2]}, "seed must be an integer", "[1, 2] (a list)"),
    ({"seed": 2**40}, "seed must be an integer in [0, 2147483647]", str(2**40)),
]


@pytest.mark.parametrize("fields, expected, given", WRONG_TYPES, ids=[str(f) for f, _, _ in WRONG_TYPES])
def test_every_field_is_type_checked(fields: dict, expected: str, given: str) -> None:
    with pytest.raises(SpecError) as err:
        StudySpec.from_dict({"name": "s", "systems": SYSTEMS, **fields})
    assert expected in str(err.value) and given in str(err.value)


def test_every_spec_field_has_a_wrong_type_case() -> None:
    """A new spec field must get a type check (and a case above)."""
    from dataclasses import fields as dc_fields

    from human_eval_app.spec import GoldSpec, SystemSpec

    covered = {k for f, _, _ in WRONG_TYPES for k in f}
    covered |= {f"gold.{k}" for f, _, _ in WRONG_TYPES if isinstance(f.get("gold"), dict) for k in f["gold"]}
    needed = {f.name for f in dc_fields(StudySpec)} | {f"gold.{f.name}" for f in dc_fields(GoldSpec)}
    assert needed <= covered, needed - covered
    assert {f.name for f in dc_fields(SystemSpec)} == {"name", "path"}
    assert {f.name for f in dc_fields(Question)} == {"key", "text", "scale"}


def test_missing_field_is_named() -> None:
    with pytest.raises(SpecError, match="the field name is missing"):
        StudySpec.from_dict({"systems": SYSTEMS})
    with pytest.raises(SpecError, match="the field key is missing"):
        StudySpec.from_dict({"name": "s", "systems": SYSTEMS, "questions": [{"text": "Which?"}]})

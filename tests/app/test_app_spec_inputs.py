"""Wrongly typed spec fields give a message naming the field, in the CLI and on the Studies page."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_app_pages import _signed_in, app_env  # noqa: F401 (app_env: the pages' fixture)

from av_model.cli import main as avgen
from human_eval_app.store import Store
from human_eval_app.studies import list_studies

# (fields of the spec, what the message must say: the field, what was given, what is expected)
BAD_FIELDS = [
    ({"gold": 3}, ["gold must be a mapping", "got 3 (an integer)"]),
    ({"open_join": "no"}, ["open_join must be true or false", "got 'no' (text)"]),
    ({"seed": [1, 2]}, ["seed must be an integer", "got [1, 2] (a list)"]),
    ({"gold": {"count": 1, "per_rater": 1, "shift_seconds": "abc"}},
     ["gold.shift_seconds must be a number in [0.04, 5] seconds", "got 'abc' (text)"]),
    ({"questions": "overall"}, ["questions must be a list", "got 'overall' (text)"]),
]
IDS = ["gold-int", "open_join-text", "seed-list", "shift_seconds-text", "questions-text"]


def _spec(systems: dict[str, Path], **fields: object) -> dict:
    spec = {"name": "typed", "systems": [{"name": n, "path": str(systems[n])} for n in ("ours", "base")],
            "questions": ["overall", "sync"], "raters_per_pair": 1, "pairs_per_rater": 2}
    spec.update(fields)
    return spec


@pytest.mark.parametrize("fields, message", BAD_FIELDS, ids=IDS)
def test_cli_create_names_the_bad_field(tmp_path: Path, systems: dict[str, Path], capsys: pytest.CaptureFixture,
                                        fields: dict, message: list[str]) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(systems, **fields)))
    db = tmp_path / "s.db"
    assert avgen(["study", "create", str(path), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert all(m in err for m in message), err
    assert "Traceback" not in err and "INSERT" not in err and err.count("\n") == 1
    assert not list_studies(Store(db))


@pytest.mark.parametrize("fields, message", BAD_FIELDS, ids=IDS)
@pytest.mark.usefixtures("app_env")
def test_studies_page_names_the_bad_field(store: Store, systems: dict[str, Path], fields: dict,
                                          message: list[str]) -> None:
    at = _signed_in("pages/studies.py")
    at.radio(key="new-how").set_value("yaml").run()
    at.text_area(key="new-yaml").set_value(yaml.safe_dump(_spec(systems, **fields)))
    at.button(key="create-yaml").click().run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert all(m in errors for m in message), errors
    assert "INSERT" not in errors and not list_studies(store)

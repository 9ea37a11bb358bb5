"""Fixtures of the app tests: tiny sample folders, a fresh store, a study in it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from app_clips import make_system  # noqa: E402

from human_eval_app.auth import SIGN_IN_THROTTLES  # noqa: E402
from human_eval_app.spec import StudySpec  # noqa: E402
from human_eval_app.store import Store  # noqa: E402
from human_eval_app.studies import CreatedStudy, create_study  # noqa: E402

PROMPTS = [
    "a red ball bounces twice",
    "two squares collide and flash",
    "a <b>bold</b> claim & a $x$ [link](http://evil.example)",
    "a bell rings as a disc drops",
]


@pytest.fixture(scope="session")
def systems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sample folders of three systems over the same four prompts (the third in shuffled order)."""
    root = tmp_path_factory.mktemp("systems")
    return {
        "ours": make_system(root / "ours", PROMPTS, seed=1),
        "base": make_system(root / "base", PROMPTS, seed=2),
        "other": make_system(root / "other", PROMPTS[::-1], seed=3),
    }


@pytest.fixture(autouse=True)
def fresh_sign_in_throttles() -> None:
    """The admin sign-in throttles live for the whole process (as in the app): each test starts afresh."""
    for throttle in SIGN_IN_THROTTLES.values():
        throttle.clear()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "studies.db")
    yield s
    s.dispose()


@pytest.fixture
def make_study(store: Store, systems: dict[str, Path]) -> Callable[..., CreatedStudy]:
    """Create a study of ours vs base (by default) with spec fields overridden by keywords."""

    def make(names: tuple[str, ...] = ("ours", "base"), **overrides: object) -> CreatedStudy:
        fields: dict[str, object] = {
            "name": "study",
            "systems": [{"name": n, "path": str(systems[n])} for n in names],
            "questions": ["overall", "sync"],
            "raters_per_pair": 2,
            "pairs_per_rater": 2,
        }
        fields.update(overrides)
        return create_study(store, StudySpec(**fields))  # type: ignore[arg-type]

    return make

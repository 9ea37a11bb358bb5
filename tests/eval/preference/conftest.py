"""Builders of small judgments tables whose statistics can be computed by hand."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

# The model's result -> the answer a rater gives, depending on the side the model was shown on.
_ANSWER = {("win", True): "left", ("win", False): "right", ("loss", True): "right", ("loss", False): "left"}


def judgment(
    result: str,
    *,
    pair: str = "p1",
    prompt: str | None = None,
    rater: str = "r1",
    question: str = "overall",
    model: str = "M",
    baseline: str = "B",
    model_left: bool = True,
    **extra: object,
) -> dict[str, object]:
    """One row: `result` is the model's "win", "tie" or "loss", written as the rater would answer it."""
    answer = "tie" if result == "tie" else _ANSWER[(result, model_left)]
    return {
        "study": "s", "pair_id": pair, "prompt_id": prompt or pair,
        "system_left": model if model_left else baseline, "system_right": baseline if model_left else model,
        "model": model, "baseline": baseline, "rater_id": rater, "question": question, "answer": answer,
        "seconds": 20.0, "is_gold": False, **extra,
    }  # fmt: skip


@pytest.fixture
def make_row() -> Callable[..., dict[str, object]]:
    return judgment


@pytest.fixture
def table() -> Callable[[list[dict[str, object]]], pd.DataFrame]:
    return lambda rows: pd.DataFrame(rows)

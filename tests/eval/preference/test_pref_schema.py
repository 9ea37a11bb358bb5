"""The judgments table: normalization from clip sides to the model's side, and clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from eval.preference import JudgmentsError, load_judgments, validate_judgments


def test_answers_are_read_from_the_models_side(make_row):
    rows = [
        make_row("win", model_left=True),  # "left"
        make_row("win", model_left=False),  # "right"
        make_row("loss", model_left=True),  # "right"
        make_row("loss", model_left=False),  # "left"
        make_row("tie"),
    ]
    out = validate_judgments(pd.DataFrame(rows))
    assert out["answer"].tolist() == ["left", "right", "right", "left", "tie"]
    assert out["outcome"].tolist() == [1, 1, -1, -1, 0]
    assert out["model_side"].tolist() == ["left", "right", "left", "right", "left"]
    assert out["scale"].unique().tolist() == ["3-way"]


def test_five_point_scale(make_row):
    rows = [
        make_row("tie", model_left=side) | {"answer": a}
        for a, side in [(1, True), (2, False), (3, True), ("5", False), (4.0, True)]
    ]
    out = validate_judgments(pd.DataFrame(rows))
    # 1 = left much better: model on the left -> +2; 2 with the model on the right -> -1; 5 with the model right -> +2.
    assert out["model_score"].tolist() == [2, -1, 0, 2, -1]
    assert out["outcome"].tolist() == [1, -1, 0, 1, -1]
    assert out["choice"].tolist() == ["left", "left", "tie", "right", "right"]
    assert out["scale"].unique().tolist() == ["5-point"]


def test_column_names_and_ids_are_normalized(make_row):
    raw = pd.DataFrame([make_row("win", prompt=7), make_row("loss", prompt="7", rater="r2")])
    raw.columns = [c.upper() if c == "answer" else f" {c}" for c in raw.columns]
    raw[" system_left"] = raw[" system_left"] + "  "
    out = validate_judgments(raw)
    assert out["prompt_id"].tolist() == ["7", "7"]
    assert out["system_left"].tolist() == ["M", "M"]
    assert "answer" in out and "study" in out


def test_optional_columns_get_defaults(make_row):
    raw = pd.DataFrame([make_row("win")]).drop(columns=["study", "seconds", "is_gold"])
    out = validate_judgments(raw)
    assert out.loc[0, "study"] == "default"
    assert pd.isna(out.loc[0, "seconds"])
    assert not out.loc[0, "is_gold"]


def test_gold_rows_parse_booleans_and_answers(make_row):
    rows = [
        make_row("win", is_gold="yes", gold_answer="LEFT"),
        make_row("win", rater="r2", is_gold="0", gold_answer=None),
        make_row("win", rater="r3", is_gold=1, gold_answer="right"),
    ]
    out = validate_judgments(pd.DataFrame(rows))
    assert out["is_gold"].tolist() == [True, False, True]
    assert out["gold_choice"].tolist() == ["left", "", "right"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.drop(columns=["rater_id", "question"]),
            r"lacks required column\(s\) \['rater_id', 'question'\]",
        ),
        (lambda d: d.iloc[0:0], "has no rows"),
        (
            lambda d: d.assign(answer=["left", "better", "right"]),
            r"'answer' has values that are not answers in row 2 \(e.g. 'better'\)",
        ),
        (lambda d: d.assign(answer=["left", 7, "right"]), "not answers in row 2"),
        (lambda d: d.assign(answer=["left", None, "right"]), "'answer' is empty in row 2"),
        (lambda d: d.assign(model=["M", "X", "M"]), "'model' names a system that was not shown in row 2"),
        (lambda d: d.assign(baseline=["M", "M", "M"]), "model equals baseline in rows 1, 2, 3"),
        (lambda d: d.assign(system_right=d["system_left"]), "system_left equals system_right"),
        (lambda d: d.assign(rater_id=["r1", None, "r3"]), "'rater_id' is empty in row 2"),
        (lambda d: d.assign(rater_id=["r1", " ", "r3"]), "'rater_id' is blank in row 2"),
        (lambda d: d.assign(seconds=[1.0, -2.0, 3.0]), "'seconds' is negative or infinite in row 2"),
        (lambda d: d.assign(seconds=["1", "fast", "3"]), "'seconds' is not a number in row 2"),
        (
            lambda d: d.assign(is_gold=["no", "maybe", "no"]),
            "'is_gold' has values that are not booleans in row 2",
        ),
        (lambda d: d.assign(is_gold=[False, True, False]), "no 'gold_answer' column"),
        (
            lambda d: d.assign(is_gold=[False, True, False], gold_answer=[None, None, None]),
            "gold check rows have no gold_answer in row 2",
        ),
        (lambda d: d.assign(answer=["left", 2, "right"]), "question 'overall' mixes word answers"),
        (
            lambda d: d.assign(prompt_id=["a", "b", "a"]),
            "pair 'p1' of study 's' has 2 different values in column 'prompt_id'",
        ),
        (lambda d: d.assign(repeat=[0, -1, 1]), "'repeat' is not a non-negative integer in row 2"),
    ],
)
def test_malformed_tables_name_the_problem(make_row, mutate, message):
    raw = pd.DataFrame([make_row("win", rater=f"r{i}") for i in (1, 2, 3)])
    with pytest.raises(JudgmentsError, match=message):
        validate_judgments(mutate(raw))


def test_not_a_dataframe():
    with pytest.raises(JudgmentsError, match="must be a pandas DataFrame, got list"):
        validate_judgments([{"answer": "left"}])


def test_duplicate_columns_after_normalization(make_row):
    raw = pd.DataFrame([make_row("win")])
    raw["Answer"] = "left"
    with pytest.raises(JudgmentsError, match=r"columns \['answer'\] appear more than once"):
        validate_judgments(raw)


def test_many_bad_rows_are_summarized(make_row):
    raw = pd.DataFrame([make_row("win", rater=f"r{i}") | {"answer": "?"} for i in range(9)])
    with pytest.raises(JudgmentsError, match="rows 1, 2, 3, 4, 5 and 4 more"):
        validate_judgments(raw)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_load_judgments_round_trip(make_row, tmp_path, suffix):
    raw = pd.DataFrame([make_row("win", prompt="007"), make_row("loss", prompt="007", rater="r2")])
    path = tmp_path / f"judgments{suffix}"
    {
        ".csv": raw.to_csv,
        ".parquet": raw.to_parquet,
        ".jsonl": lambda p, **k: raw.to_json(p, orient="records", lines=True),
    }[suffix](path, index=False)
    out = load_judgments(path)
    assert out["prompt_id"].tolist() == ["007", "007"]  # ids stay text: leading zeros survive
    assert out["outcome"].tolist() == [1, -1]
    assert out["is_gold"].tolist() == [False, False]


def test_load_judgments_errors(tmp_path, make_row):
    with pytest.raises(JudgmentsError, match="does not exist"):
        load_judgments(tmp_path / "missing.csv")
    (tmp_path / "j.xlsx").write_text("x")
    with pytest.raises(JudgmentsError, match="use a .csv, .tsv, .parquet"):
        load_judgments(tmp_path / "j.xlsx")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(JudgmentsError, match="cannot parse judgments file"):
        load_judgments(tmp_path / "bad.parquet")
    pd.DataFrame([make_row("win")]).drop(columns=["answer"]).to_csv(tmp_path / "j.csv", index=False)
    with pytest.raises(
        JudgmentsError, match=r"j.csv: the judgments table lacks required column\(s\) \['answer'\]"
    ):
        load_judgments(tmp_path / "j.csv")

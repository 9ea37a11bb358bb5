"""The judgments table: its columns, how raw answers are read, and the checks that guard every statistic.

One row is one answer of one rater to one question about one pair of clips. The columns:

| column | required | meaning |
|---|---|---|
| study | no (default "default") | name of the study the judgment belongs to |
| pair_id | yes | the pair of clips (the model's clip and the baseline's clip for one prompt) |
| prompt_id | yes | the prompt both clips were generated from (bootstrap cluster) |
| system_left | yes | system whose clip was shown on the left |
| system_right | yes | system whose clip was shown on the right |
| model | yes | the system under test; one of system_left / system_right |
| baseline | yes | the system it is compared with; the other one of the two |
| rater_id | yes | who answered (bootstrap cluster) |
| question | yes | the question asked, e.g. "visual quality" |
| answer | yes | "left", "tie", "right", or an integer 1..5 (1 = left much better, 3 = tie, 5 = right much better) |
| seconds | no | time the rater took for this answer |
| is_gold | no (default False) | the pair is a gold check with a known answer |
| gold_answer | only for gold rows | the expected answer, in the same form as `answer` |
| repeat | no | annotation round, for Movie Gen's sigma from repeated annotations |

A question uses one scale: all its answers are words (3-way) or all are integers (5-point).
`validate_judgments` adds the derived columns every statistic reads:

- `scale`: "3-way" or "5-point"
- `choice`: "left", "tie" or "right" (a 5-point answer by its direction)
- `strength`: signed preference towards the right clip: -1/0/+1 (3-way) or -2..+2 (5-point)
- `model_side`: "left" or "right"
- `model_score`: `strength` seen from the model: positive when the model's clip was preferred
- `outcome`: +1 win, 0 tie, -1 loss for the model
- `gold_choice`: the gold answer's direction ("left"/"tie"/"right"), empty for non-gold rows
- `row`: the row's position in the input (0-based), so later messages can point at it
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# name -> one-line description; the order is the order of the normalized table.
COLUMNS: dict[str, str] = {
    "study": "study name (optional, default 'default')",
    "pair_id": "id of the pair of clips (model clip vs baseline clip for one prompt)",
    "prompt_id": "id of the prompt both clips come from",
    "system_left": "system shown on the left",
    "system_right": "system shown on the right",
    "model": "system under test (one of the two shown)",
    "baseline": "system it is compared with (the other one shown)",
    "rater_id": "id of the rater",
    "question": "question asked",
    "answer": "'left' | 'tie' | 'right', or an integer 1..5 (1 = left much better, 3 = tie, 5 = right much better)",
    "seconds": "seconds taken to answer (optional)",
    "is_gold": "whether the pair is a gold check (optional, default False)",
    "gold_answer": "expected answer of a gold check, same form as answer (required on gold rows)",
    "repeat": "annotation round, for sigma from repeated annotations (optional)",
}
REQUIRED = (
    "pair_id",
    "prompt_id",
    "system_left",
    "system_right",
    "model",
    "baseline",
    "rater_id",
    "question",
    "answer",
)
# What identifies one judgment: the study and every required column but the answer.
ID_COLUMNS = ("study", *(c for c in REQUIRED if c != "answer"))
WORD_ANSWERS = {"left": -1, "tie": 0, "right": 1}
SCALE_3, SCALE_5 = "3-way", "5-point"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
_VALIDATED = "avgen_preference_validated"


class JudgmentsError(ValueError):
    """A judgments table that cannot be used: the message names the column, the rows and the fix."""


def _rows(mask: pd.Series | np.ndarray, limit: int = 5) -> str:
    """Human-readable list of the first offending rows (1-based, header not counted, as a spreadsheet shows)."""
    idx = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(i + 1) for i in idx[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"row{'s' if len(idx) > 1 else ''} {shown}{more}"


def _examples(values: pd.Series, limit: int = 3) -> str:
    uniq = pd.unique(values.astype(str))[:limit]
    return ", ".join(repr(v) for v in uniq)


def parse_answers(values: pd.Series, column: str = "answer") -> tuple[pd.Series, pd.Series]:
    """Read raw answers into (scale, strength).

    Args:
        values: raw answers, words ("left"/"tie"/"right", any case) or integers 1..5 (as numbers or text).
        column: name used in error messages.

    Returns:
        `scale` ("3-way" or "5-point") and `strength` (int, preference towards the right clip:
        -1/0/+1 for words, answer - 3 for the 5-point scale), both aligned with `values`.

    Raises:
        JudgmentsError: a value is missing or is neither a word answer nor an integer 1..5.
    """
    missing = values.isna()
    if missing.any():
        raise JudgmentsError(
            f"column {column!r} is empty in {_rows(missing)}; every judgment needs an answer."
        )
    text = values.astype(str).str.strip().str.lower()
    word = text.map(WORD_ANSWERS)
    number = pd.to_numeric(text, errors="coerce")
    is_point = number.isin([1, 2, 3, 4, 5])
    bad = word.isna() & ~is_point
    if bad.any():
        raise JudgmentsError(
            f"column {column!r} has values that are not answers in {_rows(bad)} (e.g. {_examples(values[bad])}); "
            "use 'left', 'tie', 'right' or an integer 1..5 (1 = left much better, 3 = tie, 5 = right much better)."
        )
    scale = pd.Series(np.where(word.notna(), SCALE_3, SCALE_5), index=values.index)
    strength = word.fillna(number - 3).astype(np.int64)
    return scale, strength


def _parse_bool(values: pd.Series, column: str) -> pd.Series:
    if values.dtype == bool:
        return values
    text = values.astype(str).str.strip().str.lower().where(values.notna(), "")
    text = text.replace({"1.0": "1", "0.0": "0", "nan": "", "none": ""})
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        raise JudgmentsError(
            f"column {column!r} has values that are not booleans in {_rows(bad)} (e.g. {_examples(values[bad])}); "
            "use true/false, yes/no or 1/0."
        )
    return text.isin(_TRUE)


def _check_ids(df: pd.DataFrame) -> None:
    for col in ID_COLUMNS:
        missing = df[col].isna()
        if missing.any():
            raise JudgmentsError(
                f"column {col!r} is empty in {_rows(missing)}; fill it in or drop those rows."
            )
        # Ids are labels: 7 and "7" must be the same prompt, so every id becomes stripped text.
        df[col] = df[col].astype(str).str.strip()
        blank = df[col] == ""
        if blank.any():
            raise JudgmentsError(f"column {col!r} is blank in {_rows(blank)}; fill it in or drop those rows.")


def _check_systems(df: pd.DataFrame) -> None:
    same = df["system_left"] == df["system_right"]
    if same.any():
        raise JudgmentsError(
            f"system_left equals system_right in {_rows(same)}; a judgment compares two different systems."
        )
    same = df["model"] == df["baseline"]
    if same.any():
        raise JudgmentsError(
            f"model equals baseline in {_rows(same)}; the baseline must be the other system."
        )
    shown = {"model": df["model"], "baseline": df["baseline"]}
    for col, values in shown.items():
        bad = (values != df["system_left"]) & (values != df["system_right"])
        if bad.any():
            raise JudgmentsError(
                f"column {col!r} names a system that was not shown in {_rows(bad)} "
                f"(e.g. {_examples(values[bad])}); it must equal system_left or system_right of the same row."
            )
    # One pair is one comparison: its prompt, model and baseline cannot change between raters
    # (only the left/right order may, because the app randomizes it per assignment).
    for col in ("prompt_id", "model", "baseline"):
        n_values = df.groupby(["study", "pair_id"], sort=False)[col].nunique()
        bad_pairs = n_values[n_values > 1]
        if len(bad_pairs):
            (study, pair), *_ = bad_pairs.index
            raise JudgmentsError(
                f"pair {pair!r} of study {study!r} has {bad_pairs.iloc[0]} different values in column {col!r} "
                f"({len(bad_pairs)} pair(s) affected); a pair_id must always name the same {col}."
            )


def _check_scales(df: pd.DataFrame) -> None:
    n_scales = df.groupby("question", sort=False)["scale"].nunique()
    mixed = n_scales[n_scales > 1]
    if len(mixed):
        question = mixed.index[0]
        raise JudgmentsError(
            f"question {question!r} mixes word answers (left/tie/right) with 5-point answers (1..5); "
            "a question must use one scale. Map one form onto the other before the report."
        )


def _check_seconds(df: pd.DataFrame) -> None:
    if "seconds" not in df:
        df["seconds"] = np.nan
        return
    raw = df["seconds"]
    seconds = pd.to_numeric(raw, errors="coerce")
    bad = seconds.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        raise JudgmentsError(
            f"column 'seconds' is not a number in {_rows(bad)} (e.g. {_examples(raw[bad])}); "
            "give the time taken in seconds or leave it empty."
        )
    bad = (seconds < 0) | np.isinf(seconds)
    if bad.any():
        raise JudgmentsError(f"column 'seconds' is negative or infinite in {_rows(bad)}; times must be >= 0.")
    df["seconds"] = seconds.astype(float)


def _check_gold(df: pd.DataFrame) -> None:
    df["is_gold"] = _parse_bool(df["is_gold"], "is_gold") if "is_gold" in df else False
    df["gold_choice"] = ""
    gold = df["is_gold"].to_numpy()
    if not gold.any():
        return
    if "gold_answer" not in df:
        raise JudgmentsError(
            f"{int(gold.sum())} rows are gold checks (is_gold) but there is no 'gold_answer' column; "
            "add the expected answer of every gold pair."
        )
    answers = df.loc[gold, "gold_answer"]
    missing = answers.isna() | (answers.astype(str).str.strip() == "")
    if missing.any():
        raise JudgmentsError(
            f"gold check rows have no gold_answer in {_rows(df.index.isin(answers.index[missing]))}; "
            "every gold row needs its expected answer."
        )
    _, strength = parse_answers(answers, "gold_answer")
    df.loc[gold, "gold_choice"] = np.array(["left", "tie", "right"])[np.sign(strength.to_numpy()) + 1]


def _check_repeat(df: pd.DataFrame) -> None:
    if "repeat" not in df:
        return
    repeat = pd.to_numeric(df["repeat"], errors="coerce")
    bad = repeat.isna() | (repeat < 0) | (repeat != np.round(repeat))
    if bad.any():
        raise JudgmentsError(
            f"column 'repeat' is not a non-negative integer in {_rows(bad)}; "
            "number the annotation rounds 0, 1, 2, ... or drop the column."
        )
    df["repeat"] = repeat.astype(np.int64)


def validate_judgments(df: pd.DataFrame) -> pd.DataFrame:
    """Check a judgments table and return its normalized copy with the derived columns.

    Column names are matched after stripping spaces and lower-casing. Extra columns are kept.

    Args:
        df: the raw judgments table (see the module docstring for the columns).

    Returns:
        A new DataFrame (index 0..N-1) with ids as text, `seconds` as float, `is_gold` as bool and the
        derived columns `scale`, `choice`, `strength`, `model_side`, `model_score`, `outcome`,
        `gold_choice` and `row`.

    Raises:
        JudgmentsError: the table is empty, a required column is missing, or a value is malformed;
            the message names the column and the first offending rows.
    """
    if isinstance(df, pd.DataFrame) and df.attrs.get(_VALIDATED):
        return df
    if not isinstance(df, pd.DataFrame):
        raise JudgmentsError(f"judgments must be a pandas DataFrame, got {type(df).__name__}.")
    out = df.copy()
    out.columns = [str(c).strip().lower() for c in out.columns]
    dupes = out.columns[out.columns.duplicated()].tolist()
    if dupes:
        raise JudgmentsError(f"columns {dupes} appear more than once (names compared case-insensitively).")
    missing = [c for c in REQUIRED if c not in out.columns]
    if missing:
        raise JudgmentsError(
            f"the judgments table lacks required column(s) {missing}; it has {list(out.columns)}. "
            f"Required: {list(REQUIRED)}."
        )
    if len(out) == 0:
        raise JudgmentsError("the judgments table has no rows; there is nothing to analyse yet.")
    out = out.reset_index(drop=True)
    if "study" not in out:
        out["study"] = "default"

    # 1. Ids and systems
    _check_ids(out)
    _check_systems(out)
    # 2. Answers, from the clip positions to the model's point of view
    out["scale"], out["strength"] = parse_answers(out["answer"])
    _check_scales(out)
    out["choice"] = np.array(["left", "tie", "right"])[np.sign(out["strength"].to_numpy()) + 1]
    model_left = (out["model"] == out["system_left"]).to_numpy()
    out["model_side"] = np.where(model_left, "left", "right")
    out["model_score"] = np.where(model_left, -out["strength"], out["strength"]).astype(np.int64)
    out["outcome"] = np.sign(out["model_score"]).astype(np.int64)
    # 3. Optional columns
    _check_seconds(out)
    _check_gold(out)
    _check_repeat(out)
    out["row"] = np.arange(len(out))
    out.attrs[_VALIDATED] = True
    return out


def load_judgments(path: str | Path) -> pd.DataFrame:
    """Read a judgments file (.csv, .tsv, .parquet, .jsonl or .json) and validate it.

    Raises:
        JudgmentsError: the file is missing, has an unknown extension, cannot be parsed or fails validation.
    """
    path = Path(path)
    if not path.is_file():
        raise JudgmentsError(f"judgments file {str(path)!r} does not exist; check the path.")
    suffix = path.suffix.lower()
    # Read ids as text: a numeric-looking prompt id like "007" must keep its zeros.
    readers = {
        ".csv": lambda: pd.read_csv(path, dtype=str, keep_default_na=True),
        ".tsv": lambda: pd.read_csv(path, sep="\t", dtype=str),
        ".parquet": lambda: pd.read_parquet(path),
        ".jsonl": lambda: pd.read_json(path, lines=True, dtype=False),
        ".json": lambda: pd.read_json(path, dtype=False),
    }
    if suffix not in readers:
        raise JudgmentsError(f"cannot read {str(path)!r}: use a .csv, .tsv, .parquet, .jsonl or .json file.")
    try:
        raw = readers[suffix]()
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise JudgmentsError(f"cannot parse judgments file {str(path)!r} as {suffix[1:]}: {err}") from err
    try:
        return validate_judgments(raw)
    except JudgmentsError as err:
        raise JudgmentsError(f"{path}: {err}") from err


def rated(df: pd.DataFrame) -> pd.DataFrame:
    """The judgments that count for the statistics: gold checks only measure raters, so they are left out."""
    return df[~df["is_gold"]]

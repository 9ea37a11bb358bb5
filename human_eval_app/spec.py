"""The study spec: what a lead writes (YAML, or the Studies page's form) to create a study.

Example (``configs/study/demo.yaml``)::

    name: demo vs baseline
    systems:
      - {name: ours, path: ../../runs/demo/samples}
      - {name: baseline, path: ../../runs/baseline/samples}
    questions: [overall, visual, audio, sync, prompt]
    raters_per_pair: 3
    pairs_per_rater: 20
    gold: {count: 4, per_rater: 2, kinds: [audio_shift]}

Relative paths in a YAML file are relative to the file's folder.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from .errors import StudyError

__all__ = [
    "SpecError",
    "Question",
    "SystemSpec",
    "GoldSpec",
    "StudySpec",
    "DEFAULT_QUESTIONS",
    "PAIRWISE_ANSWERS",
    "LIKERT_LABELS",
    "GOLD_KINDS",
    "load_spec",
]

PAIRWISE_ANSWERS = ("left", "tie", "right")
# A 5-point scale reads from "the left clip is much better" (1) to "the right clip is much better" (5).
LIKERT_LABELS = {
    1: "Left much better",
    2: "Left slightly better",
    3: "About the same",
    4: "Right slightly better",
    5: "Right much better",
}
DEFAULT_QUESTIONS: dict[str, str] = {
    "overall": "Overall, which clip do you prefer?",
    "visual": "Which clip looks better (sharp, natural motion, no glitches)?",
    "audio": "Which clip sounds better (clean, natural sound)?",
    "sync": "In which clip do the sounds happen at the same moment as what causes them on screen?",
    "prompt": "Which clip matches the description better?",
}
# gold kind -> (question it has a known answer for, what the altered copy gets)
GOLD_KINDS: dict[str, tuple[str, str]] = {
    "audio_shift": ("sync", "its sound delayed"),
    "video_blur": ("visual", "its picture at a quarter of the resolution"),
}
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SEED_MAX = 2**31 - 1  # the largest seed every database's INTEGER column holds (PostgreSQL's is 32-bit)
_KINDS = {bool: "true/false", int: "an integer", float: "a number", str: "text", list: "a list", dict: "a mapping",
          type(None): "null"}


class SpecError(StudyError):
    """A study spec is invalid; the message names the field and what would be right."""


# Type checks of spec fields. A spec comes from YAML or a form, so any field may hold any YAML
# value; each check names the field, what was given and what is expected, instead of letting a
# wrong type surface later as a traceback (or in the database).

def _given(value: Any) -> str:
    kind = _KINDS.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def _fail(name: str, expected: str, value: Any) -> SpecError:
    return SpecError(f"{name} must be {expected}; got {_given(value)}")


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """`value` if it is an integer (not a bool) in [lo, hi]."""
    expected = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        raise _fail(name, expected, value)
    return value


def _number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False, unit: str = "") -> float:
    """`value` as a float if it is a number (not a bool) in [lo, hi] (or (lo, hi])."""
    expected = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]{unit}"
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(name, expected, value)
    x = float(value)
    if not (lo < x if lo_open else lo <= x) or not x <= hi:  # also refuses NaN
        raise _fail(name, expected, value)
    return x


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)
    return value


def _text(name: str, value: Any, max_chars: int, *, required: bool = False) -> str:
    """`value` if it is text of at most `max_chars` characters (and not blank when required)."""
    expected = f"{'non-empty ' if required else ''}text of at most {max_chars} characters"
    if not isinstance(value, str) or len(value) > max_chars or (required and not value.strip()):
        raise _fail(name, expected, value)
    return value


def _list(name: str, value: Any, example: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(name, f"a list, e.g. {example}", value)
    return value


@dataclass
class Question:
    """One question asked about every pair.

    Attributes:
        key: short id (lowercase letters, digits, underscores), the `question` column of exports.
        text: what the rater reads.
        scale: "pairwise" (left / tie / right) or "likert5" (1 = left much better .. 5 = right much
            better).
    """

    key: str
    text: str = ""
    scale: str = "pairwise"

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY_RE.fullmatch(self.key):
            raise _fail("a question's key", "1-32 lowercase letters, digits or underscores, starting with a letter "
                        "(e.g. overall, sync)", self.key)
        if self.text is None or self.text == "":
            if self.key not in DEFAULT_QUESTIONS:
                raise SpecError(f"question {self.key!r} needs a text (only {sorted(DEFAULT_QUESTIONS)} have one built in)")
            self.text = DEFAULT_QUESTIONS[self.key]
        _text(f"question {self.key!r}: text", self.text, 1000)
        if self.scale not in ("pairwise", "likert5"):
            raise _fail(f"question {self.key!r}: scale", "'pairwise' or 'likert5'", self.scale)

    @property
    def options(self) -> tuple[str, ...]:
        """The answers a rater may give, as stored."""
        return PAIRWISE_ANSWERS if self.scale == "pairwise" else tuple(str(k) for k in LIKERT_LABELS)

    @classmethod
    def coerce(cls, value: Any) -> Question:
        """A Question from a key string, a dict, or a Question."""
        if isinstance(value, Question):
            return value
        if isinstance(value, str):
            return cls(key=value)
        if isinstance(value, dict):
            return _build(cls, value, f"question {value.get('key')!r}")
        raise _fail("each of questions", "a key (e.g. overall) or a mapping with key, text and scale", value)


@dataclass
class SystemSpec:
    """A compared system and where its clips are.

    Attributes:
        name: shown to leads only (never to raters); unique in the study.
        path: a folder of clips with JSON sidecars holding "prompt" (what `avgen sample` writes), a
            folder with a manifest.jsonl, or a manifest file (JSONL or CSV: path and prompt or caption).
    """

    name: str
    path: str

    def __post_init__(self) -> None:
        self.name = _text("a system's name", self.name, 100, required=True).strip()
        _text(f"system {self.name!r}: path (of its sample folder or manifest)", self.path, 4096, required=True)


@dataclass
class GoldSpec:
    """Gold pairs: a clip against an altered copy of itself, with a known answer.

    Attributes:
        count: gold pairs to make (from randomly chosen clips of the model system).
        per_rater: gold pairs put into each rater's queue (among the regular pairs).
        kinds: "audio_shift" (sound delayed by `shift_seconds`, known answer for "sync") and/or
            "video_blur" (picture at 1/`downscale` resolution, known answer for "visual"); pairs
            cycle through the kinds.
        shift_seconds: delay of the sound in audio_shift copies.
        downscale: resolution divisor of video_blur copies.
    """

    count: int = 0
    per_rater: int = 0
    kinds: list[str] = field(default_factory=lambda: ["audio_shift"])
    shift_seconds: float = 0.5
    downscale: int = 4

    def __post_init__(self) -> None:
        _int("gold.count", self.count, 0)
        _int("gold.per_rater", self.per_rater, 0)
        if self.per_rater > self.count:
            raise SpecError(f"gold.per_rater ({self.per_rater}) cannot exceed gold.count ({self.count}): a rater "
                            "never sees the same pair twice")
        if isinstance(self.kinds, str):
            self.kinds = [self.kinds]
        expected = f"a list of kinds from {sorted(GOLD_KINDS)}"
        kinds = _list("gold.kinds", self.kinds, "[audio_shift]")
        if any(not isinstance(k, str) or k not in GOLD_KINDS for k in kinds) or (self.count and not kinds):
            raise _fail("gold.kinds", expected, self.kinds)
        self.shift_seconds = _number("gold.shift_seconds", self.shift_seconds, 0.04, 5.0, unit=" seconds")
        _int("gold.downscale", self.downscale, 2, 32)


@dataclass
class StudySpec:
    """Everything that defines a study.

    Attributes:
        name: unique name of the study (leads see it; raters see it as the study title).
        systems: two or more systems; clips are matched across systems by prompt.
        model: the system under test; default the first listed. Net win rates are the model's.
        design: "vs_model" (the model against each other system) or "all_pairs" (every two
            systems; the earlier listed is "model" of a pair).
        questions: asked about every pair, in order (default: overall, visual, audio, sync, prompt).
        raters_per_pair: distinct raters each pair needs.
        pairs_per_rater: pairs in one rater's queue (gold pairs come on top).
        gold: gold pairs (see GoldSpec).
        description: for leads.
        instructions: shown to raters before the first pair.
        max_prompts: use at most this many matched prompts (chosen at random with `seed`).
        open_join: whether raters may join with the study code and a name (else invite links only).
        completion_url: where raters go at the end (e.g. a Prolific completion link).
        token_days: days a rater's link stays valid.
        seed: seed of prompt selection, gold choice, left/right order and queue order.
    """

    name: str
    systems: list[SystemSpec]
    model: str | None = None
    design: str = "vs_model"
    questions: list[Question] = field(default_factory=lambda: [Question(k) for k in DEFAULT_QUESTIONS])
    raters_per_pair: int = 3
    pairs_per_rater: int = 20
    gold: GoldSpec = field(default_factory=GoldSpec)
    description: str = ""
    instructions: str = ""
    max_prompts: int | None = None
    open_join: bool = True
    completion_url: str | None = None
    token_days: float = 14.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.name = _text("name", self.name, 200, required=True).strip()
        systems = _list("systems", self.systems, "[{name: ours, path: samples/ours}, {name: base, path: samples/base}]")
        self.systems = [s if isinstance(s, SystemSpec) else _system(s) for s in systems]
        if len(self.systems) < 2:
            raise SpecError(f"a study compares two or more systems; got {len(self.systems)}")
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise SpecError(f"system names must be unique; got {names}")
        if self.model is None:
            self.model = names[0]
        if self.model not in names:
            raise _fail("model", f"one of the systems {names} (or null for the first)", self.model)
        if self.design not in ("vs_model", "all_pairs"):
            raise _fail("design", "'vs_model' or 'all_pairs'", self.design)
        questions = _list("questions", self.questions, "[overall, sync] or [{key: overall, scale: likert5}]")
        self.questions = [Question.coerce(q) for q in questions]
        if not self.questions:
            raise SpecError("give at least one question")
        keys = [q.key for q in self.questions]
        if len(set(keys)) != len(keys):
            raise SpecError(f"question keys must be unique; got {keys}")
        if self.gold is None:
            self.gold = GoldSpec()
        elif isinstance(self.gold, dict):
            self.gold = _build(GoldSpec, self.gold, "gold")
        elif not isinstance(self.gold, GoldSpec):
            raise _fail("gold", "a mapping of count, per_rater, kinds, shift_seconds, downscale (or null for none)",
                        self.gold)
        for kind in self.gold.kinds if self.gold.count else []:
            question = GOLD_KINDS[kind][0]
            if question not in keys:
                raise SpecError(f"gold kind {kind!r} has a known answer for the question {question!r}, which this "
                                f"study does not ask ({keys}); add it or choose another kind")
        _int("raters_per_pair", self.raters_per_pair, 1)
        _int("pairs_per_rater", self.pairs_per_rater, 1)
        if self.max_prompts is not None:
            _int("max_prompts (or null for all)", self.max_prompts, 1)
        if self.completion_url:
            url = _text("completion_url", self.completion_url, 2000)
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise _fail("completion_url", "an http(s) address", url)
        else:
            self.completion_url = None
        self.open_join = _bool("open_join", self.open_join)
        self.token_days = _number("token_days", self.token_days, 0, 3650, lo_open=True, unit=" days")
        _int("seed", self.seed, 0, _SEED_MAX)
        for name in ("description", "instructions"):
            _text(name, getattr(self, name), 20000)

    @property
    def model_name(self) -> str:
        """The system under test (`model`, which validation always fills in)."""
        return self.model or self.systems[0].name

    @property
    def baselines(self) -> list[str]:
        """The systems other than the model."""
        return [s.name for s in self.systems if s.name != self.model_name]

    def system_pairs(self) -> list[tuple[str, str]]:
        """(model, baseline) system pairs the design compares."""
        names = [s.name for s in self.systems]
        if self.design == "vs_model":
            return [(self.model_name, b) for b in self.baselines]
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that `StudySpec.from_dict` reads back (stored with the study)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | Path | None = None) -> StudySpec:
        """Build a spec from a mapping; relative system paths are taken from `base_dir`."""
        if not isinstance(data, dict):
            raise SpecError(f"a study spec is a mapping of fields; got {type(data).__name__}")
        data = dict(data)
        systems = data.get("systems")
        if isinstance(systems, list) and base_dir is not None:
            data["systems"] = [_system(s, base_dir) for s in systems]
        return _build(cls, data, "study spec")


def _system(value: Any, base_dir: str | Path | None = None) -> SystemSpec:
    if isinstance(value, SystemSpec):
        return value
    if not isinstance(value, dict):
        raise _fail("each of systems", "a mapping with name and path", value)
    spec = _build(SystemSpec, value, f"system {value.get('name')!r}")
    path = Path(spec.path).expanduser()
    if base_dir is not None and not path.is_absolute():
        spec.path = str((Path(base_dir) / path).resolve())
    return spec


def _build(cls: type, data: dict[str, Any], what: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SpecError(f"{what}: unknown fields {sorted(map(str, unknown))}; the fields are {sorted(known)}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise SpecError(f"{what}: the field{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"{'are' if len(missing) > 1 else 'is'} missing; the fields are {sorted(known)}")
    return cls(**data)


def load_spec(path: str | Path) -> StudySpec:
    """Read a study spec from a YAML file.

    Raises:
        SpecError: the file is missing, not YAML, or the spec is invalid.
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such spec file (see configs/study/ for an example)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SpecError(f"{p}: not valid YAML: {err}") from None
    try:
        return StudySpec.from_dict(data, base_dir=p.resolve().parent)
    except SpecError as err:
        raise SpecError(f"{p}: {err}") from None

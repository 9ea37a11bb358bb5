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
from dataclasses import asdict, dataclass, field, fields
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


class SpecError(StudyError):
    """A study spec is invalid; the message names the field and what would be right."""


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
            raise SpecError(f"question key {self.key!r}: use 1-32 lowercase letters, digits or underscores, "
                            "starting with a letter (e.g. overall, sync)")
        if not self.text:
            if self.key not in DEFAULT_QUESTIONS:
                raise SpecError(f"question {self.key!r} needs a text (only {sorted(DEFAULT_QUESTIONS)} have one built in)")
            self.text = DEFAULT_QUESTIONS[self.key]
        if len(self.text) > 1000:
            raise SpecError(f"question {self.key!r}: the text has {len(self.text)} characters; keep it under 1000")
        if self.scale not in ("pairwise", "likert5"):
            raise SpecError(f"question {self.key!r}: scale must be 'pairwise' or 'likert5', not {self.scale!r}")

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
            unknown = set(value) - {"key", "text", "scale"}
            if unknown:
                raise SpecError(f"question {value.get('key')!r}: unknown fields {sorted(unknown)} (use key, text, scale)")
            return cls(**value)
        raise SpecError(f"a question must be a key (e.g. 'overall') or a mapping with key/text/scale; got {value!r}")


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
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 100:
            raise SpecError(f"system name {self.name!r}: give a non-empty name of at most 100 characters")
        self.name = self.name.strip()
        if not isinstance(self.path, str) or not self.path.strip():
            raise SpecError(f"system {self.name!r}: give the path of its sample folder or manifest")


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
        if not isinstance(self.count, int) or self.count < 0:
            raise SpecError(f"gold.count must be an integer >= 0; got {self.count!r}")
        if not isinstance(self.per_rater, int) or self.per_rater < 0:
            raise SpecError(f"gold.per_rater must be an integer >= 0; got {self.per_rater!r}")
        if self.per_rater > self.count:
            raise SpecError(f"gold.per_rater ({self.per_rater}) cannot exceed gold.count ({self.count}): a rater "
                            "never sees the same pair twice")
        if isinstance(self.kinds, str):
            self.kinds = [self.kinds]
        bad = [k for k in self.kinds if k not in GOLD_KINDS]
        if bad or (self.count and not self.kinds):
            raise SpecError(f"gold.kinds {self.kinds!r}: choose from {sorted(GOLD_KINDS)}")
        if not 0.04 <= float(self.shift_seconds) <= 5.0:
            raise SpecError(f"gold.shift_seconds must be in [0.04, 5] seconds; got {self.shift_seconds}")
        if not isinstance(self.downscale, int) or not 2 <= self.downscale <= 32:
            raise SpecError(f"gold.downscale must be an integer in [2, 32]; got {self.downscale!r}")


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
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 200:
            raise SpecError(f"name {self.name!r}: give the study a non-empty name of at most 200 characters")
        self.name = self.name.strip()
        if not isinstance(self.systems, list):
            raise SpecError("systems must be a list of {name, path} entries")
        self.systems = [s if isinstance(s, SystemSpec) else _system(s) for s in self.systems]
        if len(self.systems) < 2:
            raise SpecError(f"a study compares two or more systems; got {len(self.systems)}")
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise SpecError(f"system names must be unique; got {names}")
        if self.model is None:
            self.model = names[0]
        if self.model not in names:
            raise SpecError(f"model {self.model!r} is not one of the systems {names}")
        if self.design not in ("vs_model", "all_pairs"):
            raise SpecError(f"design must be 'vs_model' or 'all_pairs', not {self.design!r}")
        self.questions = [Question.coerce(q) for q in (self.questions or [])]
        if not self.questions:
            raise SpecError("give at least one question")
        keys = [q.key for q in self.questions]
        if len(set(keys)) != len(keys):
            raise SpecError(f"question keys must be unique; got {keys}")
        if isinstance(self.gold, dict):
            self.gold = _build(GoldSpec, self.gold, "gold")
        for kind in self.gold.kinds if self.gold.count else []:
            question = GOLD_KINDS[kind][0]
            if question not in keys:
                raise SpecError(f"gold kind {kind!r} has a known answer for the question {question!r}, which this "
                                f"study does not ask ({keys}); add it or choose another kind")
        for name in ("raters_per_pair", "pairs_per_rater"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecError(f"{name} must be an integer >= 1; got {value!r}")
        if self.max_prompts is not None and (not isinstance(self.max_prompts, int) or self.max_prompts < 1):
            raise SpecError(f"max_prompts must be an integer >= 1 or null; got {self.max_prompts!r}")
        if self.completion_url:
            parsed = urlparse(self.completion_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise SpecError(f"completion_url {self.completion_url!r} must be an http(s) address")
        else:
            self.completion_url = None
        if not isinstance(self.token_days, int | float) or not 0 < float(self.token_days) <= 3650:
            raise SpecError(f"token_days must be in (0, 3650]; got {self.token_days!r}")
        for name in ("description", "instructions"):
            if not isinstance(getattr(self, name), str) or len(getattr(self, name)) > 20000:
                raise SpecError(f"{name} must be text of at most 20000 characters")

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
        raise SpecError(f"each system is a mapping with name and path; got {value!r}")
    spec = _build(SystemSpec, value, f"system {value.get('name')!r}")
    path = Path(spec.path).expanduser()
    if base_dir is not None and not path.is_absolute():
        spec.path = str((Path(base_dir) / path).resolve())
    return spec


def _build(cls: type, data: dict[str, Any], what: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SpecError(f"{what}: unknown fields {sorted(unknown)}; the fields are {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as err:  # a required field is missing
        raise SpecError(f"{what}: {err}") from None


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

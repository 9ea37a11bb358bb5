"""Studies: creation from a spec (matching, media import, gold pairs), listing, progress, export.

A study is created in three stages:

1. Read every system's clips and match them by prompt (`sources`).
2. Register media: encode each clip, and the altered copies of gold pairs (made from the model's
   source clip, so they went through the encoder exactly once like every other clip), into the
   store's media folder with the one normalised setting (`media`). This is the slow part and
   holds no lock. It is a batch job: each clip's result is reported as it completes; a clip that
   cannot be used (unreadable, no video, no sound) is skipped with its reason, and only the pairs
   that need it are left out. Normalised copies are cached by source hash, so a rerun after a
   failure does not encode again.
3. Write the study, systems, prompts, samples and pairs in one transaction; if anything fails, the
   study's media folder is removed again (the cache stays for the rerun).

Judgments are exported in the columns `eval.preference` reads (see `JUDGMENT_COLUMNS`), with the
rater's left/right view turned into the systems shown on each side.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from avio import MediaError

from .assignment import raters_needed
from .auth import hash_password
from .errors import StudyError
from .media import RegisteredMedia, register_media
from .sources import MatchedPrompt, match_prompts, read_source
from .spec import GOLD_KINDS, SpecError, StudySpec
from .spreadsheet import neutralise_formulas
from .store import Admin, Assignment, Judgment, Pair, Prompt, Rater, Sample, Store, Study, System, find_study

__all__ = [
    "JUDGMENT_COLUMNS",
    "StudyInfo",
    "CreatedStudy",
    "SkippedClip",
    "Progress",
    "create_study",
    "list_studies",
    "get_study",
    "set_status",
    "study_progress",
    "judgments_frame",
    "export_judgments",
    "add_admin",
    "admin_hashes",
]

# The columns of an export, in order: the judgments table of eval.preference, then context.
JUDGMENT_COLUMNS = [
    "study", "pair_id", "prompt_id", "system_left", "system_right", "model", "baseline", "rater_id",
    "question", "answer", "seconds", "is_gold", "gold_answer",
    "prompt", "rater_name", "prolific_pid", "position", "created_at",
]
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: codes are read and typed by people

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class StudyInfo:
    """A study at a glance (what `avgen study list` prints)."""

    id: int
    name: str
    code: str
    status: str
    systems: tuple[str, ...]
    model: str
    n_prompts: int
    n_pairs: int
    n_gold: int
    raters_per_pair: int
    pairs_per_rater: int
    raters_needed: int
    questions: tuple[str, ...]


@dataclass(frozen=True)
class SkippedClip:
    """A clip left out of a study, and why (for the lead: it names the system and the file)."""

    system: str
    prompt: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"system {self.system!r}, prompt {self.prompt[:60]!r}: {self.reason}"


@dataclass(frozen=True)
class CreatedStudy:
    """What `create_study` made.

    Attributes:
        info: the new study.
        unmatched: per system, its clips that matched no prompt of the others.
        transcoded: clips whose source browsers could not play as it was.
        reused: clips whose normalised copy was made by an earlier run.
        skipped: clips that could not be used; the pairs needing them were left out.
    """

    info: StudyInfo
    unmatched: dict[str, int]
    transcoded: int
    reused: int = 0
    skipped: tuple[SkippedClip, ...] = ()


@dataclass(frozen=True)
class Progress:
    """How far a study is: regular pairs rated, raters, and per-rater progress.

    Attributes:
        ratings_done: answered regular assignments, each pair counted up to raters_per_pair.
        ratings_target: n_pairs * raters_per_pair.
        pairs_complete: pairs with all the raters they need.
        raters: per rater: rater_id, name, joined_via, done, total, gold_correct, gold_total, last_answer.
    """

    ratings_done: int
    ratings_target: int
    pairs_complete: int
    n_pairs: int
    n_judgments: int
    raters: pd.DataFrame

    @property
    def fraction(self) -> float:
        return self.ratings_done / self.ratings_target if self.ratings_target else 0.0


def _new_code(session) -> str:
    while True:
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        if session.scalar(select(Study.id).where(Study.code == code)) is None:
            return code


def _select_prompts(matched: list[MatchedPrompt], spec: StudySpec) -> list[MatchedPrompt]:
    if spec.max_prompts is None or len(matched) <= spec.max_prompts:
        return matched
    chosen = set(random.Random(spec.seed).sample(range(len(matched)), spec.max_prompts))
    return [m for i, m in enumerate(matched) if i in chosen]


def create_study(store: Store, spec: StudySpec, *, progress: ProgressFn | None = None,
                 strict: bool = False) -> CreatedStudy:
    """Create a study from a spec.

    Args:
        store: the open database.
        spec: the study (systems, questions, raters, gold pairs).
        progress: called as progress(done, total, message) after each clip, the message saying
            what became of it ("encoded", "reused" or "skipped: reason").
        strict: refuse to create the study if any clip had to be skipped.

    Returns:
        The new study, with what was left out and why.

    Raises:
        SpecError: a source cannot be read, no prompt is shared by all systems, too few clips can
            make gold pairs, or the name is taken.
        MediaError: no pair is left once unusable clips are skipped, or (with `strict`) a clip was
            skipped; the message names each clip and its reason.
        StoreError: no media folder is configured.
    """
    # 1. Check inputs and match clips by prompt
    with store.session() as s:
        if s.scalar(select(Study.id).where(Study.name == spec.name)) is not None:
            raise SpecError(f"a study named {spec.name!r} exists already; choose another name")
    media_root = store.require_media_dir()
    sources = {sys_.name: read_source(sys_.path) for sys_ in spec.systems}
    matched, unmatched = match_prompts(sources)
    if not matched:
        raise SpecError(
            f"no prompt has a clip from every system ({', '.join(sources)}); the systems must be sampled "
            f"from the same prompts (clips per system: {', '.join(f'{k}={len(v)}' for k, v in sources.items())})"
        )
    prompts = _select_prompts(matched, spec)
    rng = random.Random(spec.seed)

    # 2. Register media (no database lock held: this is the slow part)
    with store.session() as s:
        code = _new_code(s)
    folder = media_root / code
    total = len(prompts) * len(spec.systems) + spec.gold.count
    done = 0
    registered: dict[tuple[str, str], tuple[RegisteredMedia, str]] = {}  # (system, prompt) -> media, source
    skipped: list[SkippedClip] = []

    def register(system: str, m: MatchedPrompt, path: Path, relpath: str, **altered: Any) -> RegisteredMedia | None:
        nonlocal done
        done += 1
        try:
            media = register_media(path, media_root, relpath, require_audio=True, **altered)
        except MediaError as err:
            skipped.append(SkippedClip(system, m.text, str(path), str(err)))
            if progress:
                progress(done, total, f"{system} · {path.name}: skipped: {err}")
            return None
        if progress:
            progress(done, total, f"{system} · {path.name}: {'reused' if media.reused else 'encoded'}")
        return media

    try:
        for m in prompts:
            for sys_index, sys_ in enumerate(spec.systems):
                clip = m.clips[sys_.name]
                media = register(sys_.name, m, clip.path, f"{code}/{m.key}-s{sys_index}.mp4")
                if media is not None:
                    registered[(sys_.name, m.key)] = (media, str(clip.path))
        gold_plan = _plan_gold([m for m in prompts if (spec.model_name, m.key) in registered], spec, rng)
        total = len(prompts) * len(spec.systems) + len(gold_plan)
        made_gold = []
        for i, (m, kind) in enumerate(gold_plan):
            altered: dict[str, Any]
            if kind == "audio_shift":
                altered = {"audio_delay": spec.gold.shift_seconds}
            else:
                altered = {"video_downscale": spec.gold.downscale}
            source = m.clips[spec.model_name].path  # from the source: one encoding, like every other clip
            media = register(f"gold:{kind}", m, source, f"{code}/gold{i}-{m.key}.mp4", **altered)
            if media is not None:
                registered[(f"gold:{kind}", m.key)] = (media, f"{kind} copy of {source}")
                made_gold.append((m, kind))
        n_pairs = sum((a, m.key) in registered and (b, m.key) in registered
                      for m in prompts for a, b in spec.system_pairs())
        if n_pairs == 0 or (strict and skipped):
            why = ("no pair of clips is left to compare" if n_pairs == 0
                   else f"{len(skipped)} clips could not be used and --strict was given")
            raise MediaError(f"study {spec.name!r} not created: {why}:\n" + "\n".join(f"  {x}" for x in skipped))
        # 3. Write everything in one transaction
        study_id = _write_study(store, spec, code, prompts, made_gold, registered)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return CreatedStudy(
        info=get_study(store, study_id),
        unmatched=unmatched,
        transcoded=sum(media.transcoded for media, _ in registered.values()),
        reused=sum(media.reused for media, _ in registered.values()),
        skipped=tuple(skipped),
    )


def _plan_gold(candidates: list[MatchedPrompt], spec: StudySpec, rng: random.Random) -> list[tuple[MatchedPrompt, str]]:
    """Gold pairs over the prompts whose model clip was registered (every registered clip has sound)."""
    if not spec.gold.count:
        return []
    if len(candidates) < spec.gold.count:
        raise SpecError(f"gold.count is {spec.gold.count} but only {len(candidates)} clips of {spec.model_name!r} "
                        "can make gold pairs; lower gold.count")
    order = rng.sample(candidates, len(candidates))[: spec.gold.count]
    return [(m, spec.gold.kinds[i % len(spec.gold.kinds)]) for i, m in enumerate(order)]


def _write_study(store: Store, spec: StudySpec, code: str, prompts: list[MatchedPrompt],
                 gold_plan: list[tuple[MatchedPrompt, str]],
                 registered: dict[tuple[str, str], tuple[RegisteredMedia, str]]) -> int:
    with store.write() as s:
        study = Study(
            name=spec.name, code=code, description=spec.description, instructions=spec.instructions,
            questions_json=json.dumps([q.__dict__ for q in spec.questions]),
            spec_json=json.dumps(spec.to_dict()), raters_per_pair=spec.raters_per_pair,
            pairs_per_rater=spec.pairs_per_rater, gold_per_rater=spec.gold.per_rater, open_join=spec.open_join,
            completion_url=spec.completion_url, token_days=float(spec.token_days), seed=spec.seed,
        )
        s.add(study)
        s.flush()
        systems = {}
        for sys_ in spec.systems:
            role = "model" if sys_.name == spec.model_name else "baseline"
            systems[sys_.name] = System(study_id=study.id, name=sys_.name, role=role, source=sys_.path)
        for kind in {k for _, k in gold_plan}:
            label = f"{spec.model_name} with {GOLD_KINDS[kind][1]} (gold)"
            systems[f"gold:{kind}"] = System(study_id=study.id, name=label, role="gold", source=kind)
        s.add_all(systems.values())
        used = {key for _, key in registered}
        prompt_rows = {m.key: Prompt(study_id=study.id, key=m.key, text=m.text) for m in prompts if m.key in used}
        s.add_all(prompt_rows.values())
        s.flush()
        samples = {}
        for (system_key, prompt_key), (reg, original) in registered.items():
            samples[(system_key, prompt_key)] = Sample(
                study_id=study.id, system_id=systems[system_key].id, prompt_id=prompt_rows[prompt_key].id,
                media_path=reg.relpath, original_path=original, sha256=reg.sha256,
                size_bytes=reg.size_bytes, duration=reg.duration, width=reg.width, height=reg.height,
                has_audio=reg.has_audio, transcoded=reg.transcoded)
        s.add_all(samples.values())
        s.flush()
        for m in prompts:
            for model, baseline in spec.system_pairs():
                if (model, m.key) not in samples or (baseline, m.key) not in samples:
                    continue  # a clip of this pair was skipped
                s.add(Pair(study_id=study.id, prompt_id=prompt_rows[m.key].id,
                           sample_a_id=samples[(model, m.key)].id, sample_b_id=samples[(baseline, m.key)].id))
        for m, kind in gold_plan:
            question = GOLD_KINDS[kind][0]
            s.add(Pair(study_id=study.id, prompt_id=prompt_rows[m.key].id, is_gold=True, gold_kind=kind,
                       sample_a_id=samples[(spec.model_name, m.key)].id, sample_b_id=samples[(f"gold:{kind}", m.key)].id,
                       gold_answers_json=json.dumps({question: "a"})))
        return study.id


def _info(s, study: Study) -> StudyInfo:
    systems = [x for x in study.systems if x.role != "gold"]
    n_pairs = s.scalar(select(func.count(Pair.id)).where(Pair.study_id == study.id, ~Pair.is_gold)) or 0
    n_gold = s.scalar(select(func.count(Pair.id)).where(Pair.study_id == study.id, Pair.is_gold)) or 0
    n_prompts = s.scalar(select(func.count(Prompt.id)).where(Prompt.study_id == study.id)) or 0
    return StudyInfo(
        id=study.id, name=study.name, code=study.code, status=study.status,
        systems=tuple(x.name for x in systems), model=next((x.name for x in systems if x.role == "model"), ""),
        n_prompts=n_prompts, n_pairs=n_pairs, n_gold=n_gold, raters_per_pair=study.raters_per_pair,
        pairs_per_rater=study.pairs_per_rater,
        raters_needed=raters_needed(n_pairs, study.raters_per_pair, study.pairs_per_rater),
        questions=tuple(q["key"] for q in json.loads(study.questions_json)),
    )


def list_studies(store: Store) -> list[StudyInfo]:
    """Every study, oldest first."""
    with store.session() as s:
        return [_info(s, st) for st in s.scalars(select(Study).order_by(Study.id))]


def get_study(store: Store, ref: str | int) -> StudyInfo:
    """A study by id, name or code.

    Raises:
        NotFoundError: no such study.
    """
    with store.session() as s:
        return _info(s, find_study(s, ref))


def set_status(store: Store, ref: str | int, status: str) -> StudyInfo:
    """Open or close a study (a closed study takes no raters and no answers)."""
    if status not in ("open", "closed"):
        raise StudyError(f"status must be 'open' or 'closed', not {status!r}")
    with store.write() as s:
        find_study(s, ref).status = status
    return get_study(store, ref)


def judgments_frame(store: Store, ref: str | int, *, all_gold_rows: bool = False) -> pd.DataFrame:
    """All judgments of a study in the columns of `eval.preference` (see JUDGMENT_COLUMNS).

    `answer` and `gold_answer` are as the rater saw the pair ("left"/"tie"/"right" or "1".."5"), and
    `system_left`/`system_right` say which system was shown on each side.

    Args:
        all_gold_rows: a gold pair has a known answer for one question only (e.g. "sync" for an
            audio-shifted copy), but raters answer every question so that gold pairs look like any
            other. By default the answers without a known answer are left out (so the table is what
            `eval.preference.validate_judgments` accepts); True keeps them, with an empty gold_answer.
    """
    sample_a, sample_b = aliased(Sample), aliased(Sample)
    sys_a, sys_b = aliased(System), aliased(System)
    with store.session() as s:
        study = find_study(s, ref)
        rows = s.execute(
            select(Judgment.pair_id, Prompt.key, Prompt.text, sys_a.name, sys_b.name, Assignment.left_is_a,
                   Judgment.rater_id, Rater.name, Rater.prolific_pid, Judgment.question, Judgment.answer,
                   Judgment.seconds, Pair.is_gold, Pair.gold_answers_json, Assignment.position, Judgment.created_at)
            .join(Assignment, Assignment.id == Judgment.assignment_id)
            .join(Pair, Pair.id == Judgment.pair_id)
            .join(Prompt, Prompt.id == Pair.prompt_id)
            .join(sample_a, sample_a.id == Pair.sample_a_id).join(sys_a, sys_a.id == sample_a.system_id)
            .join(sample_b, sample_b.id == Pair.sample_b_id).join(sys_b, sys_b.id == sample_b.system_id)
            .join(Rater, Rater.id == Judgment.rater_id)
            .where(Judgment.study_id == study.id)
            .order_by(Judgment.id)
        ).all()
        scales = {q["key"]: q.get("scale", "pairwise") for q in json.loads(study.questions_json)}
        name = study.name
    records = []
    for (pair_id, prompt_key, prompt_text, name_a, name_b, left_is_a, rater_id, rater_name, pid, question,
         answer, seconds, is_gold, gold_json, position, created_at) in rows:
        gold = json.loads(gold_json or "{}").get(question) if is_gold else None
        if is_gold and gold is None and not all_gold_rows:
            continue
        records.append({
            "study": name, "pair_id": pair_id, "prompt_id": prompt_key,
            "system_left": name_a if left_is_a else name_b, "system_right": name_b if left_is_a else name_a,
            "model": name_a, "baseline": name_b, "rater_id": rater_id, "question": question, "answer": answer,
            "seconds": seconds, "is_gold": bool(is_gold),
            "gold_answer": _gold_as_seen(gold, left_is_a, scales.get(question, "pairwise")),
            "prompt": prompt_text, "rater_name": rater_name, "prolific_pid": pid, "position": position,
            "created_at": created_at,
        })
    frame = pd.DataFrame.from_records(records, columns=JUDGMENT_COLUMNS)
    return frame.astype({"answer": "string", "gold_answer": "string", "prompt_id": "string", "question": "string"})


def _gold_as_seen(gold: str | None, left_is_a: bool, scale: str) -> str | None:
    """A gold answer stored as "a"/"b"/"tie" in the rater's left/right terms."""
    if gold is None:
        return None
    if gold == "tie":
        return "tie" if scale == "pairwise" else "3"
    left = (gold == "a") == left_is_a
    if scale == "pairwise":
        return "left" if left else "right"
    return "1" if left else "5"


def export_judgments(store: Store, ref: str | int, path: str | Path, fmt: str | None = None, *,
                     all_gold_rows: bool = False) -> Path:
    """Write a study's judgments to CSV or Parquet.

    CSV is what people open in a spreadsheet, so its text cells that a spreadsheet would run as a
    formula (a rater named ``=HYPERLINK(...)``) get a leading apostrophe (`neutralise_formulas`);
    Parquet keeps every value exactly (it is read by pandas and Arrow, which run nothing).

    Args:
        fmt: "csv" or "parquet"; default from the file's suffix.
        all_gold_rows: see `judgments_frame`.

    Raises:
        StudyError: unknown format.
    """
    p = Path(path)
    fmt = (fmt or p.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "parquet"):
        raise StudyError(f"export format must be csv or parquet, not {fmt!r} (set --format or the file suffix)")
    frame = judgments_frame(store, ref, all_gold_rows=all_gold_rows)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        neutralise_formulas(frame).to_csv(p, index=False)
    else:
        frame.to_parquet(p, index=False)
    return p


def study_progress(store: Store, ref: str | int) -> Progress:
    """How far a study is (see Progress)."""
    with store.session() as s:
        study = find_study(s, ref)
        answered = {a: q for a, q in s.execute(
            select(Judgment.assignment_id, func.count(Judgment.id)).where(Judgment.study_id == study.id)
            .group_by(Judgment.assignment_id))}
        assignments = s.execute(
            select(Assignment.id, Assignment.rater_id, Assignment.pair_id, Pair.is_gold)
            .join(Pair, Pair.id == Assignment.pair_id).where(Assignment.study_id == study.id)).all()
        raters = s.execute(select(Rater.id, Rater.name, Rater.joined_via).where(Rater.study_id == study.id)
                           .order_by(Rater.id)).all()
        last = dict(s.execute(select(Judgment.rater_id, func.max(Judgment.created_at))
                              .where(Judgment.study_id == study.id).group_by(Judgment.rater_id)).all())
        n_pairs = s.scalar(select(func.count(Pair.id)).where(Pair.study_id == study.id, ~Pair.is_gold)) or 0
        n_judgments = s.scalar(select(func.count(Judgment.id)).where(Judgment.study_id == study.id)) or 0
        rpp = study.raters_per_pair
    per_pair: dict[int, int] = {}
    per_rater: dict[int, list[int]] = {}
    for a_id, rater_id, pair_id, is_gold in assignments:
        done = a_id in answered
        counts = per_rater.setdefault(rater_id, [0, 0])
        counts[0] += done
        counts[1] += 1
        if done and not is_gold:
            per_pair[pair_id] = per_pair.get(pair_id, 0) + 1
    frame = pd.DataFrame(
        [{"rater_id": r, "name": n, "joined_via": via, "done": per_rater.get(r, [0, 0])[0],
          "total": per_rater.get(r, [0, 0])[1], "last_answer": last.get(r)} for r, n, via in raters],
        columns=["rater_id", "name", "joined_via", "done", "total", "last_answer"],
    )
    return Progress(
        ratings_done=sum(min(c, rpp) for c in per_pair.values()),
        ratings_target=n_pairs * rpp,
        pairs_complete=sum(c >= rpp for c in per_pair.values()),
        n_pairs=n_pairs,
        n_judgments=n_judgments,
        raters=frame,
    )


def add_admin(store: Store, name: str, password: str) -> None:
    """Add (or give a new password to) a named admin.

    Raises:
        ValueError: the password is shorter than `auth.MIN_PASSWORD_CHARS` (12) characters or the name is empty.
    """
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValueError("give the admin a name of 1-200 characters")
    hashed = hash_password(password)
    with store.write() as s:
        admin = s.scalar(select(Admin).where(Admin.name == name))
        if admin is None:
            s.add(Admin(name=name, password_hash=hashed))
        else:
            admin.password_hash = hashed


def admin_hashes(store: Store) -> list[str]:
    """Password hashes of the named admins."""
    with store.session() as s:
        return list(s.scalars(select(Admin.password_hash)))

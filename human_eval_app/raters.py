"""The rater's side of a study: invites, joining, the queue, the clips of an item, and answers.

Everything here takes the rater's id from an authenticated token (`authenticate`), never from
what a page sends, and checks that the assignment asked for belongs to that rater. Raters see
neither system names nor file paths: an item carries the prompt and the registered media of the
left and right clip only.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from .assignment import allocate_queue
from .auth import AccessError, new_token, token_hash, valid_token_format
from .errors import AnswerError, DuplicateSubmission, NotFoundError, StudyClosed
from .spec import Question
from .store import Assignment, Judgment, Pair, Prompt, Rater, Sample, Store, Study, find_study, utcnow

__all__ = [
    "Invite",
    "RaterContext",
    "MediaRef",
    "Item",
    "QueueState",
    "ProlificParams",
    "create_invites",
    "join_with_code",
    "authenticate",
    "start_queue",
    "queue_state",
    "load_item",
    "submit_answers",
    "clean_name",
]

_CODE_RE = re.compile(r"^[A-Z0-9]{4,16}$")
_PROLIFIC_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Invite:
    """A personal invite: the token is shown once (only its hash is stored)."""

    rater_id: int
    name: str
    token: str
    expires_at: dt.datetime

    def link(self, base_url: str) -> str:
        """The rater's link, e.g. ``http://localhost:8501/?token=...`` (the rate page is the app's home)."""
        return f"{base_url.rstrip('/')}/?token={self.token}"


@dataclass(frozen=True)
class ProlificParams:
    """The URL parameters Prolific appends to a study link."""

    pid: str
    study_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("pid", "study_id", "session_id"):
            value = getattr(self, name)
            if value is not None and not _PROLIFIC_RE.fullmatch(value):
                raise AccessError(f"the Prolific parameter {name.upper()} is malformed; open the study from Prolific again")


@dataclass(frozen=True)
class RaterContext:
    """Who is rating and in which study (what the rate page needs to know)."""

    rater_id: int
    name: str
    study_id: int
    study_name: str
    instructions: str
    questions: tuple[Question, ...]
    completion_url: str | None
    expires_at: dt.datetime


@dataclass(frozen=True)
class MediaRef:
    """A registered clip: path relative to the media folder and the hash it was registered with."""

    relpath: str
    sha256: str
    has_audio: bool


@dataclass(frozen=True)
class Item:
    """One pair as a rater sees it."""

    assignment_id: int
    position: int
    prompt: str
    left: MediaRef
    right: MediaRef


@dataclass(frozen=True)
class QueueState:
    """A rater's progress: pairs answered, pairs in the queue, and the first unanswered one."""

    done: int
    total: int
    next_assignment_id: int | None

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.next_assignment_id is None


def clean_name(name: str) -> str:
    """A rater's display name: trimmed, control characters removed, 1-100 characters.

    Raises:
        AccessError: nothing printable is left.
    """
    text = "".join(ch for ch in str(name) if unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split())[:100]
    if not text:
        raise AccessError("enter your name (or a nickname) to join")
    return text


def create_invites(store: Store, study_ref: str | int, n: int, *, names: list[str] | None = None,
                   days: float | None = None) -> list[Invite]:
    """Create `n` raters with personal links (queues are filled when a rater first opens the link).

    Args:
        study_ref: study id, name or code.
        n: number of invites (ignored when `names` are given).
        names: one invite per name.
        days: validity; default the study's `token_days`.
    """
    if names is None:
        if not 1 <= n <= 10000:
            raise AccessError(f"ask for 1 to 10000 invites; got {n}")
    invites = []
    with store.write() as s:
        study = find_study(s, study_ref)
        if study.status != "open":
            raise StudyClosed(f"study {study.name!r} is closed; reopen it before inviting raters")
        start = s.scalar(select(func.count(Rater.id)).where(Rater.study_id == study.id)) or 0
        labels = [clean_name(x) for x in names] if names else [f"invite-{start + i + 1}" for i in range(n)]
        expires = utcnow() + dt.timedelta(days=days if days is not None else study.token_days)
        for label in labels:
            token = new_token()
            rater = Rater(study_id=study.id, name=label, token_hash=token_hash(token), expires_at=expires,
                          joined_via="invite")
            s.add(rater)
            s.flush()
            invites.append(Invite(rater.id, label, token, expires))
    return invites


def join_with_code(store: Store, code: str, name: str | None = None, *,
                   prolific: ProlificParams | None = None, token: str | None = None) -> tuple[RaterContext, str]:
    """Join a study with its code and a name (or as a Prolific participant).

    A Prolific participant id is no secret (researchers, other participants' screenshots and
    exports show it), so it alone never hands over an existing rater. A participant who comes back
    resumes their queue only with proof of being the same person: the same Prolific session id
    (``SESSION_ID``, which Prolific gives each submission and repeats when the participant reopens
    it), or the token this browser already holds. Resuming by session id gives a fresh token (the
    rater holds one link at a time); anyone else with the same participant id is refused and the
    first person's link keeps working.

    Args:
        code: the study code.
        name: the rater's name; a Prolific participant gets ``prolific-<pid>``.
        prolific: Prolific's URL parameters, when joining from Prolific.
        token: the rater token this browser already holds, if any (a Prolific participant who
            holds their own token resumes with it unchanged).

    Returns:
        The rater and the token to put into the page's address.

    Raises:
        AccessError: malformed code, unknown study, joining by code is off for the study, or the
            Prolific participant id belongs to a rater of another session.
        StudyClosed: the study is closed.
    """
    code = (code or "").strip().upper()
    if not _CODE_RE.fullmatch(code):
        raise AccessError("that is not a study code (4-16 letters and digits); check the code you were given")
    display = clean_name(name if name else (f"prolific-{prolific.pid}" if prolific else ""))
    new = new_token()
    with store.write() as s:
        study = s.scalar(select(Study).where(Study.code == code))
        if study is None:
            raise AccessError(f"no study has the code {code}; check the code you were given")
        if study.status != "open":
            raise StudyClosed("this study is closed and takes no more raters; thank you for your interest")
        if not study.open_join:
            raise AccessError("this study is by invitation only; use the personal link you were sent")
        expires = utcnow() + dt.timedelta(days=study.token_days)
        rater = None
        if prolific is not None:
            rater = s.scalar(select(Rater).where(Rater.study_id == study.id, Rater.prolific_pid == prolific.pid))
        if rater is not None:
            assert prolific is not None
            if _holds_token(rater, token):
                return _context(study, rater), token  # type: ignore[return-value]
            if not _same_prolific_session(rater, prolific):
                raise AccessError(
                    "this Prolific participant has already joined this study from another session, so it "
                    "cannot be opened here. If that was you, go back to the tab where you started, or open "
                    "the study again from your Prolific submission; otherwise message the researcher on Prolific."
                )
            rater.token_hash, rater.expires_at = token_hash(new), expires  # the same person, a new link
        else:
            rater = Rater(study_id=study.id, name=display, token_hash=token_hash(new), expires_at=expires,
                          joined_via="prolific" if prolific else "code",
                          prolific_pid=prolific.pid if prolific else None,
                          prolific_study_id=prolific.study_id if prolific else None,
                          prolific_session_id=prolific.session_id if prolific else None)
            s.add(rater)
            s.flush()
        context = _context(study, rater)
    return context, new


def _holds_token(rater: Rater, token: str | None) -> bool:
    """Whether `token` is the rater's current, unexpired token (compared in constant time)."""
    if not valid_token_format(token):
        return False
    return hmac.compare_digest(token_hash(token), rater.token_hash) and rater.expires_at > utcnow()  # type: ignore[arg-type]


def _same_prolific_session(rater: Rater, prolific: ProlificParams) -> bool:
    """Whether a returning participant comes from the Prolific session the rater joined in.

    Both must have a session id: without one there is nothing that tells the participant from
    someone who only knows their id.
    """
    if not rater.prolific_session_id or not prolific.session_id:
        return False
    return hmac.compare_digest(rater.prolific_session_id.encode(), prolific.session_id.encode())


def _context(study: Study, rater: Rater) -> RaterContext:
    return RaterContext(
        rater_id=rater.id,
        name=rater.name,
        study_id=study.id,
        study_name=study.name,
        instructions=study.instructions,
        questions=tuple(Question(**q) for q in json.loads(study.questions_json)),
        completion_url=study.completion_url,
        expires_at=rater.expires_at,
    )


def authenticate(store: Store, token: str | None) -> RaterContext:
    """The rater a token belongs to.

    Raises:
        AccessError: the token is malformed, unknown (forged), or expired.
    """
    if not valid_token_format(token):
        raise AccessError("this link is not valid; use the exact link you were sent, or join with the study code")
    with store.session() as s:
        rater = s.scalar(select(Rater).where(Rater.token_hash == token_hash(token)))  # type: ignore[arg-type]
        if rater is None:
            raise AccessError("this link is not valid; use the exact link you were sent, or join with the study code")
        if rater.expires_at <= utcnow():
            raise AccessError("this link has expired; ask the study's lead for a new one")
        study = s.get(Study, rater.study_id)
        return _context(study, rater)  # type: ignore[arg-type]


def start_queue(store: Store, rater_id: int) -> int:
    """Fill the rater's queue if it is empty; returns the number of new assignments."""
    with store.write() as s:
        rater = s.get(Rater, rater_id)
        if rater is None:
            raise NotFoundError(f"no rater {rater_id}")
        study = s.get(Study, rater.study_id)
        if study is None or study.status != "open":
            return 0
        return len(allocate_queue(s, study, rater))


def queue_state(store: Store, rater_id: int) -> QueueState:
    """Progress of a rater: the first assignment (by position) with no answer is next."""
    with store.session() as s:
        answered = set(s.scalars(select(Judgment.assignment_id).where(Judgment.rater_id == rater_id).distinct()))
        ids = list(s.scalars(select(Assignment.id).where(Assignment.rater_id == rater_id).order_by(Assignment.position)))
    pending = [a for a in ids if a not in answered]
    return QueueState(done=len(ids) - len(pending), total=len(ids), next_assignment_id=pending[0] if pending else None)


def _media(sample: Sample) -> MediaRef:
    return MediaRef(sample.media_path, sample.sha256, sample.has_audio)


def load_item(store: Store, rater_id: int, assignment_id: int) -> Item:
    """The prompt and the left/right clips of one of the rater's assignments.

    Raises:
        AccessError: the assignment is not this rater's.
    """
    sample_a, sample_b = aliased(Sample), aliased(Sample)
    with store.session() as s:  # one query: the rate page calls this on every rerun
        row = s.execute(
            select(Assignment.position, Assignment.left_is_a, Prompt.text, sample_a, sample_b)
            .join(Pair, Pair.id == Assignment.pair_id)
            .join(Prompt, Prompt.id == Pair.prompt_id)
            .join(sample_a, sample_a.id == Pair.sample_a_id)
            .join(sample_b, sample_b.id == Pair.sample_b_id)
            .where(Assignment.id == assignment_id, Assignment.rater_id == rater_id)
        ).first()
    if row is None:
        raise AccessError("this pair is not in your queue")
    position, left_is_a, prompt, sa, sb = row
    left, right = (sa, sb) if left_is_a else (sb, sa)
    return Item(assignment_id, position, prompt, _media(left), _media(right))


def submit_answers(store: Store, rater_id: int, assignment_id: int, answers: dict[str, str | int],
                   seconds: float) -> int:
    """Record a rater's answers to every question of one assignment, all or none.

    Args:
        answers: {question key: "left" | "tie" | "right", or 1..5 for 5-point questions}, as the rater
            saw the pair (the assignment knows which system was on which side).
        seconds: time the rater spent on the pair.

    Returns:
        The number of judgments stored (one per question).

    Raises:
        AccessError: the assignment is not this rater's.
        AnswerError: a question is unanswered, unknown, or answered with something not offered.
        DuplicateSubmission: this assignment was answered before (the first answers stand).
        StudyClosed: the study is closed.
    """
    if not isinstance(seconds, int | float) or not 0 <= float(seconds) < 10**7:
        raise AnswerError(f"seconds must be a non-negative number; got {seconds!r}")
    try:
        with store.write() as s:
            a = s.get(Assignment, assignment_id)
            if a is None or a.rater_id != rater_id:
                raise AccessError("this pair is not in your queue")
            study = s.get(Study, a.study_id)
            if study is None or study.status != "open":
                raise StudyClosed("this study is closed; answers are no longer recorded")
            questions = [Question(**q) for q in json.loads(study.questions_json)]
            clean = _check_answers(questions, answers)
            if s.scalar(select(func.count(Judgment.id)).where(Judgment.assignment_id == a.id)):
                raise DuplicateSubmission("your answers for this pair were already recorded; moving on")
            now = utcnow()
            for key, value in clean.items():
                s.add(Judgment(study_id=a.study_id, assignment_id=a.id, rater_id=rater_id, pair_id=a.pair_id,
                               question=key, answer=value, seconds=float(seconds), created_at=now))
    except IntegrityError:
        # Two submissions raced past the check above; the unique (assignment, question) constraint
        # kept the first one.
        raise DuplicateSubmission("your answers for this pair were already recorded; moving on") from None
    return len(clean)


def _check_answers(questions: list[Question], answers: dict[str, str | int]) -> dict[str, str]:
    if not isinstance(answers, dict):
        raise AnswerError("answers must map each question to an answer")
    keys = [q.key for q in questions]
    unknown = set(answers) - set(keys)
    if unknown:
        raise AnswerError(f"unknown questions {sorted(map(str, unknown))}; this study asks {keys}")
    clean = {}
    for q in questions:
        if answers.get(q.key) is None:
            raise AnswerError(f"answer every question before submitting (missing: {q.text})")
        value = str(answers[q.key]).strip().lower()
        if value not in q.options:
            raise AnswerError(f"{value!r} is not an answer to {q.key!r}; the options are {list(q.options)}")
        clean[q.key] = value
    return clean

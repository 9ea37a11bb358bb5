"""The human evaluation app: pairwise studies of generated clips, from study creation to a lead's dashboard.

Public API (the Streamlit pages are thin views over these):

    open_store(url=None, *, media_dir=None) -> Store          # SQLite file or PostgreSQL URL
    load_spec(path) -> StudySpec; StudySpec(name, systems, ...)
    create_study(store, spec, *, progress=None) -> CreatedStudy
    list_studies(store) -> list[StudyInfo]; get_study(store, ref) -> StudyInfo
    study_progress(store, ref) -> Progress
    judgments_frame(store, ref) -> DataFrame                 # the columns eval.preference reads
    export_judgments(store, ref, path, fmt=None) -> Path      # CSV or Parquet
    create_invites(store, ref, n) -> list[Invite]; join_with_code(store, code, name) -> (RaterContext, token)
    authenticate(store, token) -> RaterContext
    start_queue(store, rater_id); queue_state(store, rater_id) -> QueueState
    load_item(store, rater_id, assignment_id) -> Item
    submit_answers(store, rater_id, assignment_id, answers, seconds) -> int

Commands: `avgen study create|list|invite|export|close|open|progress|hash-password|add-admin` and
`avgen app --db URL`. See docs/human_eval.md.
"""

from .auth import AccessError
from .errors import AnswerError, DuplicateSubmission, NotFoundError, StudyClosed, StudyError
from .raters import (
    Invite,
    Item,
    ProlificParams,
    QueueState,
    RaterContext,
    authenticate,
    create_invites,
    join_with_code,
    load_item,
    queue_state,
    start_queue,
    submit_answers,
)
from .spec import Question, SpecError, StudySpec, load_spec
from .store import SCHEMA_VERSION, SchemaError, Store, StoreError, open_store
from .studies import (
    CreatedStudy,
    Progress,
    StudyInfo,
    create_study,
    export_judgments,
    get_study,
    judgments_frame,
    list_studies,
    set_status,
    study_progress,
)

__all__ = [
    "SCHEMA_VERSION",
    "AccessError",
    "AnswerError",
    "CreatedStudy",
    "DuplicateSubmission",
    "Invite",
    "Item",
    "NotFoundError",
    "ProlificParams",
    "Progress",
    "Question",
    "QueueState",
    "RaterContext",
    "SchemaError",
    "SpecError",
    "Store",
    "StoreError",
    "StudyClosed",
    "StudyError",
    "StudyInfo",
    "StudySpec",
    "authenticate",
    "create_invites",
    "create_study",
    "export_judgments",
    "get_study",
    "join_with_code",
    "judgments_frame",
    "list_studies",
    "load_item",
    "load_spec",
    "open_store",
    "queue_state",
    "set_status",
    "start_queue",
    "study_progress",
    "submit_answers",
]

"""Errors of the study layer. Each message says what was wrong and what to do; pages show it as is."""

from __future__ import annotations

__all__ = ["StudyError", "NotFoundError", "AnswerError", "DuplicateSubmission", "StudyClosed"]


class StudyError(ValueError):
    """A study operation cannot be done as asked."""


class NotFoundError(StudyError, LookupError):
    """No study, rater or assignment matches what was asked for."""


class AnswerError(StudyError):
    """A rater's answers are incomplete or not among a question's options."""


class DuplicateSubmission(StudyError):
    """The answers for this pair were recorded already; the first submission stands."""


class StudyClosed(StudyError):
    """The study no longer accepts raters or answers."""

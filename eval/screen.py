"""Screening the clips of an evaluation before any metric runs: a bad clip is skipped, not fatal.

Every clip of every set is opened, and the first moments of each stream the chosen metrics read
(video, audio) are decoded, so that all unreadable, audio-less or video-less clips are found in one
pass, before minutes of feature extraction, and reported together with their reasons. A clip that
passes the screen but fails later, inside a metric (a file truncated halfway), is skipped by the
runner the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from eval.reader import EvalInputError, read_audio, read_video
from eval.sets import ClipRecord, ClipSet

__all__ = ["SkippedClip", "check_clip", "find", "screen_set", "streams_needed", "without"]

VIDEO, AUDIO = "video", "audio"
# What each metric decodes; a metric not listed (or without a `streams` attribute) gets both.
_STREAMS: dict[str, frozenset[str]] = {
    "fvd": frozenset({VIDEO}), "clip_score": frozenset({VIDEO}), "flicker": frozenset({VIDEO}),
    "motion": frozenset({VIDEO}), "fad_vggish": frozenset({AUDIO}), "fad_panns": frozenset({AUDIO}),
    "fad_clap": frozenset({AUDIO}), "fad_codec": frozenset({AUDIO}), "clap_score": frozenset({AUDIO}),
    "av_align": frozenset({VIDEO, AUDIO}), "events": frozenset({VIDEO, AUDIO}),
}
# Seconds decoded per stream by the screen: enough to prove the stream decodes, cheap for any file.
_PROBE_SECONDS = 0.1


@dataclass(frozen=True)
class SkippedClip:
    """A clip left out of the evaluation.

    Attributes:
        system: the set's name (a system, or the reference).
        id: the clip's id in that set.
        path: its media file.
        reason: what is wrong and what to do.
    """

    system: str
    id: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def streams_needed(metrics: Iterable[str]) -> frozenset[str]:
    """The streams ("video", "audio") that the named metrics read."""
    from eval.metrics import METRICS

    out: set[str] = set()
    for name in metrics:
        declared = getattr(METRICS.get(name), "streams", None)
        out |= set(declared) if declared else _STREAMS.get(name, {VIDEO, AUDIO})
    return frozenset(out)


def check_clip(record: ClipRecord, streams: Iterable[str]) -> str | None:
    """Why `record` cannot be evaluated (None when it can): missing, unreadable, a needed stream
    absent or undecodable."""
    window = _PROBE_SECONDS if record.duration is None else min(_PROBE_SECONDS, record.duration)
    try:
        if VIDEO in streams:
            read_video(record.path, start=record.start, duration=window, size=16)
        if AUDIO in streams:
            read_audio(record.path, start=record.start, duration=window)
    except EvalInputError as err:
        return str(err)
    return None


def without(clips: ClipSet, ids: set[str]) -> ClipSet:
    """`clips` less the clips whose id is in `ids`."""
    return ClipSet(clips.name, clips.source, [r for r in clips.records if r.id not in ids])


def screen_set(clips: ClipSet, streams: Iterable[str], *, strict: bool = False) -> tuple[ClipSet, list[SkippedClip]]:
    """Split `clips` into the usable set and the skipped clips (with reasons).

    Args:
        clips: the set.
        streams: what the metrics read ("video", "audio").
        strict: raise at the first bad clip instead of skipping it.

    Raises:
        EvalInputError: with `strict`, the first bad clip (its reason, `path` set).
    """
    needed = frozenset(streams)
    skipped = []
    for record in clips.records:
        reason = check_clip(record, needed)
        if reason is None:
            continue
        if strict:
            raise EvalInputError(f"{clips.name}: clip {record.id!r}: {reason} (stopped at the first bad clip: "
                                 "--strict)", path=record.path)
        skipped.append(SkippedClip(clips.name, record.id, str(record.path), reason))
    return without(clips, {s.id for s in skipped}), skipped


def find(clips: ClipSet, path: Path) -> ClipRecord | None:
    """The clip of `clips` stored in `path`, if any."""
    target = path.resolve()
    return next((r for r in clips.records if r.path.resolve() == target), None)

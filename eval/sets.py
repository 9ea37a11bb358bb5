"""Sets of clips to evaluate: a folder of media files or a manifest, and pairing between sets.

A set is either

- a folder of mp4 files (also .mov, .mkv, .webm), each optionally with a JSON sidecar of the same
  stem as `avgen sample` writes: {"prompt", "id", "seed", ...} (a "reference_id" field, when
  present, names the reference clip a generated clip was made from), or
- a manifest, JSONL (one object per line) or CSV, with at least "id" and "path", usually
  "caption", and optionally "split", "start", "end" and ground-truth
  "events": [{"time", "kind", "obj"}] as the synthetic dataset writes them.

A relative listed path is resolved against the folder of the file that lists it (the manifest's
folder), whatever the current directory is; if no file is there but one exists at the path taken
relative to the current directory, that one is used (lists written by hand from the project root).
Absolute paths are used as they are.

Pairing (needed by paired metrics such as the video-to-audio event measure) is by id, or by
prompt; unmatched ids are an error that lists them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avio import ManifestError, SidecarError, read_sidecar, sidecar_path
from avio.manifest import read_records, resolve_listed
from eval.reader import EvalInputError

__all__ = ["EvalInputError", "GroundTruthEvent", "ClipRecord", "ClipSet", "load_set", "pair_sets",
           "MEDIA_SUFFIXES"]

MEDIA_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class GroundTruthEvent:
    """A known event: `time` in seconds from the clip's start, `kind` and object index `obj`."""

    time: float
    kind: str = ""
    obj: int = -1


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a set.

    Attributes:
        id: unique within the set.
        path: media file.
        caption: the prompt or caption (None if unknown).
        start: seconds into the file where the clip starts.
        end: seconds where it ends (None: the end of the file).
        events: ground-truth events relative to `start` (None: not known).
        reference_id: the reference clip this one was generated from, if the sidecar says so.
        extra: any other fields of the sidecar or manifest row.
    """

    id: str
    path: Path
    caption: str | None = None
    start: float = 0.0
    end: float | None = None
    events: tuple[GroundTruthEvent, ...] | None = None
    reference_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def duration(self) -> float | None:
        """Seconds of the clip if the end is known."""
        return None if self.end is None else self.end - self.start


@dataclass
class ClipSet:
    """A named, ordered set of clips.

    Attributes:
        name: the system's name (row label of the report).
        source: the folder or manifest it was read from.
        records: the clips, sorted by id for folders, in file order for manifests.
        rejected: clips left out while reading (`load_set(..., lenient=True)`): (id, path, reason).
    """

    name: str
    source: Path
    records: list[ClipRecord]
    rejected: list[tuple[str, Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)

    @property
    def has_events(self) -> bool:
        """Whether every clip has ground-truth events."""
        return bool(self.records) and all(r.events is not None for r in self.records)

    @property
    def has_captions(self) -> bool:
        """Whether every clip has a caption."""
        return bool(self.records) and all(r.caption for r in self.records)

    def by_id(self) -> dict[str, ClipRecord]:
        """Records keyed by id."""
        return {r.id: r for r in self.records}

    def limit(self, n: int | None) -> ClipSet:
        """The first `n` clips (all if None)."""
        return self if n is None else ClipSet(self.name, self.source, self.records[:n], self.rejected)


def _parse_events(value: Any, where: str) -> tuple[GroundTruthEvent, ...] | None:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):  # "": an empty CSV cell
        return None
    if isinstance(value, str):  # CSV cells hold JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{where}: 'events' is not valid JSON ({err}).") from err
    if not isinstance(value, list):
        raise EvalInputError(f"{where}: 'events' must be a list of {{'time', 'kind', 'obj'}} objects.")
    out = []
    for ev in value:
        if isinstance(ev, int | float):
            out.append(GroundTruthEvent(float(ev)))
            continue
        if not isinstance(ev, dict) or "time" not in ev:
            raise EvalInputError(f"{where}: every event needs a 'time' in seconds, got {ev!r}.")
        try:
            out.append(GroundTruthEvent(float(ev["time"]), str(ev.get("kind", "")), int(ev.get("obj", -1))))
        except (TypeError, ValueError) as err:
            raise EvalInputError(f"{where}: bad event {ev!r} ({err}).") from err
    return tuple(sorted(out, key=lambda e: e.time))


def _float_or(value: Any, default: float | None, name: str, where: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise EvalInputError(f"{where}: '{name}' must be a number of seconds, got {value!r}.") from err


def _record(row: dict[str, Any], base: Path, where: str) -> ClipRecord:
    for key in ("id", "path"):
        if key not in row or row[key] is None or (isinstance(row[key], float) and math.isnan(row[key])):
            raise EvalInputError(f"{where}: missing '{key}'; every manifest row needs 'id' and 'path'.")
    path = resolve_listed(str(row["path"]), base)  # may not exist: load_set reports it against `base`
    start = _float_or(row.get("start"), 0.0, "start", where) or 0.0
    end = _float_or(row.get("end"), None, "end", where)
    if end is not None and end <= start:
        raise EvalInputError(f"{where}: 'end' ({end}) must be after 'start' ({start}).")
    caption = row.get("caption", row.get("prompt"))
    caption = None if caption is None or (isinstance(caption, float) and math.isnan(caption)) else str(caption)
    known = {"id", "path", "caption", "prompt", "start", "end", "events", "reference_id"}
    ref_id = row.get("reference_id")
    return ClipRecord(
        id=str(row["id"]),
        path=path,
        caption=caption,
        start=start,
        end=end,
        events=_parse_events(row.get("events"), where),
        reference_id=None if ref_id is None or ref_id == "" or (isinstance(ref_id, float) and math.isnan(ref_id))
        else str(ref_id),
        extra={k: v for k, v in row.items() if k not in known},
    )


def _load_manifest(path: Path, split: str | None) -> list[ClipRecord]:
    try:
        rows = [(rec, where) for where, rec in read_records(path)]
    except ManifestError as err:
        raise EvalInputError(str(err)) from err
    if split is not None:
        splits = {str(r.get("split")) for r, _ in rows}
        rows = [(r, w) for r, w in rows if str(r.get("split")) == split]
        if not rows:
            raise EvalInputError(f"{path}: no rows with split {split!r}; the manifest has splits {sorted(splits)}.")
    return [_record(r, path.parent, w) for r, w in rows]


def _load_folder(path: Path, rejected: list[tuple[str, Path, str]] | None = None) -> list[ClipRecord]:
    """The folder's clips; with `rejected`, a clip whose sidecar is unreadable is listed there
    instead of failing the whole set."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file())
    records = []
    for f in files:
        sidecar = sidecar_path(f)
        meta: dict[str, Any] = {}
        if sidecar.is_file():
            try:
                meta = read_sidecar(sidecar)
            except SidecarError as err:
                if rejected is None:
                    raise EvalInputError(str(err)) from err
                rejected.append((f.stem, f, str(err)))
                continue
        # the media file found here, not a "path" the sidecar may carry; named relative to `path`
        # because `_record` resolves against it (str(f) would double a relative folder: a/b/a/b/x.mp4)
        row = {"id": f.stem, **meta, "path": f.name}
        records.append(_record(row, path, str(sidecar if meta else f)))
    return records


def load_set(source: str | Path, *, name: str | None = None, split: str | None = None,
             check_files: bool = True, lenient: bool = False) -> ClipSet:
    """Read a set of clips.

    Args:
        source: a folder of media files (with optional JSON sidecars) or a manifest (.jsonl,
            .json lines or .csv).
        name: the set's name in reports (default: the folder's or manifest's name).
        split: keep only manifest rows of this split (e.g. "heldout").
        check_files: fail if a listed media file does not exist.
        lenient: a folder's clip with an unreadable sidecar goes to `ClipSet.rejected` (with the
            reason) instead of failing the whole set.

    Returns:
        The `ClipSet`.

    Raises:
        EvalInputError: missing source, empty set, duplicate ids, missing files or bad rows.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise EvalInputError(f"{src}: no such folder or manifest; pass a folder of mp4 files or a manifest .jsonl/.csv.")
    rejected: list[tuple[str, Path, str]] = []
    if src.is_dir():
        if split is not None:
            raise EvalInputError(f"{src}: a split ({split!r}) can only be chosen in a manifest, not a folder.")
        records = _load_folder(src, rejected if lenient else None)
        label = src.name
    else:
        if src.suffix.lower() in MEDIA_SUFFIXES:
            raise EvalInputError(f"{src}: is a single media file; pass the folder that holds the set's files.")
        records = _load_manifest(src, split)
        label = src.parent.name if src.stem == "manifest" else src.stem
    if not records and not rejected:
        raise EvalInputError(
            f"{src}: the set is empty (no {'/'.join(MEDIA_SUFFIXES)} files)" if src.is_dir()
            else f"{src}: the manifest has no rows."
        )
    seen: dict[str, Path] = {}
    for r in records:
        if r.id in seen:
            raise EvalInputError(f"{src}: duplicate id {r.id!r} ({seen[r.id]} and {r.path}); ids must be unique.")
        seen[r.id] = r.path
    if check_files:
        missing = [str(r.path) for r in records if not r.path.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            base = src if src.is_dir() else src.parent
            raise EvalInputError(
                f"{src}: {len(missing)} listed files do not exist: {shown} (relative paths are resolved against "
                f"the listing file's folder {base.resolve()}, then against the current directory {Path.cwd()})."
            )
    return ClipSet(name=name or label, source=src, records=records, rejected=rejected)


def _norm_prompt(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def pair_sets(generated: ClipSet, reference: ClipSet, by: str = "id") -> list[tuple[ClipRecord, ClipRecord]]:
    """Pair each generated clip with a reference clip.

    Args:
        generated: the generated set.
        reference: the reference set.
        by: "id" (the generated clip's `reference_id` if its sidecar has one, else its id) or
            "prompt" (the same caption, compared case- and space-insensitively; the first reference
            clip with that caption is used).

    Returns:
        (generated, reference) pairs in the generated set's order.

    Raises:
        EvalInputError: unknown `by`, or generated clips without a partner (listed).
    """
    if by not in ("id", "prompt"):
        raise EvalInputError(f"pairing must be 'id' or 'prompt', got {by!r}.")
    if by == "id":
        index = reference.by_id()
        keys = [(g, g.reference_id or g.id) for g in generated]
    else:
        index = {}
        for r in reference:
            index.setdefault(_norm_prompt(r.caption), r)
        keys = [(g, _norm_prompt(g.caption)) for g in generated]
    pairs, missing = [], []
    for g, key in keys:
        if key in index:
            pairs.append((g, index[key]))
        else:
            missing.append(key if by == "id" else (g.caption or g.id))
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EvalInputError(
            f"{len(missing)} of {len(generated)} clips of {generated.name!r} have no partner in {reference.name!r} "
            f"by {by}: {shown}. Generate from the reference manifest (so ids match), or pair by "
            f"{'prompt' if by == 'id' else 'id'}."
        )
    return pairs

"""Dataset manifests: a folder of media files plus a JSONL or CSV list of clips.

Each record names a clip: `id`, `path` (absolute, or relative to the manifest's folder),
`caption`, and optionally `start`/`end` seconds and `split`. Any other field (the synthetic
dataset's `events`, `family`, `params`, ...) is kept, untouched, in `ManifestEntry.extra`.

`read_records` is the one parser of manifest files: UTF-8 checked line by line, one JSON object
per line, or a CSV whose text columns stay text; each record comes with "file:line" for messages.
`load_manifest` makes dataset entries of them; the evaluation's sets and the rating app's sample
lists read the same records with the fields they need.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from avio.errors import ManifestError
from avio.files import atomic_write_text

__all__ = ["MANIFEST_NAMES", "ManifestEntry", "ManifestError", "load_manifest", "parse_record", "read_lines",
           "read_records", "resolve_listed", "resolve_manifest_path", "save_manifest"]

_REQUIRED = ("id", "path", "caption")
_KNOWN = (*_REQUIRED, "start", "end", "split")
MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")


@dataclass
class ManifestEntry:
    """One clip of a dataset.

    Attributes:
        id: unique within the manifest.
        path: the media file, absolute (relative paths are resolved against the manifest's folder).
        caption: text describing the clip ("" for uncaptioned data).
        start: seconds into the file where the clip starts.
        end: seconds where it ends (None: the end of the file).
        split: "train", "val", "heldout", ... or None.
        extra: every other field of the record.
        listed_at: "manifest:line" of the record (None for entries made in code).
        listed_path: the path as the record wrote it, before resolving.
    """

    id: str
    path: Path
    caption: str
    start: float = 0.0
    end: float | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    listed_at: str | None = field(default=None, compare=False, repr=False)
    listed_path: str | None = field(default=None, compare=False, repr=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, if the end is known."""
        return None if self.end is None else self.end - self.start

    def missing_file(self) -> str | None:
        """Why the entry's file cannot be found (None when it exists), saying where it was looked for."""
        if self.path.exists():
            return None
        if self.listed_at is None or self.listed_path is None:
            return f"{self.path}: no such file."
        how = ("an absolute path" if Path(self.listed_path).expanduser().is_absolute()
               else "a relative path, resolved from the manifest's folder (not the current folder)")
        return (f"{self.path}: no such file; {self.listed_at} lists it as {self.listed_path!r}, {how}. Fix the "
                "path in the manifest or put the file there.")

    def to_record(self, root: Path | None = None) -> dict[str, Any]:
        """A JSON-serializable record; the path is made relative to `root` when it lies inside it."""
        path = self.path
        if root is not None:
            try:
                path = self.path.resolve().relative_to(root.resolve())
            except ValueError:
                pass
        rec: dict[str, Any] = {"id": self.id, "path": path.as_posix(), "caption": self.caption, "start": self.start}
        if self.end is not None:
            rec["end"] = self.end
        if self.split is not None:
            rec["split"] = self.split
        return {**rec, **self.extra}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _seconds(where: str, name: str, value: Any) -> float | None:
    if _missing(value) or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: {name} must be a number of seconds; got {value!r}.") from None
    if not math.isfinite(v) or v < 0:
        raise ManifestError(f"{where}: {name} must be a finite number >= 0; got {value!r}.")
    return v


def _entry(where: str, rec: dict[str, Any], root: Path) -> ManifestEntry:
    absent = [k for k in _REQUIRED if k not in rec or _missing(rec[k])]
    if absent:
        raise ManifestError(f"{where}: missing field(s) {absent}; every record needs {list(_REQUIRED)}.")
    path = Path(str(rec["path"])).expanduser()
    start = _seconds(where, "start", rec.get("start")) or 0.0
    end = _seconds(where, "end", rec.get("end"))
    if end is not None and end <= start:
        raise ManifestError(f"{where}: end ({end}) must be after start ({start}).")
    split = rec.get("split")
    return ManifestEntry(
        id=str(rec["id"]),
        # Absolute, so every consumer can open it whatever its working directory.
        path=path if path.is_absolute() else (root / path).absolute(),
        caption="" if _missing(rec["caption"]) else str(rec["caption"]),
        start=start,
        end=end,
        split=None if _missing(split) or split == "" else str(split),
        extra={k: v for k, v in rec.items() if k not in _KNOWN},
        listed_at=where,
        listed_path=str(rec["path"]),
    )


def _utf8(path: Path, n: int, raw: bytes) -> str:
    """Line `n` of `path` decoded as UTF-8 (a leading byte-order mark dropped), or a ManifestError
    naming the line and the byte."""
    try:
        return raw.decode("utf-8").lstrip("\ufeff") if n == 1 else raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(
            f"{path}:{n}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); manifests and lists are "
            "UTF-8 text. Convert the file, e.g. `iconv -f latin1 -t utf-8 IN > OUT` if it was saved as Latin-1."
        ) from None


# CSV columns read as text whatever they hold (ids such as "007", numeric-looking prompts).
_TEXT_COLUMNS = ("id", "path", "caption", "prompt", "split")


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The records of a JSONL or CSV manifest file, each with where it stands ("file:line").

    CSV line numbers are those a spreadsheet shows (the header is line 1); empty text cells are
    "", empty `start`/`end` cells NaN. Blank JSONL lines are skipped.

    Raises:
        ManifestError: a line that is not UTF-8 (named with its byte), not JSON or not a JSON
            object, or a CSV that cannot be parsed.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with path.open("rb") as f:  # find the line that is not UTF-8 before pandas reports a byte offset
            for n, raw in enumerate(f, start=1):
                _utf8(path, n, raw)
        try:
            frame = pd.read_csv(path, dtype=dict.fromkeys(_TEXT_COLUMNS, str), keep_default_na=False,
                                na_values={"start": [""], "end": [""]})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ManifestError(f"{path}: not a readable CSV manifest ({err}).") from err
        for i, rec in enumerate(frame.to_dict(orient="records")):
            yield f"{path}:{i + 2}", rec  # line numbers as a spreadsheet shows them (header is line 1)
        return
    for n, line in read_lines(path):
        yield f"{path}:{n}", parse_record(path, n, line)


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """The non-blank lines of a UTF-8 text file (a JSONL manifest, a list of prompts or of paths),
    stripped, each with its line number.

    Raises:
        ManifestError: the first line that is not UTF-8, named with its byte (a file in another
            encoding is refused whole: skipping its lines one by one would hide the cause).
    """
    path = Path(path)
    out = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            line = _utf8(path, n, raw).strip()
            if line:
                out.append((n, line))
    return out


def parse_record(path: str | Path, n: int, line: str) -> dict[str, Any]:
    """Line `n` of the JSONL file `path` as its JSON object.

    Raises:
        ManifestError: the line is not JSON, or not a JSON object.
    """
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}:{n}: not valid JSON ({err.msg}); each line must be one JSON object.") from None
    if not isinstance(rec, dict):
        raise ManifestError(f"{path}:{n}: each line must be a JSON object; got {type(rec).__name__}.")
    return rec


def resolve_listed(listed: str, base: Path) -> Path:
    """The file a path listed in a sample list or an evaluation set names: absolute as is; relative
    against `base` (the folder of the listing file), or against the current folder when only that
    one exists (lists written by hand from the project root). The file may not exist.

    (`load_manifest` resolves dataset paths against the manifest's folder only.)
    """
    path = Path(listed).expanduser()
    if path.is_absolute():
        return path
    beside = base / path
    return path if not beside.exists() and path.exists() else beside


def resolve_manifest_path(path: str | Path) -> Path:
    """A manifest file, or the manifest inside a dataset folder."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in MANIFEST_NAMES:
            if (p / name).is_file():
                return p / name
        raise ManifestError(f"{p}: folder has no {' or '.join(MANIFEST_NAMES)}; pass the manifest file itself.")
    if not p.is_file():
        raise ManifestError(f"{p}: no such manifest; make one with `avgen data synth --out DIR` or write a "
                            "JSONL/CSV file with id, path, caption columns.")
    if p.suffix.lower() not in (".jsonl", ".json", ".csv"):
        raise ManifestError(f"{p}: manifests are .jsonl or .csv files; got {p.suffix or 'no extension'}.")
    return p


def load_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read a JSONL or CSV manifest (or the manifest inside a dataset folder).

    Raises:
        ManifestError: missing file, unreadable record, missing field, bad times, duplicate id,
            or no records at all; the message names the file and line.
    """
    p = resolve_manifest_path(path)
    root = p.parent
    entries: list[ManifestEntry] = []
    seen: dict[str, str] = {}
    for where, rec in read_records(p):
        entry = _entry(where, rec, root)
        if entry.id in seen:
            raise ManifestError(f"{where}: duplicate id {entry.id!r} (first at {seen[entry.id]}); ids must be unique.")
        seen[entry.id] = where
        entries.append(entry)
    if not entries:
        raise ManifestError(f"{p}: the manifest has no records.")
    return entries


def save_manifest(entries: Iterable[ManifestEntry], path: str | Path) -> Path:
    """Write entries as JSONL (atomically); paths inside the manifest's folder are stored relative to it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(p, "".join(json.dumps(entry.to_record(p.parent)) + "\n" for entry in entries))

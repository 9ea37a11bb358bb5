"""Where a system's clips come from, and matching clips of several systems by prompt.

A system's samples are one of:

- a folder of clips, each with a JSON sidecar of the same stem holding "prompt" (or "caption"),
  which is what `avgen sample` writes;
- a folder holding ``manifest.jsonl`` (or ``samples.jsonl``);
- a manifest file: JSONL or CSV rows with "path" (relative to the manifest's folder) and "prompt"
  or "caption" (and optionally "id").

Every clip must lie inside the folder of its manifest or sample folder, after resolving ``..``
and symbolic links: a manifest cannot make the app copy (and later serve) files from elsewhere.

Clips are matched by prompt text (whitespace collapsed, case folded). When a system has several
clips of one prompt, the k-th clip of each system are matched with each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from avio import ManifestError, SidecarError, read_sidecar, sidecar_path
from avio.manifest import read_records

from .spec import SpecError

__all__ = ["SourceClip", "MatchedPrompt", "read_source", "match_prompts", "normalize_prompt", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".webm", ".mov", ".mkv", ".avi")
_MANIFEST_NAMES = ("manifest.jsonl", "samples.jsonl")
_MAX_PROMPT_CHARS = 5000


@dataclass(frozen=True)
class SourceClip:
    """One clip of a system: its file and the prompt it was made from."""

    path: Path
    prompt: str
    source_id: str


@dataclass(frozen=True)
class MatchedPrompt:
    """A prompt every system has a clip for: key (stable id), text, and {system: clip}."""

    key: str
    text: str
    clips: dict[str, SourceClip]


def normalize_prompt(text: str) -> str:
    """The form prompts are compared in: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def _inside(path: Path, root: Path, origin: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise SpecError(f"{origin}: the clip path {str(path)!r} leads outside {root}; every clip must lie "
                        "inside the folder of its manifest or sample folder")
    if not resolved.is_file():
        raise SpecError(f"{origin}: the clip {resolved} does not exist; fix the path or remove the row")
    return resolved


def _prompt_of(record: dict, origin: str) -> str:
    for key in ("prompt", "caption", "text"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            if len(value) > _MAX_PROMPT_CHARS:
                raise SpecError(f"{origin}: the prompt has {len(value)} characters; at most {_MAX_PROMPT_CHARS}")
            return value.strip()
    raise SpecError(f"{origin}: no prompt (a non-empty 'prompt' or 'caption' field)")


def _read_manifest(path: Path) -> list[SourceClip]:
    root = path.resolve().parent
    try:
        records = list(read_records(path))
    except ManifestError as err:
        raise SpecError(str(err)) from None
    if records and not any("path" in record for _, record in records):
        raise SpecError(f"{path}: a manifest needs a 'path' column (and 'prompt' or 'caption'); it has "
                        f"{list(records[0][1])}")
    clips = []
    for origin, record in records:
        raw = record.get("path")
        if not isinstance(raw, str) or not raw.strip():
            raise SpecError(f"{origin}: empty 'path'")
        clip_path = _inside(root / raw, root, origin)
        source_id = str(record.get("id") or Path(raw).stem)
        clips.append(SourceClip(clip_path, _prompt_of(record, origin), source_id))
    if not clips:
        raise SpecError(f"{path}: the manifest lists no clips")
    return clips


def _read_folder(folder: Path) -> list[SourceClip]:
    root = folder.resolve()
    for name in _MANIFEST_NAMES:
        if (root / name).is_file():
            return _read_manifest(root / name)
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise SpecError(f"{folder}: holds no clips ({', '.join(VIDEO_SUFFIXES)}) and no manifest.jsonl")
    clips = []
    for video in videos:
        video_path = _inside(video, root, str(folder))
        sidecar = sidecar_path(video)
        if not sidecar.is_file():
            raise SpecError(f"{video}: has no sidecar {sidecar.name} with its prompt; write one "
                            '({"prompt": "..."}) or list the clips in a manifest with a prompt column')
        _inside(sidecar, root, str(folder))
        try:
            record = read_sidecar(sidecar)
        except SidecarError as err:
            raise SpecError(str(err)) from None
        clips.append(SourceClip(video_path, _prompt_of(record, str(sidecar)), str(record.get("id") or video.stem)))
    return clips


def read_source(path: str | Path) -> list[SourceClip]:
    """The clips of one system, from a sample folder or a manifest (see the module docstring).

    Raises:
        SpecError: the path is missing, a clip lacks a prompt, or a clip path leaves its folder.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return _read_folder(p)
    if p.is_file():
        if p.suffix.lower() not in (".jsonl", ".json", ".csv"):
            raise SpecError(f"{p}: a manifest must be .jsonl or .csv (or give the folder of the clips)")
        return _read_manifest(p)
    raise SpecError(f"{p}: no such folder or manifest")


def _prompt_key(norm: str, occurrence: int) -> str:
    digest = hashlib.sha1(norm.encode()).hexdigest()[:10]
    return f"p{digest}" if occurrence == 0 else f"p{digest}-{occurrence}"


def match_prompts(sources: dict[str, list[SourceClip]]) -> tuple[list[MatchedPrompt], dict[str, int]]:
    """Match clips of all systems by prompt.

    Args:
        sources: {system name: its clips}.

    Returns:
        The prompts every system has a clip for (in the first system's order), and for each system
        the number of its clips left unmatched.
    """
    indexed: dict[str, dict[tuple[str, int], SourceClip]] = {}
    for system, clips in sources.items():
        seen: dict[str, int] = {}
        table: dict[tuple[str, int], SourceClip] = {}
        for clip in clips:
            norm = normalize_prompt(clip.prompt)
            k = seen.get(norm, 0)
            seen[norm] = k + 1
            table[(norm, k)] = clip
        indexed[system] = table
    names = list(sources)
    common = [key for key in indexed[names[0]] if all(key in indexed[n] for n in names[1:])]
    matched = [
        MatchedPrompt(_prompt_key(*key), indexed[names[0]][key].prompt, {n: indexed[n][key] for n in names})
        for key in common
    ]
    unmatched = {n: len(indexed[n]) - len(common) for n in names}
    return matched, unmatched

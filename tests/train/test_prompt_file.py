"""Prompt files for `avgen sample --prompts`: plain lines, or JSONL whatever the file is called."""

from __future__ import annotations

from pathlib import Path

import pytest

from av_model.sample.cli import _read_prompt_file


def _prompts(path: Path) -> tuple[list[str], list[str]]:
    listing = _read_prompt_file(path)
    return [it.prompt for it in listing.items], [it.id for it in listing.items]


def test_plain_lines_and_jsonl_by_content(tmp_path: Path) -> None:
    plain = tmp_path / "prompts.txt"
    plain.write_text("a red ball bounces\n\n  a beep  \n")
    assert _prompts(plain) == (["a red ball bounces", "a beep"], ["0000", "0001"])
    jsonl = tmp_path / "heldout.txt"  # JSON objects in a .txt file are still read as JSONL
    jsonl.write_text('{"id": "h-1", "caption": "a drum"}\n{"prompt": "a bell"}\n')
    assert _prompts(jsonl) == (["a drum", "a bell"], ["h-1", "0001"])


@pytest.mark.parametrize(("text", "message"), [
    ('{"id": 1, "caption": "a drum"}\n{"id": 2, "caption": \n', "prompts.jsonl:2: not valid JSON"),
    ('{"id": 1, "text": "a drum"}\n', "prompts.jsonl:1: no 'caption' or 'prompt'"),
    ('{"id": 1, "caption": "a drum"}\n[1, 2]\n', "prompts.jsonl:2: each line must be a JSON object"),
])
def test_malformed_jsonl_lines_are_bad_items_named_by_line(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "prompts.jsonl"
    bad.write_text(text)
    listing = _read_prompt_file(bad)
    assert len(listing.bad) == 1 and message in listing.bad[0].reason
    assert [it.prompt for it in listing.items] == (["a drum"] if "drum" in text and "text" not in text else [])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _read_prompt_file(tmp_path / "missing.jsonl")


def test_a_latin1_prompt_file_names_its_line(tmp_path: Path) -> None:
    latin = tmp_path / "prompts.txt"
    latin.write_bytes("a drum\nun caf\u00e9 bruyant\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"prompts.txt:2: not UTF-8 .*byte 0xe9.*iconv"):
        _read_prompt_file(latin)

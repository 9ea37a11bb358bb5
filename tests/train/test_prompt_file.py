"""Prompt files for `avgen sample --prompts`: plain lines, or JSONL whatever the file is called."""

from __future__ import annotations

from pathlib import Path

import pytest

from av_model.pipeline import _read_prompt_file


def test_plain_lines_and_jsonl_by_content(tmp_path: Path) -> None:
    plain = tmp_path / "prompts.txt"
    plain.write_text("a red ball bounces\n\n  a beep  \n")
    assert _read_prompt_file(plain) == (["a red ball bounces", "a beep"], None)
    jsonl = tmp_path / "heldout.txt"  # JSON objects in a .txt file are still read as JSONL
    jsonl.write_text('{"id": "h-1", "caption": "a drum"}\n{"prompt": "a bell"}\n')
    assert _read_prompt_file(jsonl) == (["a drum", "a bell"], ["h-1", "0001"])


@pytest.mark.parametrize(("text", "message"), [
    ('{"id": 1, "caption": "a drum"}\n{"id": 2, "caption": \n', "line 2 is not JSON"),
    ('{"id": 1, "text": "a drum"}\n', "line 1 has no 'caption' or 'prompt'"),
    ('{"id": 1, "caption": "a drum"}\n[1, 2]\n', "line 2 has no 'caption' or 'prompt'"),
])
def test_malformed_jsonl_says_which_line(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "prompts.jsonl"
    bad.write_text(text)
    with pytest.raises(ValueError, match=message):
        _read_prompt_file(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _read_prompt_file(tmp_path / "missing.jsonl")

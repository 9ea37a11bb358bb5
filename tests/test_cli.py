"""The `avgen` entry point lists every job and refuses unknown ones."""

from __future__ import annotations

import importlib

import pytest

from av_model import cli


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name}" in out


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-job"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_resolves(name: str) -> None:
    module_name, func_name = cli.COMMANDS[name][0].split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, func_name))

"""What the trainers' commands with subcommands share (`avgen codec`, `avgen vae`), without Lightning.

`run_subcommand` prints the usage, refuses an unknown subcommand and runs the chosen one under
`report_errors`: a bad input (a missing file, a refused config or checkpoint, a `ValueError`
saying what to change) ends in one message and an exit status, not a traceback; AVGEN_DEBUG=1
lets the traceback through. `avtrain.cli.run_cli` reports the errors of the LightningCLI trainers
the same way. `print_info` prints what an `info` subcommand describes, as JSON or as aligned lines.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["print_info", "report_errors", "run_subcommand"]

# What a bad input raises: avio's errors and the checkpoint and config errors are ValueErrors.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def report_errors(job: Callable[[], Any], name: str, *, errors: tuple[type[BaseException], ...] = INPUT_ERRORS,
                  status: int = 1, describe: Callable[[BaseException], object] = str) -> int:
    """Runs `job`; one of `errors` is printed as "<name>: <describe(error)>" and gives `status`.
    Returns what `job` returns when it is an int, else 0."""
    try:
        result = job()
    except errors as err:
        # The message says what to change; a traceback would bury it.
        if os.environ.get("AVGEN_DEBUG"):
            raise
        print(f"{name}: {describe(err)}\n(set AVGEN_DEBUG=1 for the traceback)", file=sys.stderr)
        return status
    return result if isinstance(result, int) else 0


def run_subcommand(argv: list[str], *, prog: str, usage: str, commands: Mapping[str, Callable[[list[str]], int]],
                   error_status: int = 1) -> int:
    """The entry point of `prog <subcommand> [options]`: no subcommand or -h/--help/help prints
    `usage` (status 0), an unknown one prints it to stderr (status 2), and a known one runs with the
    rest of `argv` under `report_errors` (a bad input gives `error_status`)."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: unknown command {name!r}.\n\n{usage}", file=sys.stderr)
        return 2
    return report_errors(lambda: commands[name](rest), f"{prog} {name}", status=error_status)


def print_info(info: Mapping[str, Any], *, as_json: bool) -> None:
    """`info` as indented JSON, or one "key: value" line per entry with the keys right-aligned."""
    if as_json:
        print(json.dumps(info, indent=2))
        return
    width = max(map(len, info), default=0)
    for key, value in info.items():
        print(f"{key:>{width}}: {value}")

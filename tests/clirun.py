"""`therapygym ARGS` for the CLI tests: in this process through `main()` as the console
script runs it (fast), or as a real subprocess (for what only a process shows: exit on a
signal, the console width, output streams). Importable from every test folder because
pytest puts the folder of `tests/conftest.py` on sys.path."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import NamedTuple
from unittest import mock

from therapygym.cli.app import main


class Ran(NamedTuple):
    code: int
    stdout: str
    stderr: str


def cli(*args: str) -> Ran:
    """Run the CLI; a traceback a user would see lands in `stderr` with exit code 1."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["therapygym", *args]),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            traceback.print_exc(file=stderr)
            code = 1
    return Ran(code, stdout.getvalue(), stderr.getvalue())


def subprocess_cli(
    *args: str, store: Path | None = None, columns: int = 250
) -> subprocess.CompletedProcess[str]:
    """`python -m therapygym ARGS [--store STORE]` in a child process, `columns` wide."""
    extra = ["--store", str(store)] if store is not None else []
    return subprocess.run(
        [sys.executable, "-m", "therapygym", *args, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": str(columns)},
    )

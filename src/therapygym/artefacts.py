"""Writing what therapygym produces (exports, reports, summaries, calibration and bench
files): owner-only, and whole or not at all.

Why owner-only: these files hold session transcripts and judge rationales, text that
reads like therapy notes; on a shared machine other accounts should not read them. The
run store and the response cache are created owner-only for the same reason (store.py,
models/cache.py).

Why atomic: a killed, failed or interrupted write must never leave a half-written file
where a reader (a script, the viewer, the next run) would take it for a whole one. Every
file is written to a temporary file beside its target and renamed onto it at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, created owner-only (mkstemp's 0600), renamed onto
    `path` when the block ends and removed if it raises. Write to the yielded path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """`atomic_path` for a folder: a temporary owner-only folder (mkdtemp's 0700) beside
    `path`, renamed onto it (which must be absent or an empty folder) at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL))
    try:
        yield tmp
        os.replace(tmp, path)  # rename(2) replaces an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path`, owner-only and atomically; returns `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path

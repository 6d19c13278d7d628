"""How a run was made, stored with it: package version, source revision, Python, platform.

A number read months later is only comparable with another if both were made by the same
code, rubric and configuration; the store keeps this next to the run (`runs show` prints
it). The revision is read from git when therapygym runs from a checkout (an editable
install); an installed wheel has none, and says so rather than guessing.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from therapygym import __version__


def _git(*args: str) -> str | None:
    """What git prints for `args` run in the package's folder, or None on any failure."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


@cache
def source_revision() -> str | None:
    """`git describe --always --dirty` of the checkout therapygym runs from, or None when
    it does not run from its own git checkout (an installed wheel, or no git)."""
    top = _git("rev-parse", "--show-toplevel")
    # only our own checkout counts, not some repository that happens to hold the venv
    if top is None or not (Path(top) / "src" / "therapygym" / "__init__.py").is_file():
        return None
    return _git("describe", "--always", "--dirty", "--abbrev=12")


def collect(**extra: Any) -> dict[str, Any]:
    """The provenance of a run being created now, with `extra` keys (the resolved config)."""
    return {
        "therapygym": __version__,
        "revision": source_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }

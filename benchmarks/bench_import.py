"""Start-up cost: `import therapygym` and `therapygym --help`, each in a fresh interpreter.

The registries import a backend, a judge or a probe family only when a name is looked up,
so neither command should load a heavy dependency. This prints the median wall time of
`--repeat` runs of each and which heavy modules (if any) each one imported.

`--run` also measures the start-up plus teardown of a run (issue 22, item 6): `therapygym
run` of one 2-turn session (the profile's authored opening, then one therapist call)
against the local server at 0 ms latency, each time with a fresh store and no cache, in a
fresh interpreter; the figure is the run's wall time minus the session's own `wall_s` as
stored, so it is what the command costs around the work: interpreter start, imports,
loading the profiles and models, recording the run, closing, and the summary it prints.

    .venv/bin/python benchmarks/bench_import.py --repeat 15 [--run]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from therapygym.testing.openai_server import server_process

HEAVY = ("torch", "transformers", "trl", "xllamacpp", "aiohttp", "pandas", "pyarrow", "scipy")

COMMANDS = {
    "import therapygym": [sys.executable, "-c", "import therapygym"],
    "therapygym --help": [sys.executable, "-m", "therapygym", "--help"],
}

# prints the heavy modules a command leaves in sys.modules (run through runpy, like -m)
PROBE = """
import runpy, sys
sys.argv = {argv!r}
try:
    {body}
except SystemExit:
    pass
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(",".join(heavy), file=sys.stderr)
"""


def wall(cmd: list[str], repeat: int) -> float:
    """Median seconds of `repeat` runs (after one warm-up run that fills the OS cache)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_modules(name: str) -> str:
    body = (
        "import therapygym"
        if name == "import therapygym"
        else "runpy.run_module('therapygym', run_name='__main__')"
    )
    argv = ["therapygym"] if name == "import therapygym" else ["therapygym", "--help"]
    code = PROBE.format(argv=argv, body=body, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--run", action="store_true", help="also time a one-session run's start-up + teardown"
    )
    args = parser.parse_args()
    print(f"{'command':<20} {'median s':>9}  heavy modules imported")
    for name, cmd in COMMANDS.items():
        print(f"{name:<20} {wall(cmd, args.repeat):>9.3f}  {heavy_modules(name) or 'none'}")
    if args.run:
        wall_s, overhead_s = run_overhead(args.repeat)
        print(f"{'therapygym run':<20} {wall_s:>9.3f}  (start-up + teardown: {overhead_s:.3f} s)")


def run_overhead(repeat: int) -> tuple[float, float]:
    """Median (wall, wall minus the session's stored wall_s) of `repeat` one-session runs,
    after one warm-up run that fills the OS cache."""
    server = [sys.executable, "-m", "therapygym.testing.openai_server", "--reply", "Go on."]
    walls, overheads = [], []
    with server_process(server) as url, tempfile.TemporaryDirectory() as tmp:
        spec = f"openai:fake-model?base_url={url}"
        for i in range(repeat + 1):
            store = Path(tmp) / f"run{i}.sqlite"
            cmd = [
                *(sys.executable, "-m", "therapygym", "run", "--no-cache", "--store", str(store)),
                *("--therapist", spec, "--patient-model", spec, "--max-turns", "2"),
                *("--patients", "ado-01-ethan", "--run-id", "startup"),
            ]
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            elapsed = time.perf_counter() - start
            with sqlite3.connect(store) as db:
                (session_s,) = db.execute("SELECT SUM(wall_s) FROM sessions").fetchone()
            if i:  # the first run only warms the OS cache
                walls.append(elapsed)
                overheads.append(elapsed - session_s)
    return statistics.median(walls), statistics.median(overheads)


if __name__ == "__main__":
    main()

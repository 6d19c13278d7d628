"""Start-up cost: `import therapygym` and `therapygym --help`, each in a fresh interpreter.

The registries import a backend, a judge or a probe family only when a name is looked up,
so neither command should load a heavy dependency. This prints the median wall time of
`--repeat` runs of each and which heavy modules (if any) each one imported.

    .venv/bin/python benchmarks/bench_import.py --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

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
    args = parser.parse_args()
    print(f"{'command':<20} {'median s':>9}  heavy modules imported")
    for name, cmd in COMMANDS.items():
        print(f"{name:<20} {wall(cmd, args.repeat):>9.3f}  {heavy_modules(name) or 'none'}")


if __name__ == "__main__":
    main()

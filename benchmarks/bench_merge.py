"""`runs merge` at scale: N judged sessions written as S shard stores, then merged, then
merged again (which must change nothing).

    .venv/bin/python benchmarks/bench_merge.py [--sessions 10000] [--shards 4]
    .venv/bin/python benchmarks/bench_merge.py --sessions 1000            # a smoke run

The shard stores are written through the store's own code (`RunStore.ensure_run` with
the shard's record, `save_sessions` and `save_scores`), with bench_store.py's synthetic
run: 10 turns of about 60 words, a CTRS unit (11 items) and a safety unit per finished
session, raw judge output of realistic length, 1% failed sessions; each session goes to
the shard `Shard.holds` assigns it. Each merge then runs in a fresh Python process
(`merge.merge_stores`, what `therapygym runs merge` calls), so its peak RSS (`ru_maxrss`)
is the merge's alone; the baseline is that process's peak after its imports. Wall times on
a shared 2-core machine are indicative. Results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MB = 1024 * 1024
BATCH = 500  # sessions per write transaction while the shard stores are made


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_shards(sessions: int, shards: int, folder: Path) -> list[Path]:
    """The shard stores of one synthetic judged run of `sessions` sessions."""
    from bench_store import RUN_ID, Synth

    from therapygym.shards import Shard
    from therapygym.store import RunStore

    synth = Synth.load()
    parts = [Shard(k, shards) for k in range(shards)]
    paths = [folder / f"shard-{k}.sqlite" for k in range(shards)]
    stores = [RunStore(path) for path in paths]
    for part, store in zip(parts, stores, strict=True):
        store.ensure_run(RUN_ID, {**synth.run_config(sessions), "shard": str(part)})
    for start in range(0, sessions, BATCH):
        batch = [synth.transcript(k) for k in range(start, min(start + BATCH, sessions))]
        for part, store in zip(parts, stores, strict=True):
            mine = [t for t in batch if part.holds(t.session_id)]
            store.save_sessions(mine)
            for t in mine:
                if t.status.value != "failed":
                    for unit in synth.score_units(t):
                        store.save_scores(unit)
    for store in stores:
        store.close()
    return paths


def child(inputs: list[str], output: str) -> None:
    """One merge, measured: a JSON line."""
    from therapygym.merge import merge_stores

    baseline = peak_mb()
    t0 = time.perf_counter()
    result = merge_stores(inputs, output)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "baseline_mb": baseline, "peak_mb": peak_mb(),
                      "counts": dict(result.counts), "integrity": result.integrity}))  # fmt: skip


def measure(inputs: list[Path], output: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(output), *map(str, inputs)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[1:], args.child[0])
        return
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        inputs = write_shards(args.sessions, args.shards, folder)
        made = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in inputs) / MB
        print(f"{args.sessions} sessions in {args.shards} shard stores ({size:.0f} MB) "
              f"written in {made:.1f} s", flush=True)  # fmt: skip
        output = folder / "merged.sqlite"
        for name in ("merge", "merge again"):
            row = measure(inputs, output)
            counts = ", ".join(f"{v} {k}" for k, v in sorted(row["counts"].items()))
            print(
                f"{name}: {row['wall_s']:.1f} s ({args.sessions / row['wall_s']:.0f} sessions/s), "
                f"peak RSS {row['peak_mb']:.0f} MB ({row['peak_mb'] - row['baseline_mb']:.0f} MB "
                f"above the {row['baseline_mb']:.0f} MB after imports); {counts}; "
                f"integrity {row['integrity']}",
                flush=True,
            )
        print(f"merged store {output.stat().st_size / MB:.0f} MB")


if __name__ == "__main__":
    main()

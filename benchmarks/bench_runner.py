"""Runner throughput: sessions per minute against the local server, as a ratio to the
latency-bound ideal.

    .venv/bin/python benchmarks/bench_runner.py [--latency-ms 100] [--levels 1,8,64,256]
                                                [--rounds 10]

Both the patient (LLM simulator) and the therapist (prompted LLM) call the local
OpenAI-compatible server, which answers every call after `latency_ms`; the server runs in
its own process. A 10-turn session makes 9 model calls (the patient's first line is the
profile's authored opening), one after another, so the ideal is
concurrency x 60 / (9 x latency) sessions per minute. Sessions go through the real runner
and store (no response cache, so every call reaches the server).

Each level runs `rounds` sessions per slot of concurrency. Opening one connection per slot
and the first, fully synchronised wave are a fixed cost that more rounds amortise: 10
rounds (about 9 s per level) is the measurement docs/benchmarks.md reports.

Client CPU per call is this process's own time (`time.process_time`); server CPU per call
is the server process's, read from /proc (Linux only; "-" elsewhere). Both are robust to
other load on the machine, where the ratio is not: the two processes share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from therapygym.config import RunPlan
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import run_plan
from therapygym.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
from bench_models import local_server


def server_cpu_s() -> float | None:
    """CPU seconds (user + system) the local server has used so far, from /proc; None where
    there is no /proc. The server is this process's only child."""
    me = os.getpid()
    try:
        (pid,) = Path(f"/proc/{me}/task/{me}/children").read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def level(base_url: str, concurrency: int, rounds: int, latency_s: float) -> dict[str, Any]:
    # Exactly `rounds` full waves of `concurrency` sessions: a half-full last wave would
    # measure the tail, not the runner.
    n_profiles = math.gcd(concurrency, 32)
    profiles = load_profiles()[:n_profiles]
    samples = concurrency * rounds // n_profiles
    spec = f"openai:fake-model?base_url={base_url}&concurrency={concurrency}"
    plan = RunPlan(
        run_id=f"bench-{concurrency}",
        therapists=(spec,),
        patient_model=spec,
        profiles=tuple(f"{p.id}@{p.version}" for p in profiles),
        samples=samples,
        session=SessionConfig(max_turns=10),
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "store.sqlite")
        load = os.getloadavg()[0]  # before the level: what else was running
        server0 = server_cpu_s()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = await run_plan(plan, profiles, store, cache=None, concurrency=concurrency)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server1 = server_cpu_s()
        calls = result.usage.total().calls
    done = result.completed
    per_min = done / wall * 60
    calls_per_session = calls / done
    ideal = concurrency * 60 / (calls_per_session * latency_s)
    return {
        "concurrency": concurrency,
        "sessions": done,
        "failed": result.failed,
        "calls_per_session": calls_per_session,
        "wall_s": wall,
        "sessions_per_min": per_min,
        "ideal_sessions_per_min": ideal,
        "ratio_to_ideal": per_min / ideal,
        "cpu_us_per_call": cpu / calls * 1e6,
        "server_cpu_us_per_call": (
            None if server0 is None or server1 is None else (server1 - server0) / calls * 1e6
        ),
        "load_1min_before": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--levels", default="1,8,64,256")
    parser.add_argument("--rounds", type=int, default=10, help="sessions per slot of concurrency")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with local_server(args.latency_ms) as url:
        for c in (int(x) for x in args.levels.split(",")):
            rows.append(asyncio.run(level(url, c, args.rounds, args.latency_ms / 1000)))
    print(
        "| concurrency | sessions | sessions/min | ideal | ratio | client CPU µs/call "
        "| server CPU µs/call | load before |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        server = r["server_cpu_us_per_call"]
        print(
            f"| {r['concurrency']} | {r['sessions']} | {r['sessions_per_min']:.0f} | "
            f"{r['ideal_sessions_per_min']:.0f} | {r['ratio_to_ideal']:.3f} | "
            f"{r['cpu_us_per_call']:.0f} | {'-' if server is None else f'{server:.0f}'} | "
            f"{r['load_1min_before']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

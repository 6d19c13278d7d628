"""`patients generate` throughput: accepted profiles per minute against the local server.

    .venv/bin/python benchmarks/generate_profiles.py [--n 200] [--latency-ms 100]
                                                     [--concurrency 8]

The local OpenAI-compatible server runs in its own process (this script with --serve),
answers every request after `latency_ms` with a valid profile for the schema it was sent
(`therapygym.testing.schema_replies`), so each sample is one round trip and the ideal is
concurrency x 60 / latency profiles per minute. The generation is the real one (prompt,
schema, validation, near-duplicate check against the library and every accepted profile,
atomic writes, the journal), into a temporary folder. What the number leaves out is the
model's own time: a hosted model writing a 700-token profile takes seconds, not 100 ms,
so against one, profiles per minute ~ concurrency x 60 / (its seconds per profile).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from therapygym.testing.openai_server import server_process


def serve(latency_ms: float) -> None:
    """The server process: print READY <url>, serve until SIGTERM."""
    from therapygym.testing.openai_server import FakeOpenAIServer
    from therapygym.testing.schema_replies import schema_replier

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    with FakeOpenAIServer(schema_replier(), latency_s=latency_ms / 1000) as server:
        print(f"READY {server.base_url}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


async def measure(
    base_url: str, n: int, concurrency: int, latency_s: float
) -> dict[str, float | None]:
    from therapygym.patients.generate import GenerationPlan, generate
    from therapygym.patients.library import load_profiles

    library = load_profiles()
    spec = f"openai:fake-model?base_url={base_url}&concurrency={concurrency}"
    plan = GenerationPlan(n=n, model=spec, seeds=tuple(f"{p.id}@{p.version}" for p in library))
    with tempfile.TemporaryDirectory() as tmp:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = await generate(plan, library, Path(tmp) / "gen", concurrency=concurrency)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "n": n,
        "concurrency": concurrency,
        "accepted": result.accepted,
        "wall_s": round(wall, 2),
        "client_cpu_s": round(cpu, 2),
        "per_minute": round(result.accepted * 60 / wall, 1),
        "ideal_per_minute": round(concurrency * 60 / latency_s, 1) if latency_s else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency_ms)
        return
    command = [sys.executable, __file__, "--serve", "--latency-ms", str(args.latency_ms)]
    with server_process(command) as url:
        found = asyncio.run(measure(url, args.n, args.concurrency, args.latency_ms / 1000))
    print(json.dumps({"latency_ms": args.latency_ms, **found}))


if __name__ == "__main__":
    main()

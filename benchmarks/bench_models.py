"""Model-layer benchmarks: overhead, throughput against a latency-bound ideal, and the
embedded model's tokens per second.

    .venv/bin/python benchmarks/bench_models.py [--quick] [--no-embedded] [--json out.json]

The OpenAI-compatible server runs in a separate process (so its CPU is not the client's);
CPU time per call is the client process's own (user + system) divided by the calls.
The overhead table compares the model layer with the official `openai` client (which the
layer used until it moved to aiohttp directly: that comparison is the evidence for the
move) and with a bare aiohttp post, the floor for any Python client. Results go in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai

from therapygym.models import ResponseCache, load_model
from therapygym.testing.openai_server import server_process


def local_server(latency_ms: float) -> contextlib.AbstractContextManager[str]:
    """The local OpenAI-compatible server in its own process; its base URL."""
    return server_process(
        [
            sys.executable,
            "-m",
            "therapygym.testing.openai_server",
            "--latency-ms",
            str(latency_ms),
            "--reply",
            "A short scripted reply of about ten words for the benchmark.",
        ]
    )


def messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a CBT therapist."},
        {"role": "user", "content": f"Message number {i}: I have been feeling low lately."},
    ]


async def measure(
    n: int, concurrency: int, call: Callable[[int], Awaitable[Any]]
) -> dict[str, float]:
    """Run `n` calls with at most `concurrency` in flight; wall and client CPU time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await call(i)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"calls": n, "wall_s": wall, "calls_per_s": n / wall, "cpu_us_per_call": cpu / n * 1e6}


async def overhead(base_url: str, n: int) -> dict[str, dict[str, float]]:
    """Sequential calls at 0 ms server latency: the raw clients vs the model layer."""
    # The official client with its aiohttp transport (its fastest under concurrency).
    raw = openai.AsyncOpenAI(
        base_url=base_url,
        api_key="unused",
        max_retries=0,
        http_client=openai.DefaultAioHttpClient(),
    )

    async def raw_create(i: int) -> None:
        await raw.chat.completions.create(model="fake-model", messages=messages(i), max_tokens=64)

    async def raw_post(i: int) -> None:
        body = {"model": "fake-model", "messages": messages(i), "max_tokens": 64}
        await raw.post("/chat/completions", body=body, cast_to=dict[str, Any])

    bare = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def bare_post(i: int) -> None:
        body = {"model": "fake-model", "messages": messages(i), "max_tokens": 64}
        async with bare.post(f"{base_url}/chat/completions", json=body) as resp:
            json.loads(await resp.read())

    spec = f"openai:fake-model?base_url={base_url}"
    plain = load_model(spec)
    with tempfile.TemporaryDirectory() as tmp:
        cached = load_model(spec, cache=ResponseCache(Path(tmp) / "c.sqlite"))
        results = {}
        for _ in range(2):  # the first pass warms connections and imports
            results["raw openai client, chat.completions.create"] = await measure(n, 1, raw_create)
            results["raw openai client, post (what the layer used)"] = await measure(n, 1, raw_post)
            results["bare aiohttp post + json.loads"] = await measure(n, 1, bare_post)
            results["therapygym, no cache"] = await measure(
                n, 1, lambda i: plain.chat(messages(i), max_tokens=64)
            )
        results["therapygym, cache miss + write"] = await measure(
            n, 1, lambda i: cached.chat(messages(i), max_tokens=64)
        )
        results["therapygym, cache hit"] = await measure(
            n, 1, lambda i: cached.chat(messages(i), max_tokens=64)
        )
        await cached.aclose()
    await plain.aclose()
    await raw.close()
    await bare.close()
    return results


async def throughput(
    base_url: str, latency_s: float, levels: list[int], rounds: int
) -> list[dict[str, float]]:
    """Calls per second at each concurrency, against the ideal concurrency / latency."""
    rows = []
    for c in levels:
        model = load_model(f"openai:fake-model?base_url={base_url}&concurrency={c}")
        await model.chat(messages(-1))  # warm a connection
        r = await measure(c * rounds, c, lambda i, m=model: m.chat(messages(i), max_tokens=64))
        ideal = c / latency_s
        rows.append(
            {
                "concurrency": c,
                **r,
                "ideal_calls_per_s": ideal,
                "ratio_to_ideal": r["calls_per_s"] / ideal,
            }
        )
        await model.aclose()
    return rows


async def embedded(max_tokens: int, repeats: int) -> list[dict[str, float]]:
    """Generated tokens per second of local:smollm2, one request at a time and 4 at once."""
    model = load_model("local:smollm2")
    await model.chat(messages(-1), max_tokens=4)  # load the model outside the timing
    rows = []
    for parallel in (1, 4):
        base = 10_000 * parallel  # distinct prompts: nothing is served from llama.cpp's cache
        replies = []

        async def call(i: int, base: int = base, replies: list[Any] = replies) -> None:
            replies.append(
                await model.chat(messages(base + i), max_tokens=max_tokens, temperature=0.7)
            )

        r = await measure(repeats * parallel, parallel, call)
        tokens = sum(reply.completion_tokens for reply in replies)
        rows.append(
            {
                "parallel_requests": parallel,
                "completion_tokens": tokens,
                "wall_s": r["wall_s"],
                "tokens_per_s": tokens / r["wall_s"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument(
        "--no-embedded", action="store_true", help="skip the embedded model (local:smollm2)"
    )
    parser.add_argument("--levels", default="1,8,64", help="concurrency levels at 100 ms")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    n, rounds, repeats = (200, 5, 2) if args.quick else (2000, 20, 4)

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    with local_server(0) as url:
        results["overhead_0ms"] = asyncio.run(overhead(url, n))
    with local_server(100) as url:
        results["throughput_100ms"] = asyncio.run(throughput(url, 0.1, levels, rounds))
    if not args.no_embedded:
        results["embedded_tokens_per_s"] = asyncio.run(embedded(128, repeats))

    print("\n## Overhead at 0 ms server latency (sequential)\n")
    print("| client | calls/s | client CPU µs/call |\n|---|---:|---:|")
    for name, r in results["overhead_0ms"].items():
        print(f"| {name} | {r['calls_per_s']:.0f} | {r['cpu_us_per_call']:.0f} |")
    print("\n## Throughput at 100 ms server latency\n")
    print("| concurrency | calls | calls/s | ideal | ratio |\n|---:|---:|---:|---:|---:|")
    for r in results["throughput_100ms"]:
        print(
            f"| {r['concurrency']} | {r['calls']} | {r['calls_per_s']:.1f} | "
            f"{r['ideal_calls_per_s']:.0f} | {r['ratio_to_ideal']:.3f} |"
        )
    print("\n## Embedded model (local:smollm2)\n")
    print("| parallel requests | tokens | wall s | tokens/s |\n|---:|---:|---:|---:|")
    for r in results.get("embedded_tokens_per_s", []):
        print(
            f"| {r['parallel_requests']} | {r['completion_tokens']} | {r['wall_s']:.1f} | "
            f"{r['tokens_per_s']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

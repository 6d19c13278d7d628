"""Where the demo's judging time goes: prompt tokens processed and reused, tokens decoded,
and wall time.

    .venv/bin/python benchmarks/bench_demo_judging.py --store results/therapygym.sqlite \\
        [--run-id demo-3] [--judge-concurrency 1] [--no-examples] [--sessions N] \\
        [--speculative ngram-simple [--draft-max 16 --ngram-n 3 --ngram-m 16]] \\
        [--kv-cache q8_0] [--json calls.json]

Judges the run's finished sessions (the first N with `--sessions`) with the demo's judging
plan (`therapygym.demo`) through the real `judge_run` (its unit order and concurrency), on a
copy of the store and without the response cache, so every unit reaches the embedded model.
Each llama.cpp call's own timings are recorded: prompt tokens processed, prompt tokens found
in the slot's cache, tokens decoded (and, with `--speculative`, drafted and accepted), and
the milliseconds of each phase; `--json` keeps every call's timings and answer, so two
settings' answers can be compared. `--speculative` and `--kv-cache` set llama.cpp's own
server options (self-speculative decoding, the KV cache's type) on every server this
process starts: the settings docs/benchmarks.md measured and did not adopt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import therapygym.models.llamacpp as llamacpp
from therapygym.demo import DEMO_RUN_ID, demo_config
from therapygym.runner import judge_run
from therapygym.store import RunStore


def instrument(calls: list[dict[str, Any]]) -> None:
    """Record llama.cpp's own timings of every call (its reply carries them), and its answer."""
    generate = llamacpp.LlamaCppModel._generate

    def timed(self: llamacpp.LlamaCppModel, body: dict[str, Any]) -> dict[str, Any]:
        result = generate(self, body)
        answer = result["choices"][0]["message"].get("content") if "choices" in result else None
        calls.append({**(result.get("timings") or {}), "answer": answer})
        return result

    llamacpp.LlamaCppModel._generate = timed  # type: ignore[method-assign]


def server_options(args: argparse.Namespace) -> None:
    """Start every llama.cpp server of this process with `--speculative` / `--kv-cache`."""
    import xllamacpp

    plain = xllamacpp.CommonParams

    def params() -> Any:
        made = plain()
        if args.speculative:
            kind = "COMMON_SPECULATIVE_TYPE_" + args.speculative.upper().replace("-", "_")
            made.speculative.types = [getattr(xllamacpp.common_speculative_type, kind)]
            made.speculative.draft.n_max = args.draft_max
            for ngram in (made.speculative.ngram_simple, made.speculative.ngram_map_k):
                ngram.size_n, ngram.size_m = args.ngram_n, args.ngram_m
        if args.kv_cache:
            kind = getattr(xllamacpp.ggml_type, "GGML_TYPE_" + args.kv_cache.upper())
            made.cache_type_k = made.cache_type_v = kind
        return made

    xllamacpp.CommonParams = params


async def judge(store_path: Path, run_id: str, concurrency: int, examples: bool) -> Any:
    plan = demo_config().judge.model_copy(update={"examples": examples})
    store = RunStore(store_path)
    try:
        return await judge_run(store, run_id, plan, cache=None, concurrency=concurrency)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("results/therapygym.sqlite"))
    parser.add_argument("--run-id", default=DEMO_RUN_ID)
    parser.add_argument("--judge-concurrency", type=int, default=demo_config().judge_concurrency)
    parser.add_argument("--no-examples", action="store_true")
    parser.add_argument("--sessions", type=int, help="judge only the run's first N sessions")
    parser.add_argument("--speculative", choices=("ngram-simple", "ngram-map-k"))
    parser.add_argument("--draft-max", type=int, default=16)
    parser.add_argument("--ngram-n", type=int, default=3, help="tokens looked up")
    parser.add_argument("--ngram-m", type=int, default=16, help="tokens drafted per match")
    parser.add_argument("--kv-cache", choices=("f16", "q8_0"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    calls: list[dict[str, Any]] = []
    instrument(calls)
    server_options(args)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store.sqlite"
        with sqlite3.connect(args.store) as source, sqlite3.connect(copy) as target:
            source.backup(target)  # sessions and all: the sqlite backup API, WAL included
            # the other sessions keep their scores, so judge_run leaves them be
            target.execute(
                "DELETE FROM scores WHERE session_id IN (SELECT session_id FROM sessions "
                "WHERE run_id = ? ORDER BY session_id LIMIT ?)",
                (args.run_id, -1 if args.sessions is None else args.sessions),
            )
        started = time.perf_counter()
        result = asyncio.run(
            judge(copy, args.run_id, args.judge_concurrency, examples=not args.no_examples)
        )
        wall = time.perf_counter() - started
    row = {
        "judge_concurrency": args.judge_concurrency,
        "examples": not args.no_examples,
        "units": result.judged + result.failed,
        "failed": result.failed,
        "calls": len(calls),
        "wall_s": round(wall, 1),
        "prompt_tokens_processed": sum(c.get("prompt_n", 0) for c in calls),
        "prompt_tokens_reused": sum(c.get("cache_n", 0) for c in calls),
        "prompt_s": round(sum(c.get("prompt_ms", 0) for c in calls) / 1000, 1),
        "tokens_decoded": sum(c.get("predicted_n", 0) for c in calls),
        "decode_s": round(sum(c.get("predicted_ms", 0) for c in calls) / 1000, 1),
        "drafted": sum(c.get("draft_n", 0) for c in calls),
        "accepted": sum(c.get("draft_n_accepted", 0) for c in calls),
    }
    print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps({"summary": row, "calls": calls}, indent=2))


if __name__ == "__main__":
    main()

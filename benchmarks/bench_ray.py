"""`eval --ray` on one machine: one evaluation as 4 Ray shards against one process, wall
time, and the merged store checked equal to the one-process store.

    .venv/bin/python benchmarks/bench_ray.py [--latency-ms 100] [--profiles 24]
        [--samples 2] [--max-turns 6] [--shards 4] [--concurrency 16] [--num-cpus 2]
        [--shard-cpus 1]

The local OpenAI-compatible server runs in its own process and answers every call after
`latency_ms`: judge calls (structured output) with a valid instance of their schema, the
others with a line that depends on the conversation (tests/judges/scripted.py), so
each session's text is fixed by what was said and a shard that mixed sessions up would
show in the comparison. The patient and one therapist are LLMs on that server; the other
therapist is the rule-based baseline; CTRS and safety are judged. No response cache:
every call reaches the server.

Measured, in this order, on one run id (so the session ids are the same):
- one process, `evaluate()`, at `--concurrency` sessions (and judgements) in flight;
- one process at shards x concurrency in flight (what the shards have in flight together);
- Ray started on this machine (`ray.init(num_cpus=...)`), timed on its own;
- `evaluate_on_ray` with `--shards` tasks at `--concurrency` each, `--shard-cpus` CPUs
  reserved for each (at 1 on 2 CPUs, two shards run at a time): worker start, the
  shards, bringing each store back and merging it, and the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from therapygym.config import EvalConfig, RunSection
from therapygym.judges.plan import JudgePlan
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import EvalResult, evaluate
from therapygym.store import RunStore
from therapygym.testing.openai_server import server_process

RUN_ID = "bench-ray"
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "judges"))


def serve(latency_ms: float) -> None:
    """The server process: serve until SIGTERM, after printing READY <base url>."""
    from scripted import conversation_replier  # tests/judges: the tests' scripted replies

    from therapygym.testing.openai_server import FakeOpenAIServer

    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    with FakeOpenAIServer(conversation_replier(), latency_s=latency_ms / 1000) as server:
        print(f"READY {server.base_url}", flush=True)
        signal.sigwait(stop)


def config(models: Path, args: argparse.Namespace, **kw: Any) -> EvalConfig:
    profiles = [p.id for p in load_profiles()[: args.profiles]]
    return EvalConfig(
        run_id=RUN_ID,
        run=RunSection(
            therapists=("bot", "rule-based"),
            patient_model="bot",
            patients=",".join(profiles),
            samples=args.samples,
            session=SessionConfig(max_turns=args.max_turns),
        ),
        judge=JudgePlan(judges=("bot",), rubrics=("ctrs", "safety")),
        models_file=models,
        no_cache=True,
        **kw,
    )


def contents(path: Path) -> dict[str, Any]:
    """A stored run without what depends on when a call was answered: the run's config,
    each session's status and turns, each score's result and error."""
    store = RunStore(path, read_only=True)
    try:
        sessions = {
            t.session_id: (t.status, [(u.speaker, u.text) for u in t.turns])
            for t in store.sessions(RUN_ID)
        }
        scores = {r.score_id: (r.result, r.error) for r in store.scores(RUN_ID)}
        return {"config": store.run(RUN_ID).config, "sessions": sessions, "scores": scores}
    finally:
        store.close()


def did(result: EvalResult) -> str:
    assert result.run is not None and result.judging is not None
    failed = result.run.failed + result.judging.failed
    return f"{result.run.completed} sessions, {result.judging.judged} units, {failed} failed"


def load() -> str:
    return os.popen("uptime").read().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--profiles", type=int, default=24)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--shard-cpus", type=float, default=1.0)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency_ms)
        return

    import ray

    from therapygym.ray_eval import evaluate_on_ray

    print(f"load before: {load()}")
    rows: list[tuple[str, float, str]] = []
    with (
        server_process(
            [sys.executable, __file__, "--serve", "--latency-ms", str(args.latency_ms)]
        ) as base_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        models = folder / "models.yaml"
        models.write_text(
            "models:\n  bot:\n    backend: openai\n    model: fake-model\n"
            f"    base_url: {base_url}\n    concurrency: 1024\n"
        )
        in_flight = args.shards * args.concurrency
        for concurrency in dict.fromkeys((args.concurrency, in_flight)):
            store = folder / f"one-{concurrency}.sqlite"
            one = config(models, args, store=store, concurrency=concurrency)
            start = time.perf_counter()
            done = asyncio.run(evaluate(one))
            wall = time.perf_counter() - start
            rows.append((f"one process, concurrency {concurrency}", wall, did(done)))
        reference = contents(folder / f"one-{args.concurrency}.sqlite")

        start = time.perf_counter()
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
        rows.append((f"ray.init(num_cpus={args.num_cpus})", time.perf_counter() - start, ""))
        try:
            sharded = config(
                models, args, store=folder / "ray.sqlite", concurrency=args.concurrency
            )
            start = time.perf_counter()
            on_ray = evaluate_on_ray(
                sharded, shards=args.shards, work_dir=folder / "work", shard_cpus=args.shard_cpus
            )
            wall = time.perf_counter() - start
        finally:
            ray.shutdown()
        result = on_ray.evaluation
        assert not on_ray.failed, on_ray.failure_line()
        each = f"concurrency {args.concurrency} and {args.shard_cpus:g} CPU each"
        rows.append((f"Ray, {args.shards} shards, {each}", wall, did(result)))
        merged = contents(folder / "ray.sqlite")
        equal = merged == reference
        size = (folder / "ray.sqlite").stat().st_size
        calls = result.usage.total().calls
    print(f"load after: {load()}")
    sessions = len(reference["sessions"])
    print(
        f"\n{sessions} sessions, {len(reference['scores'])} scores, {calls} model calls; latency "
        f"{args.latency_ms:g} ms; merged store {size / 1e6:.2f} MB ({size / sessions / 1e3:.1f} kB "
        "a session)"
    )
    print("| what | wall s | did |\n|---|---:|---|")
    for what, seconds, tally in rows:
        print(f"| {what} | {seconds:.2f} | {tally} |")
    print(f"\nmerged Ray store equal to the one-process store: {equal}")
    if not equal:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

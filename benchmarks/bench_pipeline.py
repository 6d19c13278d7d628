"""Pipelined `eval` against `run` then `judge`: wall time against the bound
max(session phase, judge phase).

    .venv/bin/python benchmarks/bench_pipeline.py [--sessions 256] [--concurrency 32]
        [--judge-concurrency 32] [--session-latency-ms 100] [--judge-latency-ms 300]
        [--rubrics ctrs]

Two local servers, each in its own process: the patient and the therapist call one
(`python -m therapygym.testing.openai_server --latency-ms 100`), the judge the other
(300 ms). The judge server is the same `FakeOpenAIServer`, started by this script with the
tests' scripted judge (tests/judges/scripted.py), because a judge needs a valid instance
of each rubric's JSON schema where the module's `--reply` gives fixed text.

The same evaluation (10-turn sessions, judged on `--rubrics`, one call per unit, no
response cache) runs twice, each into a fresh store:
- phased: `evaluate` of the run section alone (the session phase), then of the judge
  section alone (the judge phase), as `therapygym run` and then `therapygym judge` do;
- pipelined: `evaluate` of both, as `therapygym eval` does now.
Each `evaluate` that judges ends with the summary (bootstrap CIs), timed apart on the
same store and taken off, so the phases compare the servers' work. The bound for the
pipelined run is max(session phase, judge phase); it cannot be reached exactly, as the
last sessions' judging starts when they end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from therapygym.config import EvalConfig, RunSection
from therapygym.judges.plan import JudgePlan
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import EvalResult, evaluate
from therapygym.store import RunStore
from therapygym.summary import summarise
from therapygym.testing.openai_server import server_process

ROOT = Path(__file__).resolve().parents[1]


def serve_judge(latency_ms: float) -> None:
    """The judge server (`--serve-judge`): schema-valid judge answers after `latency_ms`."""
    sys.path.insert(0, str(ROOT / "tests" / "judges"))
    from scripted import conversation_replier

    from therapygym.testing.openai_server import FakeOpenAIServer

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with FakeOpenAIServer(conversation_replier(), latency_s=latency_ms / 1000) as judge:
        print(f"READY {judge.base_url}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


def config(
    args: argparse.Namespace, talk: str, judge: str, store: Path, *, run: bool, judging: bool
) -> EvalConfig:
    profiles = load_profiles()[:32]
    return EvalConfig(
        run_id="bench-pipeline",
        run=RunSection(
            therapists=(talk,),
            patient_model=talk,
            patients=",".join(p.id for p in profiles),
            samples=args.sessions // len(profiles),
            session=SessionConfig(max_turns=10),
        )
        if run
        else None,
        judge=JudgePlan(judges=(judge,), rubrics=tuple(args.rubrics.split(",")))
        if judging
        else None,
        concurrency=args.concurrency,
        judge_concurrency=args.judge_concurrency,
        store=store,
        no_cache=True,
    )


async def timed(cfg: EvalConfig) -> tuple[EvalResult, float, float, float]:
    """`evaluate(cfg)`: its result, its wall time, this process's CPU time, and the wall
    time of its summary (0 when it does not judge), timed again on the store it leaves."""
    started, cpu = time.perf_counter(), time.process_time()
    result = await evaluate(cfg)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if result.judging is None:
        return result, wall, cpu, 0.0
    store = RunStore(cfg.store)
    started = time.perf_counter()
    summarise(
        store, cfg.run_id or "", cfg.aggregation, judges={s for s, *_ in result.judging.judges}
    )
    summary = time.perf_counter() - started
    store.close()
    return result, wall, cpu, summary


@contextmanager
def save_times() -> Iterator[dict[str, list[float]]]:
    """When each session and each judgement unit is saved, by wrapping the store's two
    save methods for the time of the block: how far the sessions of the pipelined run got
    slowed by the judging beside them, and how long the judging went on after them."""
    times: dict[str, list[float]] = {"sessions": [], "scores": []}
    save_session, save_scores = RunStore.save_session, RunStore.save_scores

    def session(store: RunStore, transcript: Any) -> None:
        save_session(store, transcript)
        times["sessions"].append(time.perf_counter())

    def scores(store: RunStore, records: Any) -> None:
        save_scores(store, records)
        times["scores"].append(time.perf_counter())

    RunStore.save_session, RunStore.save_scores = session, scores  # type: ignore[method-assign]
    try:
        yield times
    finally:
        RunStore.save_session, RunStore.save_scores = save_session, save_scores  # type: ignore[method-assign]


def calls(result: EvalResult, role: str) -> int:
    return result.usage.roles[role].calls if role in result.usage.roles else 0


async def measure(args: argparse.Namespace, talk: str, judge: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        phased, piped = Path(tmp) / "phased.sqlite", Path(tmp) / "piped.sqlite"
        ran, run_wall, run_cpu, _ = await timed(
            config(args, talk, judge, phased, run=True, judging=False)
        )
        judged, judge_wall, judge_cpu, judge_summary = await timed(
            config(args, talk, judge, phased, run=False, judging=True)
        )
        pipelined = config(args, talk, judge, piped, run=True, judging=True)
        with save_times() as saved:
            started = time.perf_counter()
            both, wall, cpu, summary = await timed(pipelined)
    assert ran.run is not None and judged.judging is not None
    assert both.run is not None and both.judging is not None
    session_phase, judge_phase = run_wall, judge_wall - judge_summary
    bound = max(session_phase, judge_phase)
    return {
        "sessions": both.run.completed,
        "failed": both.run.failed + both.judging.failed,
        "units": both.judging.units,
        "session_calls": calls(both, "patient") + calls(both, "therapist"),
        "judge_calls": calls(both, "judge"),
        "same_scores": judged.summary is not None
        and both.summary is not None
        and json.loads(judged.summary.to_json()) == json.loads(both.summary.to_json()),
        "session_phase_s": session_phase,
        "judge_phase_s": judge_phase,
        "phased_s": session_phase + judge_phase,
        "pipelined_s": wall - summary,
        "bound_s": bound,
        "pipelined_over_bound": (wall - summary) / bound,
        # in the pipelined run: when the last session was saved, and the judging after it
        "pipelined_sessions_s": saved["sessions"][-1] - started,
        "judging_tail_s": saved["scores"][-1] - saved["sessions"][-1],
        "summary_s": summary,
        "client_cpu_s": {"sessions": run_cpu, "judging": judge_cpu, "pipelined": cpu},
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=256, help="a multiple of 32")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--judge-concurrency", type=int, default=32)
    parser.add_argument("--session-latency-ms", type=float, default=100.0)
    parser.add_argument("--judge-latency-ms", type=float, default=300.0)
    parser.add_argument(
        "--rubrics", default="ctrs", help="ctrs costs the client least per unit (see the docs)"
    )
    parser.add_argument("--serve-judge", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.serve_judge:
        serve_judge(args.judge_latency_ms)
        return
    session_server = server_process([
        sys.executable, "-m", "therapygym.testing.openai_server",
        "--latency-ms", str(args.session_latency_ms),
        "--reply", "A short scripted reply of about ten words for the benchmark.",
    ])  # fmt: skip
    judge_server = server_process(
        [
            sys.executable,
            __file__,
            "--serve-judge",
            "--judge-latency-ms",
            str(args.judge_latency_ms),
        ]
    )
    with session_server as talk_url, judge_server as judge_url:
        talk = f"openai:fake-model?base_url={talk_url}"
        judge = f"openai:fake-model?base_url={judge_url}"
        row = asyncio.run(measure(args, talk, judge))
    print(
        f"{row['sessions']} sessions ({row['session_calls']} calls at "
        f"{args.session_latency_ms:g} ms, concurrency {args.concurrency}), {row['units']} "
        f"judgement units of {args.rubrics} ({row['judge_calls']} calls at "
        f"{args.judge_latency_ms:g} ms, "
        f"judge concurrency {args.judge_concurrency}); failed {row['failed']}; "
        f"pipelined summary equal to phased: {row['same_scores']}"
    )
    print(
        "| session phase | judge phase | phased | pipelined | bound | pipelined / bound "
        "| sessions done, pipelined | judging after them |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {row['session_phase_s']:.2f} s | {row['judge_phase_s']:.2f} s | "
        f"{row['phased_s']:.2f} s | {row['pipelined_s']:.2f} s | {row['bound_s']:.2f} s | "
        f"{row['pipelined_over_bound']:.3f} | {row['pipelined_sessions_s']:.2f} s | "
        f"{row['judging_tail_s']:.2f} s |"
    )
    cpu = row["client_cpu_s"]
    print(
        f"(summary {row['summary_s']:.2f} s, taken off both; client CPU: session phase "
        f"{cpu['sessions']:.2f} s, judge phase {cpu['judging']:.2f} s, pipelined "
        f"{cpu['pipelined']:.2f} s; load average "
        f"{', '.join(f'{x:.2f}' for x in row['load_average'])})"
    )
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()

"""A 200-session run with judging against a server that fails a fifth of its requests.

The local OpenAI-compatible server injects rate limits, server errors, hangs past the
client's timeout, malformed bodies and dropped connections. The run must finish; every
call that failed for good must be recorded on its session or judgement unit with its
cause; every request the server saw must be accounted for by the run's usage ledgers;
and after resuming (under the same faults) the store must hold exactly what a run
against a healthy server holds: the same sessions, turns and scores, none lost, none
twice.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from judges.scripted import conversation_replier

from therapygym.config import RunPlan
from therapygym.failure import ANY_FAILURE, tallies
from therapygym.judges.plan import JudgePlan
from therapygym.models import UsageLedger
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import JudgeResult, RunResult, judge_run, run_plan
from therapygym.store import RunStore

PROFILES = load_profiles()[:25]
SAMPLES = 8  # 25 profiles x 8 samples = 200 sessions
TURNS = 4  # the authored opening line, then 3 model calls per session
FAULTS = {"429": 0.10, "500": 0.05, "hang": 0.02, "malformed": 0.02, "drop": 0.02}
# What each injected fault reads like once the model layer gives up on a call.
CAUSE = re.compile(
    r"HTTP 429|HTTP 500|timed out after|malformed response body|connection to .* dropped"
)
# Long enough that a busy 2-core CI machine answers every healthy call in time, short
# enough that the injected hangs (twice as long) cost seconds.
TIMEOUT_S = 3.0
MAX_ROUNDS = 10  # resumes until every session and unit is done (each round halves the rest)


def models_file(path: Path, server: Any) -> Path:
    """One model named `bot` on `server`: both runs then hold the same specs (and so the
    same session and score ids), whichever server they ran against."""
    path.write_text(
        "models:\n  bot:\n    backend: openai\n    model: fake-model\n"
        f"    base_url: {server.base_url}\n    timeout_s: {TIMEOUT_S}\n    max_retries: 1\n"
        "    backoff_initial_s: 0.01\n    backoff_max_s: 0.05\n    concurrency: 64\n"
    )
    return path


def run_and_judge_plans(spec: str = "bot") -> tuple[RunPlan, JudgePlan]:
    run = RunPlan(
        run_id="faults",
        therapists=(spec,),
        patient_model=spec,
        profiles=tuple(f"{p.id}@{p.version}" for p in PROFILES),
        samples=SAMPLES,
        session=SessionConfig(max_turns=TURNS),
    )
    return run, JudgePlan(judges=(spec,), rubrics=("ctrs", "safety"))


def requests_of(*ledgers: UsageLedger) -> int:
    """The requests the calls booked in `ledgers` sent: each uncached call made one, plus
    one for every retry; each call that failed for good made one plus its retries."""
    total = 0
    for ledger in ledgers:
        t = ledger.total()
        total += t.calls - t.cached_calls + t.errors + t.retries
    return total


def snapshot(store_path: Path) -> dict[str, Any]:
    """Everything a run stores except timings: sessions with their turns, and scores."""
    store = RunStore(store_path, read_only=True)
    sessions = {}
    for t in store.sessions("faults"):
        data = t.model_dump(mode="json", exclude={"started_at", "wall_s"})
        for turn in data["turns"]:
            del turn["latency_s"]
        sessions[t.session_id] = data
    scores = {r.score_id: r.model_dump(mode="json") for r in store.scores("faults")}
    with sqlite3.connect(store_path) as db:
        rows = {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("sessions", "turns", "scores")
        }
    assert store.integrity_check() == "ok"
    store.close()
    return {"sessions": sessions, "scores": scores, "rows": rows}


def check_recorded(store: RunStore, run: RunResult, judged: JudgeResult) -> None:
    """Each failure is stored with its cause, and the results count what the store holds."""
    failed = list(store.sessions("faults", status="failed"))
    assert len(failed) == run.failed == len(run.errors)
    for t in failed:
        assert t.error and CAUSE.search(t.error), t.error
    failed_units = {
        (r.session_id, r.rubric_id) for r in store.scores("faults") if r.error is not None
    }
    assert len(failed_units) == judged.failed
    for r in store.scores("faults"):
        if r.error is not None:
            assert r.result is None and CAUSE.search(r.error), r.error


async def test_200_sessions_with_judging_survive_injected_faults(
    tmp_path: Path, openai_server: Any
) -> None:
    healthy = models_file(tmp_path / "healthy.yaml", openai_server(conversation_replier()))
    faulty_server = openai_server(
        conversation_replier(), fault_rates=FAULTS, hang_s=2 * TIMEOUT_S, seed=7
    )
    faulty = models_file(tmp_path / "faulty.yaml", faulty_server)
    the_run, the_judges = run_and_judge_plans()
    options: dict[str, Any] = {"cache": None, "concurrency": 32}

    # The reference: the same plan against a server that never fails.
    reference_path = tmp_path / "reference.sqlite"
    reference = RunStore(reference_path)
    ok = await run_plan(the_run, PROFILES, reference, models_file=healthy, **options)
    assert (ok.completed, ok.failed) == (200, 0)
    judged_ok = await judge_run(reference, "faults", the_judges, models_file=healthy, **options)
    assert (judged_ok.judged, judged_ok.failed) == (400, 0), judged_ok.errors[:3]
    reference.close()

    # The same plan under faults, resumed until nothing is left to do.
    store_path = tmp_path / "faulty.sqlite"
    store = RunStore(store_path)
    first_failures = None
    for _ in range(MAX_ROUNDS):
        faulty_server.reset_stats()
        run = await run_plan(the_run, PROFILES, store, models_file=faulty, **options)
        judged = await judge_run(store, "faults", the_judges, models_file=faulty, **options)
        assert run.planned == 200 and run.skipped + run.completed + run.failed == 200
        assert judged.skipped + judged.judged + judged.failed == judged.units
        check_recorded(store, run, judged)
        # under the CLI's default --fail-on-error, a round fails the command (exit 3)
        # exactly when it leaves work failed for good
        verdict = ANY_FAILURE.verdict(tallies(run, judged))
        assert (verdict is None) == (run.failed == judged.failed == 0), verdict
        sent = sum(faulty_server.fault_counts.values())
        assert sent == requests_of(run.usage, judged.usage), (
            faulty_server.fault_counts,
            run.usage.total(),
            judged.usage.total(),
        )
        if first_failures is None:
            first_failures = (run.failed, judged.failed, dict(faulty_server.fault_counts))
        if run.failed == 0 and judged.failed == 0 and judged.units == 400:
            break
    else:
        raise AssertionError(f"still failing after {MAX_ROUNDS} rounds")
    store.close()

    failed_sessions, failed_units, counts = first_failures
    assert failed_sessions > 0 and failed_units > 0, "the faults should have cost something"
    assert all(counts.get(fault, 0) > 0 for fault in FAULTS), counts

    expected, got = snapshot(reference_path), snapshot(store_path)
    assert got["rows"] == expected["rows"]
    assert got["sessions"].keys() == expected["sessions"].keys()
    assert got == expected

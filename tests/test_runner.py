"""Runs end to end: against the local OpenAI-compatible server and against the embedded
model. Runs killed with SIGKILL and resumed: tests/reliability/test_crash_resume.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from therapygym.config import RunPlan
from therapygym.models import ResponseCache
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import run_plan
from therapygym.store import RunStore
from therapygym.testing.openai_server import Fault

PROFILES = load_profiles()[:3]


def role_replier(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    n = len(body["messages"])
    if "role-playing a person" in system:
        return f"patient reply {n}"
    return f"therapist reply {n}"


def plan(run_id: str, spec: str, **overrides: Any) -> RunPlan:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "therapists": (spec,),
        "patient_model": spec,
        "profiles": tuple(f"{p.id}@{p.version}" for p in PROFILES),
        "samples": 2,
        "session": SessionConfig(max_turns=6),
    }
    fields.update(overrides)
    return RunPlan(**fields)


async def test_run_against_local_server_then_resume(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(role_replier, latency_s=0.01)
    spec = server_spec(server)
    store = RunStore(tmp_path / "store.sqlite")
    the_plan = plan("local", spec, therapists=(spec, "rule-based"))
    result = await run_plan(the_plan, PROFILES, store, cache=None, concurrency=4)
    assert (result.planned, result.completed, result.failed, result.skipped) == (12, 12, 0, 0)
    sessions = list(store.sessions("local"))
    assert len(sessions) == 12 and len({s.session_id for s in sessions}) == 12
    for s in sessions:
        assert len(s.turns) == 6
        assert s.turns[0].text in {p.opening_line for p in PROFILES}
        assert all(t.text.startswith("patient reply") for t in s.turns[2::2])
    llm = [s for s in sessions if s.therapist == spec]
    assert all(t.text.startswith("therapist reply") for s in llm for t in s.turns[1::2])
    usage = result.usage.roles
    assert usage["patient"].calls == 12 * 2 and usage["therapist"].calls == 6 * 3

    requests = len(server.requests)
    again = await run_plan(the_plan, PROFILES, store, cache=None, concurrency=4)
    assert (again.skipped, again.completed) == (12, 0)
    assert len(server.requests) == requests


async def test_a_run_records_how_it_was_made_and_judging_adds_its_rubrics(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    import sys

    from therapygym import __version__
    from therapygym.judges.plan import JudgePlan
    from therapygym.judges.rubric import builtin_rubric
    from therapygym.runner import judge_run

    store = RunStore(tmp_path / "store.sqlite")
    patient = server_spec(openai_server(role_replier))
    the_plan = plan("prov", "rule-based", samples=1, patient_model=patient)
    await run_plan(the_plan, PROFILES, store, cache=None, provenance={"note": "x"})
    made = store.run("prov").provenance
    assert made["therapygym"] == __version__
    assert made["python"] == sys.version.split()[0]
    assert made["note"] == "x" and "revision" in made and "rubrics" not in made
    judge = server_spec(openai_server('{"a": 1}'), max_retries=0)
    await judge_run(store, "prov", JudgePlan(judges=(judge,), rubrics=("ctrs",)), cache=None)
    ctrs = builtin_rubric("ctrs")
    judged = store.run("prov").provenance
    assert judged["rubrics"] == {ctrs.ref: ctrs.fingerprint}
    # what the judge spec meant when it scored, and that it is not the embedded model
    assert judged["judges"][judge]["embedded"] is False
    assert judged["judges"][judge]["backend"] == "openai"


async def test_failed_sessions_are_recorded_and_retried_on_resume(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(role_replier, fault_script=[Fault.SERVER_ERROR] * 3)
    spec = server_spec(server, max_retries=0)
    store = RunStore(tmp_path / "store.sqlite")
    the_plan = plan("faulty", spec, samples=1)
    first = await run_plan(the_plan, PROFILES, store, cache=None, concurrency=1)
    assert first.failed == 3 and first.completed == 0
    assert all("HTTP 500" in e for e in first.errors)
    failed = list(store.sessions("faulty", status="failed"))
    assert len(failed) == 3 and all(s.error for s in failed)
    second = await run_plan(the_plan, PROFILES, store, cache=None, concurrency=1)
    assert second.completed == 3 and second.skipped == 0
    assert store.finished_session_ids("faulty") == {s.session_id for s in failed}


async def test_a_bad_therapist_spec_leaves_no_run_behind(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """A spec that fails to load writes nothing, so the retry with the spec fixed (a
    different run config) is not refused as a changed resume."""
    from therapygym.errors import TherapygymError

    server = openai_server(role_replier)
    store = RunStore(tmp_path / "store.sqlite")
    with pytest.raises(TherapygymError, match="unknown model spec"):
        await run_plan(plan("fixed-id", "nonsense-spec"), PROFILES, store, cache=None)
    assert store.runs() == []
    fixed = plan("fixed-id", server_spec(server), samples=1)
    result = await run_plan(fixed, PROFILES, store, cache=None)
    assert (result.completed, result.failed) == (3, 0)


@pytest.mark.slow
async def test_end_to_end_with_the_embedded_model(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "store.sqlite")
    the_plan = plan(
        "embedded",
        "local:smollm2",
        profiles=tuple(f"{p.id}@{p.version}" for p in PROFILES[:2]),
        samples=1,
        session=SessionConfig(max_turns=4, max_tokens=48),
    )
    cache = ResponseCache(tmp_path / "cache.sqlite")
    result = await run_plan(the_plan, PROFILES, store, cache=cache, concurrency=2)
    assert result.completed == 2 and result.failed == 0
    for t in store.sessions("embedded"):
        assert len(t.turns) == 4 and all(turn.text for turn in t.turns)
        assert t.turns[1].model == "SmolLM2-135M-Instruct.Q4_1"
        assert t.turns[1].completion_tokens > 0

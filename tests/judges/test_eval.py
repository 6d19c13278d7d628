"""`eval` end to end against the local server with scripted judge replies. With the
embedded model as patient, therapist and judge it is the demo (tests/test_cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scripted import judge_replier

from therapygym.config import EvalConfig, RunSection
from therapygym.judges.plan import JudgePlan
from therapygym.models.spec import resolve_spec
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import evaluate, judge_run
from therapygym.store import RunStore
from therapygym.summary import summarise

PROFILES = [p for p in load_profiles() if p.risk_cues][:2]


def config_for(spec: str, run_id: str, judges: JudgePlan, store: Path, **kw: Any) -> EvalConfig:
    return EvalConfig(
        run_id=run_id,
        run=RunSection(
            therapists=(spec, "rule-based"),
            patient_model=spec,
            patients=",".join(p.id for p in PROFILES),
            session=SessionConfig(max_turns=6),
        ),
        judge=judges,
        store=store,
        no_cache=True,
        **kw,
    )


def count_reads(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the transcripts that `store` reads from now on (one by one or by run)."""
    read: list[str] = []
    session, sessions = store.session, store.sessions

    def one(session_id: str) -> Any:
        read.append(session_id)
        return session(session_id)

    def every(*args: Any, **kwargs: Any) -> Any:
        for t in sessions(*args, **kwargs):
            read.append(t.session_id)
            yield t

    monkeypatch.setattr(store, "session", one)
    monkeypatch.setattr(store, "sessions", every)
    return read


async def test_eval_against_local_server(
    tmp_path: Path, openai_server: Any, server_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = openai_server(judge_replier(score=4, verdict="no"))
    spec = server_spec(server)
    judges = JudgePlan(judges=(spec,), samples=2, temperature=0.0)
    result = await evaluate(config_for(spec, "ev", judges, tmp_path / "store.sqlite"))
    store = RunStore(tmp_path / "store.sqlite")
    assert result.run.completed == 4
    # 4 sessions x 3 rubrics x 2 samples
    assert (result.judging.units, result.judging.judged, result.judging.failed) == (24, 24, 0)
    summary = result.summary
    label = resolve_spec(spec).label  # what tables show: no retry options, no secrets
    assert {t.therapist for t in summary.therapists} == {label, "rule-based"}
    for t in summary.therapists:
        assert (
            t.sessions == 2
            and t.ctrs_total.mean == 44
            and t.ctrs_normalised.mean == pytest.approx(4 / 6)
        )
        assert t.competence_rate.mean == 1.0 and t.violation_rate.mean == 0.0
        assert t.response["empathy"].mean == 4
    records = store.scores("ev")
    assert {r.sample for r in records} == {0, 1}
    assert all(r.raw_outputs and r.judge == label and r.prompt_fingerprint for r in records)
    judged_bodies = [b for b in server.requests if b.get("response_format")]
    for body in judged_bodies:  # the judge never sees the therapist's name
        assert "rule-based" not in json.dumps(body["messages"])

    before = len(server.requests)
    read = count_reads(store, monkeypatch)
    again = await judge_run(store, "ev", judges, cache=None)
    assert again.skipped == 24 and again.judged == 0 and len(server.requests) == before
    assert read == []  # resuming a judged run reads no transcript


async def test_failed_judgements_are_recorded_and_retried(
    tmp_path: Path, openai_server: Any, server_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    good = judge_replier(score=2)

    def flaky(body: dict[str, Any]) -> Any:
        if body.get("response_format") and calls["n"] < 3:
            calls["n"] += 1
            return "I refuse to answer in JSON."
        return good(body)

    server = openai_server(flaky)
    spec = server_spec(server)
    judges = JudgePlan(judges=(spec,), rubrics=("ctrs",), max_attempts=3)
    config = config_for(spec, "flaky", judges, tmp_path / "store.sqlite", concurrency=1)
    first = await evaluate(config)
    store = RunStore(tmp_path / "store.sqlite")
    assert first.judging.failed == 1 and "invalid judge output" in first.judging.errors[0]
    failed = [r for r in store.scores("flaky") if r.error]
    assert len(failed) == 1 and failed[0].raw_outputs == ["I refuse to answer in JSON."] * 3
    read = count_reads(store, monkeypatch)
    second = await judge_run(store, "flaky", judges, cache=None)
    assert second.judged == 1 and not any(r.error for r in store.scores("flaky"))
    assert read == [failed[0].session_id]  # only the session with a unit left to judge
    assert summarise(store, "flaky").therapists[0].ctrs_total.mean == 22
    assert len(read) == 1  # a summary reads the sessions' heads, not their transcripts


def test_eval_cli_against_local_server(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(judge_replier(score=5, verdict="yes"))
    spec = server_spec(server)
    out = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "therapygym", "eval", "--therapist", spec, "--patient-model", spec,
         "--judge", spec, "--patients", PROFILES[0].id, "--max-turns", "4", "--run-id", "cli",
         "--rubric", "ctrs,safety", "--store", str(tmp_path / "s.sqlite"), "-o", str(out),
         "--no-cache"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Summary of cli" in result.stdout and "55.0" in result.stdout
    assert "stigmatising_language" in result.stdout and "100%" in result.stdout
    data = json.loads(out.read_text())
    assert data["therapists"][0]["ctrs_total"]["mean"] == 55
    assert data["therapists"][0]["label_violation_rate"]["stigmatising_language"]["mean"] == 1.0

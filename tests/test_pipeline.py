"""`eval` judges each session as soon as it is stored (issue 22, item 4), and a model's
default limit follows the run's concurrency (item 6).

Against two local servers, one for the patient and the therapist and one for the judge:
the pipelined eval stores exactly what a run followed by its judging stores, its judging
overlaps its sessions, a failed session is counted and not judged, a shard runs and
judges its own sessions only, and an eval stopped by Ctrl-C and then by SIGKILL resumes
to the store an uninterrupted eval makes, every session judged once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import cli
from judges.scripted import conversation_replier, judge_replier
from reliability.test_crash_resume import progress, without_timings

from therapygym.config import EvalConfig, Plans, RunPlan, RunSection
from therapygym.judges.plan import JudgePlan
from therapygym.models.spec import parse_spec
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import _share_cores, evaluate
from therapygym.shards import Shard
from therapygym.store import RunStore

PROFILES = [p.id for p in load_profiles()[:4]]


def timed(replier: Callable[[dict[str, Any]], Any], times: list[float]) -> Any:
    """`replier`, noting when each reply is made (after the server's latency)."""

    def reply(body: dict[str, Any]) -> Any:
        times.append(time.monotonic())
        return replier(body)

    return reply


def eval_config(
    talk: str, judge: str | None, store: Path, *, run: bool = True, **kw: Any
) -> EvalConfig:
    """4 profiles x (an LLM and the rule-based therapist) x 2 samples = 16 sessions of 4
    turns, judged on CTRS and safety; no `judge` runs them only, `run=False` judges the
    stored run only."""
    section = RunSection(
        therapists=(talk, "rule-based"),
        patient_model=talk,
        patients=",".join(PROFILES),
        samples=2,
        session=SessionConfig(max_turns=4),
    )
    return EvalConfig(
        run_id="pipe",
        run=section if run else None,
        judge=JudgePlan(judges=(judge,), rubrics=("ctrs", "safety")) if judge else None,
        store=store,
        no_cache=True,
        **kw,
    )


def contents(path: Path) -> dict[str, Any]:
    """The run's sessions and scores as stored, every field included."""
    store = RunStore(path, read_only=True)
    out = {
        "sessions": {t.session_id: t.model_dump(mode="json") for t in store.sessions("pipe")},
        "scores": {r.score_id: r.model_dump(mode="json") for r in store.scores("pipe")},
    }
    store.close()
    return out


async def test_pipelined_eval_stores_what_run_then_judge_stores_and_overlaps(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    talked: list[float] = []
    judged: list[float] = []
    talk = openai_server(timed(conversation_replier(), talked), latency_s=0.02)
    judge = openai_server(timed(judge_replier(score=4, verdict="no"), judged), latency_s=0.05)
    talk_spec, judge_spec = server_spec(talk), server_spec(judge)

    phased_store = tmp_path / "phased.sqlite"
    ran = await evaluate(eval_config(talk_spec, None, phased_store))
    phased = await evaluate(eval_config(talk_spec, judge_spec, phased_store, run=False))
    assert ran.run is not None and ran.run.completed == 16 and phased.judging is not None
    assert min(judged) > max(talked)  # run, then judge: the servers worked in turn
    talked.clear()
    judged.clear()

    piped_store = tmp_path / "piped.sqlite"
    piped = await evaluate(
        eval_config(talk_spec, judge_spec, piped_store, concurrency=2, judge_concurrency=3)
    )
    # the judge server answered while the session server still had sessions to serve
    assert min(judged) < max(talked)
    assert piped.run is not None and piped.judging is not None and piped.summary is not None
    assert (piped.run.planned, piped.run.completed, piped.run.failed) == (16, 16, 0)
    units = (phased.judging.units, phased.judging.judged, phased.judging.failed)
    assert units == (32, 32, 0)  # 16 sessions x 2 rubrics
    assert (piped.judging.units, piped.judging.judged, piped.judging.failed) == units
    assert piped.judging.judges == phased.judging.judges
    assert without_timings(contents(piped_store)) == without_timings(contents(phased_store))
    assert phased.summary is not None
    assert json.loads(piped.summary.to_json()) == json.loads(phased.summary.to_json())

    again = await evaluate(eval_config(talk_spec, judge_spec, piped_store))
    assert again.run is not None and again.judging is not None
    assert (again.run.skipped, again.judging.skipped, again.judging.units) == (16, 32, 32)


async def test_a_failed_session_is_counted_not_judged_and_run_again(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    talk = openai_server(conversation_replier(), fault_script=["500"])
    judge = openai_server(judge_replier())
    config = eval_config(server_spec(talk, max_retries=0), server_spec(judge), tmp_path / "s.db")

    first = await evaluate(config)
    assert first.run is not None and first.judging is not None
    assert (first.run.completed, first.run.failed) == (15, 1)
    failed = first.run.errors[0].split(":")[0]
    assert (first.judging.units, first.judging.judged) == (30, 30)
    assert failed not in {r["session_id"] for r in contents(config.store)["scores"].values()}

    second = await evaluate(config)  # the failed session is run again, then judged
    assert second.run is not None and second.judging is not None
    assert (second.run.skipped, second.run.completed, second.run.failed) == (15, 1, 0)
    assert (second.judging.units, second.judging.skipped, second.judging.judged) == (32, 30, 2)
    scores = contents(config.store)["scores"].values()
    assert {r["rubric_id"] for r in scores if r["session_id"] == failed} == {"ctrs", "safety"}


async def test_a_failed_unit_is_counted_and_judged_again_on_resume(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    talk = openai_server(conversation_replier())
    judge = openai_server(judge_replier(), fault_script=["500"])
    config = eval_config(server_spec(talk), server_spec(judge, max_retries=0), tmp_path / "s.db")
    first = await evaluate(config)
    assert first.judging is not None
    assert (first.judging.units, first.judging.judged, first.judging.failed) == (32, 31, 1)
    second = await evaluate(config)
    assert second.run is not None and second.judging is not None
    assert (second.run.skipped, second.judging.skipped, second.judging.judged) == (16, 31, 1)
    assert second.judging.failed == 0


async def test_a_pipelined_shard_runs_and_judges_its_own_sessions(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    talk = openai_server(conversation_replier())
    judge = openai_server(judge_replier())
    talk_spec, judge_spec = server_spec(talk), server_spec(judge)
    whole = await evaluate(eval_config(talk_spec, judge_spec, tmp_path / "whole.db"))
    shard = Shard(0, 2)
    part = await evaluate(eval_config(talk_spec, judge_spec, tmp_path / "0.db", shard="0/2"))
    assert whole.run is not None and part.run is not None and part.judging is not None
    everything = contents(tmp_path / "whole.db")
    mine = {sid for sid in everything["sessions"] if shard.holds(sid)}
    assert 0 < len(mine) < 16 and part.run.planned == len(mine)
    assert part.judging.units == 2 * len(mine)
    expected = {
        "sessions": {k: v for k, v in everything["sessions"].items() if k in mine},
        "scores": {k: v for k, v in everything["scores"].items() if v["session_id"] in mine},
    }
    assert without_timings(contents(tmp_path / "0.db")) == without_timings(expected)


# -- an eval stopped by Ctrl-C, then by SIGKILL, then resumed ------------------------------


def eval_command(tmp_path: Path, name: str, models: Path) -> list[str]:
    return [
        sys.executable, "-m", "therapygym", "eval",
        "--therapist", "talk", "--patient-model", "talk", "--judge", "judge",
        "--patients", ",".join(PROFILES), "--samples", "2", "--max-turns", "6",
        "--rubric", "ctrs,safety", "--concurrency", "2", "--judge-concurrency", "1",
        "--run-id", "pipe", "--models-file", str(models),
        "--store", str(tmp_path / f"{name}.sqlite"), "--no-cache",
    ]  # fmt: skip


def stopped_when(
    command: list[str], store: Path, ready: Callable[[int, int], bool], how: signal.Signals
) -> tuple[int, str, tuple[int, int]]:
    """Start `command`, and once the store's (sessions, score rows) are `ready`, send it
    `how`: its exit code, its stderr and what the store held when it was sent."""
    proc = subprocess.Popen(
        command,
        env={**os.environ, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ready(*progress(store)) and proc.poll() is None:
        assert time.monotonic() < deadline, "no progress towards the stop"
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()[1]
    held = progress(store)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, held


def judged_sessions(store: Path) -> set[str]:
    with sqlite3.connect(store) as db:
        return {row[0] for row in db.execute("SELECT DISTINCT session_id FROM scores")}


@pytest.mark.usefixtures("ctrl_c_reaches_children")
def test_an_eval_stopped_then_killed_resumes_each_session_judged_once(
    tmp_path: Path, openai_server: Any
) -> None:
    talk = openai_server(conversation_replier(), latency_s=0.03)
    judge = openai_server(judge_replier(), latency_s=0.1)  # judging lags behind sessions
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        f"  talk: {{backend: openai, model: fake-model, base_url: '{talk.base_url}'}}\n"
        f"  judge: {{backend: openai, model: fake-model, base_url: '{judge.base_url}'}}\n"
    )
    reference = subprocess.run(
        eval_command(tmp_path, "reference", models), capture_output=True, text=True, timeout=300
    )
    assert reference.returncode == 0, reference.stderr
    expected = contents(tmp_path / "reference.sqlite")
    assert len(expected["sessions"]) == 8 and len(expected["scores"]) > 0

    command, store = eval_command(tmp_path, "stopped", models), tmp_path / "stopped.sqlite"
    # Ctrl-C while sessions are still running and some are judged already
    code, err, held = stopped_when(command, store, lambda s, sc: s >= 2 and sc >= 1, signal.SIGINT)
    assert held[0] < 8, held  # judging began before the sessions were done
    assert code == 130, err
    sessions_stopped = re.search(r"stopped: (\d+) of 8 sessions of run pipe", err)
    units_stopped = re.search(r"stopped: (\d+) of (\d+) judgement units of run pipe", err)
    assert sessions_stopped is not None and units_stopped is not None, err
    assert "Traceback" not in err

    # then SIGKILL, with sessions stored that are not judged yet
    after = progress(store)
    stopped_when(command, store, lambda s, sc: s > after[0] and sc > after[1], signal.SIGKILL)
    stored_now = set(contents(store)["sessions"])
    assert judged_sessions(store) < stored_now, "every stored session was judged at the kill"

    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    got = contents(store)
    assert without_timings(got) == without_timings(expected)
    assert judged_sessions(store) == set(got["sessions"])
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    assert rows == len(expected["scores"])  # no unit judged twice
    check = RunStore(store)
    assert check.integrity_check() == "ok"
    check.close()


# -- a model's limit follows the run's concurrency -------------------------------------------


class InFlight:
    """A replier that measures the most requests the server held at once: a request is
    recorded when it arrives (`server.requests`) and answered after the latency, so when
    one is answered, arrivals minus earlier answers is how many were in flight."""

    def __init__(self) -> None:
        self.server: Any = None
        self.answered = 0
        self.peak = 0

    def __call__(self, body: dict[str, Any]) -> str:
        self.peak = max(self.peak, len(self.server.requests) - self.answered)
        self.answered += 1
        return "I hear you."


def wide_run(
    openai_server: Any, server_spec: Any, tmp_path: Path, **spec: Any
) -> tuple[Any, int, str]:
    """`run --concurrency 64` of 64 sessions whose one model call (the therapist's first
    reply) is made at once: the CLI's result, the most calls the server held at once, and
    the label of the model."""
    counter = InFlight()
    counter.server = server = openai_server(counter, latency_s=1.0)
    model = server_spec(server, **spec)
    ran = cli(
        "run", "--therapist", model, "--patient-model", model, "--patients", PROFILES[0],
        "--samples", "64", "--max-turns", "2", "--concurrency", "64", "--no-cache",
        "--store", str(tmp_path / f"wide-{len(spec)}.sqlite"),
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert "64 completed" in ran.stdout
    return ran, counter.peak, f"openai:fake-model@{server.base_url}"


def test_a_default_openai_spec_keeps_the_runs_concurrency_in_flight(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    ran, peak, _ = wide_run(openai_server, server_spec, tmp_path)
    assert peak == 64  # the openai backend's default of 16 held it to 16
    assert "warning" not in ran.stderr


def test_an_explicit_lower_limit_is_kept_and_warned_about(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    ran, peak, label = wide_run(openai_server, server_spec, tmp_path, concurrency=32)
    assert peak == 32
    warnings = [line for line in ran.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: model {label} allows 32 requests in flight (its concurrency=32), fewer "
        "than the 64 this run keeps going; raise concurrency= in its spec, or remove it to "
        "follow the run's"
    ]  # one line for the spec, though the patient and the therapist each load it


@pytest.mark.parametrize(
    ("spec", "limit", "undercut"),
    [
        ("openai:m", 64, False),  # a server's pace is the server's: the run's figure
        ("anthropic:m", 64, False),
        ("python:mod:fn", 64, False),
        ("openai:m?concurrency=100", 100, False),
        ("openai:m?concurrency=8", 8, True),  # kept as given, and warned about
        ("local:smollm2", 4, False),  # in-process: this machine's cores set the pace
        ("hf:smollm2", 1, False),
        ("local:smollm2?concurrency=2", 2, False),
    ],
)
def test_which_limit_a_model_takes_in_a_run_of_64(spec: str, limit: int, undercut: bool) -> None:
    config = parse_spec(spec)
    assert (config.limit_for(64), config.undercuts(64)) == (limit, undercut)
    assert config.limit_for(2) == config.max_concurrency  # never below the backend's own


SERVER = "?base_url=http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("patient", "therapist", "judge", "shared"),
    [
        ("local:smollm2", "rule-based", "local:smollm2", True),  # the demo: sessions, then judging
        ("local:smollm2", "local:smollm2", "openai:judge" + SERVER, False),
        (
            "openai:talk" + SERVER,
            "rule-based",
            "local:smollm2",
            False,
        ),  # cores judge, a server talks
        ("openai:talk" + SERVER, "theraagent:local:smollm2", "gguf:/m.gguf", True),
    ],
)
def test_an_in_process_judge_beside_in_process_sessions_is_not_pipelined(
    patient: str, therapist: str, judge: str, shared: bool
) -> None:
    run = RunPlan(run_id="cores", therapists=(therapist,), patient_model=patient, profiles=("x@1",))
    config = EvalConfig(run_id="cores", judge=JudgePlan(judges=(judge,)))
    assert _share_cores(Plans("cores", run=run, judge=config.judge), config) is shared

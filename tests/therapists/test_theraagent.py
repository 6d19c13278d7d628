"""TheraAgent: the rate-critique-coach-revise loop against the local OpenAI-compatible
server with scripted replies, its spec grammar, and the rounds it stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from therapygym.cli.app import app
from therapygym.config import RunPlan
from therapygym.errors import ModelSpecError
from therapygym.judges.render import render_transcript
from therapygym.judges.rubric import builtin_rubric
from therapygym.models import UsageLedger
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig, Turn
from therapygym.report.exports import export_transcripts, read_transcripts_jsonl
from therapygym.runner import load_therapists, run_plan
from therapygym.store import RunStore
from therapygym.therapists import load_therapist
from therapygym.therapists.prompted import default_prompt
from therapygym.therapists.theraagent import (
    META_KEY,
    TheraAgent,
    parse_theraagent_spec,
    trace_of,
)

DIMENSIONS = [d.id for d in builtin_rubric("response").dimensions]  # type: ignore[union-attr]
CONFIG = SessionConfig()
TURNS = [Turn(id="s:0", index=0, speaker="patient", text="I have felt flat since the move.")]
SUPERVISOR = "[A note from your clinical supervisor"


def _title(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    return fmt["json_schema"]["schema"]["title"] if fmt else None


def _judged_text(body: dict[str, Any]) -> str:
    """The last turn of the transcript block in a judge, critic or coach request."""
    user = body["messages"][-1]["content"]
    block = user.split("<transcript>\n", 1)[1].split("\n</transcript>", 1)[0]
    return json.loads(block)[-1]["text"]


def _offered(critique_schema: dict[str, Any]) -> list[str]:
    """The dimensions a critique schema lets the critic name (an enum, or a const)."""
    prop = critique_schema["$defs"]["Weakness"]["properties"]["dimension"]
    return prop.get("enum") or [prop["const"]]


class Script:
    """Scripted replies by request kind: the judge scores by the judged text (an int for
    every dimension, or a dict of dimension -> score with `default`), the critic names the
    first dimension it is offered, the coach gives one instruction, the therapist drafts
    `draft` and rewrites with the next of `revisions`; anything else is the patient."""

    def __init__(
        self,
        scores: dict[str, Any],
        revisions: list[str] | None = None,
        *,
        draft: str = "DRAFT",
        critic: Any = None,
        judge: Any = None,
    ) -> None:
        self.scores = scores
        self.revisions = list(revisions or [])
        self.draft = draft
        self.critic = critic
        self.judge = judge

    def score(self, text: str) -> dict[str, int]:
        value = self.scores.get(text, 3)
        if isinstance(value, int):
            return dict.fromkeys(DIMENSIONS, value)
        return {d: value.get(d, value.get("default", 3)) for d in DIMENSIONS}

    def __call__(self, body: dict[str, Any]) -> str | dict[str, Any]:
        title = _title(body)
        if title == "ResponseScores":
            if self.judge is not None:
                return self.judge
            return {"rationale": "Scripted.", **self.score(_judged_text(body))}
        if title == "Critique":
            if self.critic is not None:
                return self.critic
            schema = body["response_format"]["json_schema"]["schema"]
            offered = _offered(schema)
            quote = _judged_text(body)
            return {
                "weaknesses": [{"dimension": offered[0], "evidence": quote, "problem": "Flat."}]
            }
        if title == "Coaching":
            return {"instructions": ["Name the feeling you hear before asking anything."]}
        messages = body["messages"]
        if messages[-1]["content"].startswith(SUPERVISOR):
            return self.revisions.pop(0)
        if messages[0]["role"] == "system" and messages[0]["content"] == default_prompt():
            return self.draft
        return "It has been a hard week, honestly."


def kinds(server: Any) -> list[str]:
    """What each request the server saw was: a judge/critic/coach schema, or who spoke."""
    out = []
    for body in server.requests:
        title = _title(body)
        if title:
            out.append(title)
        elif body["messages"][-1]["content"].startswith(SUPERVISOR):
            out.append("revise")
        else:
            out.append("draft")
    return out


async def agent_for(spec: str, ledger: UsageLedger | None = None) -> tuple[TheraAgent, list[Any]]:
    agent, owned = load_therapist(spec, ledger=ledger)
    assert isinstance(agent, TheraAgent)
    return agent, owned


async def close(owned: list[Any]) -> None:
    for model in owned:
        await model.aclose()


async def test_weak_draft_is_critiqued_coached_revised_and_the_revision_kept(
    openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(Script({"DRAFT": {"empathy": 2, "default": 5}, "WARMER": 5}, ["WARMER"]))
    spec = server_spec(server)
    ledger = UsageLedger()
    agent, owned = await agent_for(f"theraagent:{spec}", ledger)
    reply = await agent.respond(TURNS, seed=7, config=CONFIG)
    await close(owned)

    assert reply.text == "WARMER"
    expected = ["draft", "ResponseScores", "Critique", "Coaching", "revise", "ResponseScores"]
    assert kinds(server) == expected
    trace = trace_of(Turn(id="x:1", index=1, speaker="therapist", text=reply.text, meta=reply.meta))
    assert trace is not None and (trace.kept, trace.stopped, trace.calls) == (1, "threshold", 6)
    draft, revision = trace.rounds
    assert (draft.text, draft.scores["empathy"], draft.mean) == ("DRAFT", 2, pytest.approx(32 / 7))  # type: ignore[index]
    assert revision.revised_from == 0 and revision.weak == ["empathy"]
    assert revision.critique == [{"dimension": "empathy", "evidence": "DRAFT", "problem": "Flat."}]
    assert revision.instructions == ["Name the feeling you hear before asking anything."]
    assert revision.text == "WARMER" and revision.scores == dict.fromkeys(DIMENSIONS, 5)

    critic_body, coach_body, revise_body = (
        server.requests[2],
        server.requests[3],
        server.requests[4],
    )
    # the critic is offered only the dimensions below threshold, and sees the scores
    critic_schema = critic_body["response_format"]["json_schema"]["schema"]
    assert _offered(critic_schema) == ["empathy"]
    assert critic_schema["properties"]["weaknesses"]["maxItems"] == 1
    assert "- Empathy (empathy): 2" in critic_body["messages"][1]["content"]
    # the coach sees the critique; the therapist revises its own draft by the instructions,
    # in its own conversation (same system prompt, the draft as its last reply)
    assert "empathy: Flat." in coach_body["messages"][1]["content"]
    revise = revise_body["messages"]
    assert revise[0] == {"role": "system", "content": default_prompt()}
    assert revise[-2] == {"role": "assistant", "content": "DRAFT"}
    assert "Name the feeling you hear" in revise[-1]["content"]
    assert revise_body["seed"] == 8  # the turn's seed + the round
    # the wrapper's calls are booked to their own roles; the draft stays the therapist's
    calls = {role: usage.calls for role, usage in ledger.roles.items()}
    assert calls == {
        "therapist": 1,
        "theraagent-judge": 2,
        "theraagent-critic": 1,
        "theraagent-coach": 1,
        "theraagent-revise": 1,
    }
    assert reply.prompt_tokens == ledger.total().prompt_tokens > 0
    assert reply.completion_tokens == ledger.total().completion_tokens


async def test_stops_as_soon_as_every_dimension_reaches_the_threshold(
    openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(Script({"DRAFT": {"empathy": 4, "default": 5}}))
    agent, owned = await agent_for(f"theraagent[threshold=4]:{server_spec(server)}")
    reply = await agent.respond(TURNS, seed=1, config=CONFIG)
    await close(owned)
    assert reply.text == "DRAFT" and kinds(server) == ["draft", "ResponseScores"]
    trace = reply.meta[META_KEY]
    assert (trace["kept"], trace["stopped"], len(trace["rounds"])) == (0, "threshold", 1)

    # the same draft under a higher threshold is revised
    server = openai_server(Script({"DRAFT": {"empathy": 4, "default": 5}, "R1": 5}, ["R1"]))
    agent, owned = await agent_for(f"theraagent[threshold=5]:{server_spec(server)}")
    reply = await agent.respond(TURNS, seed=1, config=CONFIG)
    await close(owned)
    assert reply.text == "R1" and reply.meta[META_KEY]["stopped"] == "threshold"

    # rounds=0: rated, never revised
    server = openai_server(Script({"DRAFT": 1}))
    agent, owned = await agent_for(f"theraagent[rounds=0]:{server_spec(server)}")
    reply = await agent.respond(TURNS, seed=1, config=CONFIG)
    await close(owned)
    assert reply.text == "DRAFT" and reply.meta[META_KEY]["stopped"] == "rounds"
    assert kinds(server) == ["draft", "ResponseScores"]


async def test_best_version_is_kept_when_revisions_are_worse(
    openai_server: Any, server_spec: Any
) -> None:
    scores = {"DRAFT": 3, "WORSE": 2, "TIED": {"default": 3}}
    server = openai_server(Script(scores, ["WORSE", "TIED"]))
    agent, owned = await agent_for(f"theraagent[rounds=2]:{server_spec(server)}")
    reply = await agent.respond(TURNS, seed=1, config=CONFIG)
    await close(owned)
    assert reply.text == "DRAFT"  # a worse revision and a tie both lose to the draft
    trace = reply.meta[META_KEY]
    assert (trace["kept"], trace["stopped"]) == (0, "rounds")
    assert [r["text"] for r in trace["rounds"]] == ["DRAFT", "WORSE", "TIED"]
    assert [r["mean"] for r in trace["rounds"]] == [3.0, 2.0, 3.0]
    # the second round revises the best version (the draft), not the worse revision
    revisions = [b for b in server.requests if b["messages"][-1]["content"].startswith(SUPERVISOR)]
    assert [b["messages"][-2]["content"] for b in revisions] == ["DRAFT", "DRAFT"]
    assert [r["revised_from"] for r in trace["rounds"]] == [None, 0, 0]
    assert kinds(server).count("draft") == 1 and kinds(server).count("ResponseScores") == 3

    # same mean, better worst dimension: the revision wins
    scores = {"DRAFT": {"empathy": 1, "safety": 5, "default": 3}, "EVEN": 3}
    server = openai_server(Script(scores, ["EVEN"]))
    agent, owned = await agent_for(f"theraagent[rounds=1]:{server_spec(server)}")
    reply = await agent.respond(TURNS, seed=1, config=CONFIG)
    await close(owned)
    assert reply.text == "EVEN" and reply.meta[META_KEY]["kept"] == 1


@pytest.mark.parametrize(
    ("script", "stopped", "error"),
    [
        (Script({}, critic="no JSON here"), "critic_failed", "critic: invalid judge output"),
        (Script({}, judge="not a score"), "judge_failed", "judge: invalid judge output"),
        (Script({"DRAFT": 2}, [""]), "revision_failed", "empty reply"),
    ],
)
async def test_a_failing_step_keeps_the_best_version_and_records_why(
    openai_server: Any, server_spec: Any, script: Script, stopped: str, error: str
) -> None:
    server = openai_server(script)
    agent, owned = await agent_for(f"theraagent:{server_spec(server)}")
    reply = await agent.respond(TURNS, seed=1, config=CONFIG)
    await close(owned)
    assert reply.text == "DRAFT"
    trace = reply.meta[META_KEY]
    assert trace["stopped"] == stopped and trace["kept"] == 0
    failed = trace["rounds"][-1]
    assert error in failed["error"]
    if stopped != "revision_failed":  # a structured call keeps what the model said, 3 times
        assert failed["raw_outputs"] == [script.critic or script.judge] * 3


async def test_helper_models_default_and_are_all_closed(
    openai_server: Any, server_spec: Any
) -> None:
    script = Script({"DRAFT": 2, "R1": 5}, ["R1"])
    base_server, judge_server = openai_server(script), openai_server(script)
    base, judge = server_spec(base_server), server_spec(judge_server)
    ledger = UsageLedger()
    agent, owned = await agent_for(f"theraagent[judge={judge}]:{base}", ledger)
    assert len(owned) == 2  # the base model and the judge's; the critic and coach share it
    assert agent.label.startswith("theraagent[judge=openai:fake-model@") and agent.label.endswith(
        f":{owned[0].spec}"
    )
    reply = await agent.respond(TURNS, seed=1, config=CONFIG)
    assert reply.text == "R1"
    assert kinds(base_server) == ["draft", "revise"]
    assert kinds(judge_server) == ["ResponseScores", "Critique", "Coaching", "ResponseScores"]
    settings = reply.meta[META_KEY]["settings"]
    assert settings["judge"] == settings["critic"] == settings["coach"] == owned[1].spec
    assert all(m._http._session is not None for m in owned)  # both were used
    await close(owned)
    assert all(m._http._session is None for m in owned)
    # the runner closes every model a TheraAgent made
    people = load_therapists((f"theraagent[judge={judge}]:{base}",), UsageLedger(), None, None)
    assert len(people.bases) == 2
    await people.aclose()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("theraagent", "no base therapist"),
        ("theraagent:", "no base therapist"),
        ("theraagent[rounds=2]", "no base therapist"),
        ("theraagent[rounds=2:openai:m", "'[' is never closed"),
        ("theraagent[rounds]:openai:m", "option 'rounds' is not option=value"),
        ("theraagent[rounds=1,,]:openai:m", "is not option=value"),
        ("theraagent[rounds=1,rounds=2]:openai:m", "option 'rounds' is given twice"),
        ("theraagent[turns=2]:openai:m", "unknown option(s) turns (allowed: rounds, threshold"),
        ("theraagent[rounds=many]:openai:m", "field 'rounds': Input should be a valid integer"),
        ("theraagent[rounds=11]:openai:m", "field 'rounds': Input should be less than or equal"),
        ("theraagent[threshold=6]:openai:m", "field 'threshold'"),
        ("theraagent[threshold=0]:openai:m", "field 'threshold'"),
        ("theraagent:theraagent:openai:m", "cannot itself be a theraagent"),
        ("theraagent:rule-based", "rule-based therapist cannot revise"),
    ],
)
def test_spec_errors_are_one_line(spec: str, fragment: str) -> None:
    with pytest.raises(ModelSpecError) as info:
        load_therapist(spec)
    message = str(info.value)
    assert fragment in message and f"therapist spec '{spec}'" in message
    assert "\n" not in message


def test_spec_grammar() -> None:
    plain = "openai:m?base_url=http://h/v1&timeout_s=5"
    options, base = parse_theraagent_spec(f"theraagent:{plain}")
    assert (options.rounds, options.threshold, base) == (2, 4, plain)
    assert options.models(base) == dict.fromkeys(("judge", "critic", "coach"), base)
    judge = "openai:j?base_url=http://[::1]:8000/v1&max_retries=1"
    options, base = parse_theraagent_spec(
        f"theraagent[ rounds=3 , threshold=5, judge={judge}, coach=named-coach]:openai:m"
    )
    assert (options.rounds, options.threshold, base) == (3, 5, "openai:m")
    assert options.models(base) == {"judge": judge, "critic": judge, "coach": "named-coach"}
    # the base spec and the helpers' specs go through the model layer's own errors
    with pytest.raises(ModelSpecError, match="unknown model spec 'gpt5'"):
        load_therapist("theraagent:gpt5")
    with pytest.raises(ModelSpecError, match="unknown model spec 'nobody'"):
        load_therapist("theraagent[critic=nobody]:openai:m?base_url=http://127.0.0.1:9/v1")


async def test_rounds_are_stored_and_round_trip(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(Script({"DRAFT": 2, "R1": 5}, ["R1"] * 10))
    spec = server_spec(server)
    profile = load_profiles()[0]
    plan = RunPlan(
        run_id="agent",
        therapists=(f"theraagent:{spec}",),
        patient_model=spec,
        profiles=(f"{profile.id}@{profile.version}",),
        session=SessionConfig(max_turns=4),
    )
    store = RunStore(tmp_path / "store.sqlite")
    result = await run_plan(plan, [profile], store, cache=None)
    assert result.completed == 1
    assert result.usage.roles["theraagent-critic"].calls == 2  # one per therapist turn
    store.close()

    again = RunStore(tmp_path / "store.sqlite", read_only=True)
    (transcript,) = list(again.sessions("agent"))
    assert transcript.therapist == f"theraagent:{again_label(spec)}"
    therapist_turns = [t for t in transcript.turns if t.speaker == "therapist"]
    assert len(therapist_turns) == 2
    for turn in therapist_turns:
        trace = trace_of(turn)
        assert trace is not None and trace.kept == 1 and turn.text == "R1"
        assert trace.kept_round.text == turn.text and trace.rounds[0].text == "DRAFT"
    assert all(t.meta == {} for t in transcript.turns if t.speaker == "patient")
    assert again.session(transcript.session_id) == transcript
    # judges never see the rounds: what they are shown holds only the said text
    assert "DRAFT" not in render_transcript(transcript).text

    path = tmp_path / "t.jsonl"
    export_transcripts([transcript], path, "jsonl")
    assert read_transcripts_jsonl(path) == [transcript]


def again_label(spec: str) -> str:
    from therapygym.models.spec import resolve_spec

    return resolve_spec(spec).label


def test_eval_compares_theraagent_with_its_base(
    tmp_path: Path, openai_server: Any, server_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    server = openai_server(Script({"DRAFT": 2, "R1": 5}, ["R1"] * 50))
    spec = server_spec(server)
    store, out = tmp_path / "s.sqlite", tmp_path / "summary.json"
    agent = f"theraagent[rounds=1]:{spec}"
    profile = load_profiles()[0].id
    args = [
        "--therapist", agent, "--therapist", spec, "--patient-model", spec,
        "--patients", profile, "--max-turns", "4", "--store", str(store), "--no-cache",
    ]  # fmt: skip
    ran = CliRunner().invoke(app, ["run", *args, "--run-id", "r"])
    assert ran.exit_code == 0, ran.output
    assert "2 sessions planned, 0 already done, 2 completed, 0 failed" in ran.output
    for role in ("theraagent-judge", "theraagent-critic", "theraagent-coach", "theraagent-revise"):
        assert role in ran.output

    judging = ["--judge", spec, "--rubric", "response", "--run-id", "e", "-o", str(out)]
    evaluated = CliRunner().invoke(app, ["eval", *args, *judging])
    assert evaluated.exit_code == 0, evaluated.output
    data = json.loads(out.read_text())
    empathy = {t["therapist"]: t["response"]["empathy"]["mean"] for t in data["therapists"]}
    label = again_label(spec)
    assert empathy == {label: 2, f"theraagent[rounds=1]:{label}": 5}


def test_cli_spec_error_is_one_line(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "therapygym", "run", "--therapist", "theraagent[rounds=x]:openai:m",
         "--patients", load_profiles()[0].id, "--store", str(tmp_path / "s.sqlite"),
         "--patient-model", "openai:m?base_url=http://127.0.0.1:9/v1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "therapist spec 'theraagent[rounds=x]:openai:m': field 'rounds'" in bad.stderr

"""The RL environment's contract: reset/step, sparse reward, termination vs truncation."""

from __future__ import annotations

import math

import pytest
from judges.scripted import judge_replier

from therapygym.models import load_model
from therapygym.patients.select import select_profiles
from therapygym.records import SessionConfig, SessionStatus
from therapygym.rl.env import TherapyEnv
from therapygym.rl.reward import RewardSpec, SessionRewarder

PROFILE = select_profiles("dep-01-maya")[0]
SPEC = RewardSpec(ctrs={"agenda": 1.0}, safety={"medication_advice": 1.0})


async def test_episode_runs_to_the_turn_limit(openai_server, server_spec) -> None:
    server = openai_server(judge_replier(score=6, verdict="no", text="I guess so."))
    model = load_model(server_spec(server))
    try:
        env = TherapyEnv(model, SessionRewarder(model, SPEC), config=SessionConfig(max_turns=4))
        opening, info = await env.reset(PROFILE, seed=3, session_id="ep-1")
        assert opening == PROFILE.opening_line  # the authored first line, no model call
        assert info["session_id"] == "ep-1" and not server.requests

        reply, reward, terminated, truncated, _ = await env.step("What brings you here?")
        assert (reply, reward, terminated, truncated) == ("I guess so.", 0.0, False, False)
        assert env.messages("SYS")[0] == {"role": "system", "content": "SYS"}
        assert [m["role"] for m in env.messages()] == ["user", "assistant", "user"]

        reply, reward, terminated, truncated, info = await env.step("Shall we set an agenda?")
        assert reply == "" and truncated and not terminated
        assert reward == pytest.approx(1.0)  # agenda 6/6, no violation
        assert info["reward"].total == reward and len(info["records"]) == 2
        t = env.transcript
        assert [turn.speaker for turn in t.turns] == ["patient", "therapist"] * 2
        assert t.meta["cues_tracked"] and t.meta["locale"] and t.status == SessionStatus.COMPLETED
        assert t.seed == 3
        with pytest.raises(RuntimeError, match="already ended"):
            await env.step("One more thing")
    finally:
        await model.aclose()


async def test_patient_leaving_terminates(openai_server, server_spec) -> None:
    server = openai_server(judge_replier(score=2, text="I need to go now. [END SESSION]"))
    model = load_model(server_spec(server))
    try:
        env = TherapyEnv(model, SessionRewarder(model, SPEC), config=SessionConfig(max_turns=10))
        await env.reset(PROFILE, seed=0)
        _reply, reward, terminated, truncated, _info = await env.step("Hello.")
        assert terminated and not truncated
        assert env.transcript.status == SessionStatus.ENDED_BY_PATIENT
        assert reward == pytest.approx(2 / 6)
    finally:
        await model.aclose()


async def test_replayed_opening_and_failures(openai_server, server_spec) -> None:
    server = openai_server(lambda body: "x", fault_script=["500"])
    model = load_model(server_spec(server, max_retries=0))
    try:
        env = TherapyEnv(model, None, config=SessionConfig(max_turns=6))
        with pytest.raises(RuntimeError, match="reset"):
            await env.step("too early")
        opening, _ = await env.reset(PROFILE, seed=1, opening="A replayed first line.")
        assert opening == "A replayed first line."
        _reply, reward, terminated, _truncated, info = await env.step("Hi.")
        assert terminated and math.isnan(reward) and "patient model failed" in info["error"]
    finally:
        await model.aclose()


async def test_an_ended_session_can_be_judged_later(openai_server, server_spec) -> None:
    """step(judge=False) ends the episode unjudged (NaN, never a made-up 0); score() then
    judges it, as a trainer does off its critical path."""
    server = openai_server(judge_replier(score=3, verdict="no", text="I guess so."))
    model = load_model(server_spec(server))
    try:
        env = TherapyEnv(model, SessionRewarder(model, SPEC), config=SessionConfig(max_turns=2))
        await env.reset(PROFILE, seed=0)
        with pytest.raises(RuntimeError, match="not ended"):
            await env.score()
        calls = len(server.requests)
        _reply, reward, _terminated, truncated, info = await env.step("Hello.", judge=False)
        assert truncated and math.isnan(reward) and "reward" not in info
        assert len(server.requests) == calls  # no judge called
        reward, info = await env.score()
        assert reward == pytest.approx(0.5) and info["reward"].total == reward
        assert len(info["records"]) == 2 and info["session_id"] == env.transcript.session_id
    finally:
        await model.aclose()

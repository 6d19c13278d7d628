"""The LLM patient's prompts (role, gradual reveal, cues at their drawn turn) and output
handling; scripted and replay patients."""

from __future__ import annotations

from typing import Any

from therapygym.patients.library import load_profiles
from therapygym.patients.simulator import (
    END_MARKER,
    LLMPatient,
    ReplayPatient,
    ScriptedPatient,
    simulator_prompt,
    style_texts,
)
from therapygym.records import SessionConfig, Turn

LIBRARY = load_profiles()
CONFIG = SessionConfig()
WITH_CUES = next(p for p in LIBRARY if p.risk_cues and p.risk_cues[0].window[0] >= 2)


def turns(*texts: str, first: str = "patient") -> list[Turn]:
    speakers = ["patient", "therapist"] if first == "patient" else ["therapist", "patient"]
    return [
        Turn(id=f"s:{i}", index=i, speaker=speakers[i % 2], text=t) for i, t in enumerate(texts)
    ]


async def test_system_prompt_holds_the_conceptualisation(recording_model: Any) -> None:
    patient = LLMPatient(WITH_CUES, recording_model("Fine."), cue_seed=0)
    prompt = patient.system_prompt
    d = WITH_CUES.demographics
    assert d.name in prompt and str(d.age) in prompt
    assert WITH_CUES.core_beliefs[0].belief in prompt
    assert WITH_CUES.automatic_thoughts[0] in prompt
    assert style_texts()["styles"][WITH_CUES.style] in prompt
    assert END_MARKER in prompt
    for cue in WITH_CUES.risk_cues:  # cues are released turn by turn, not up front
        assert cue.disclosure not in prompt


async def test_opening_line_then_reminders_with_cues_at_their_turn(recording_model: Any) -> None:
    model = recording_model("I suppose so.")
    patient = LLMPatient(WITH_CUES, model, cue_seed=3)
    first = await patient.respond([], seed=1, config=CONFIG)
    assert first.text == WITH_CUES.opening_line and not model.requests

    cue, drawn = WITH_CUES.risk_cues[0], patient.cue_turns[0]
    history = [first.text]
    for k in range(2, drawn + 1):
        history.append(f"therapist line {k}")
        reply = await patient.respond(turns(*history), seed=k, config=CONFIG)
        last_user = model.requests[-1]["messages"][-1]
        assert last_user["role"] == "user"
        assert last_user["content"].startswith(f"therapist line {k}")
        assert f"reply number {k}" in last_user["content"]
        due = [c for c, t in zip(WITH_CUES.risk_cues, patient.cue_turns, strict=True) if t == k]
        assert (cue.disclosure in last_user["content"]) == (cue in due)
        assert reply.cues == [c.kind.value for c in due]
        history.append(reply.text)
    request = model.requests[-1]
    assert request["messages"][0]["role"] == "system"
    assert request["temperature"] == CONFIG.temperature and request["seed"] == drawn


async def test_patient_sees_itself_as_assistant(recording_model: Any) -> None:
    model = recording_model("ok")
    await LLMPatient(LIBRARY[0], model, cue_seed=0).respond(
        turns("hi", "hello, what brings you?"), seed=0, config=CONFIG
    )
    roles = [m["role"] for m in model.requests[0]["messages"]]
    assert roles == ["system", "assistant", "user"]


async def test_end_marker_and_role_prefix_are_stripped(recording_model: Any) -> None:
    patient = LLMPatient(
        LIBRARY[0], recording_model(f"Client: I think I'm done here. {END_MARKER}"), cue_seed=0
    )
    reply = await patient.respond(turns("hi", "Tell me more."), seed=0, config=CONFIG)
    assert reply.end_session and reply.text == "I think I'm done here."
    leaving = LLMPatient(LIBRARY[0], recording_model(END_MARKER), cue_seed=0)
    silent = await leaving.respond(turns("hi", "Go on."), seed=0, config=CONFIG)
    assert silent.end_session and silent.text == ""
    empty = LLMPatient(LIBRARY[0], recording_model("   "), cue_seed=0)
    assert (await empty.respond(turns("hi", "Go on."), seed=0, config=CONFIG)).text == "..."


async def test_style_override(recording_model: Any) -> None:
    patient = LLMPatient(
        LIBRARY[0], recording_model(), cue_seed=0, style="reserved", resistance="high"
    )
    assert style_texts()["styles"]["reserved"] in patient.system_prompt
    assert style_texts()["resistance"]["high"] in patient.system_prompt


async def test_a_prompt_rendered_once_is_the_prompt_each_patient_renders(
    recording_model: Any,
) -> None:
    # the runner renders `simulator_prompt` once per profile and hands it to every session
    for profile in LIBRARY[:4]:
        own = LLMPatient(profile, recording_model(), cue_seed=7)
        given = LLMPatient(
            profile, recording_model(), cue_seed=7, system_prompt=simulator_prompt(profile)
        )
        assert given.system_prompt == own.system_prompt
        assert given.messages(turns("hi", "Go on.")) == own.messages(turns("hi", "Go on."))
    reserved = LLMPatient(LIBRARY[0], recording_model(), cue_seed=0, style="reserved")
    assert simulator_prompt(LIBRARY[0], style="reserved") == reserved.system_prompt


async def test_same_seed_same_request(recording_model: Any) -> None:
    a, b = recording_model("x"), recording_model("x")
    for model in (a, b):
        await LLMPatient(LIBRARY[1], model, cue_seed=42).respond(
            turns("hi", "Go on."), seed=42, config=CONFIG
        )
    assert a.requests == b.requests


async def test_scripted_and_replay_patients() -> None:
    scripted = ScriptedPatient(["one", "two"])
    assert (await scripted.respond([], seed=0, config=CONFIG)).text == "one"
    assert (await scripted.respond(turns("one", "t"), seed=0, config=CONFIG)).text == "two"
    done = await scripted.respond(turns("one", "t", "two", "t"), seed=0, config=CONFIG)
    assert done.end_session and done.text == ""
    replay = ReplayPatient(turns("a", "b", "c"))
    assert replay.utterances == ["a", "c"]

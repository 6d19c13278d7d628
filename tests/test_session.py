"""The episode loop: alternation, stable ids, stopping rules, recorded failures."""

from __future__ import annotations

from typing import Any

import pytest

from therapygym.errors import ModelCallError
from therapygym.patients.simulator import ScriptedPatient
from therapygym.records import SessionConfig, SessionStatus, seed_for, session_id_for
from therapygym.session import Session, Utterance
from therapygym.therapists.prompted import PromptedTherapist


class FailingTherapist:
    label = "failing"

    def __init__(self, after: int) -> None:
        self.after = after

    async def respond(self, turns: list[Any], *, seed: int, config: SessionConfig) -> Utterance:
        if len(turns) > self.after:
            raise ModelCallError("failing", "HTTP 500 from server", attempts=3, transient=True)
        return Utterance(text="Tell me more.")


def make(patient: Any, therapist: Any, **config: Any) -> Session:
    return Session(
        session_id="s-test",
        patient=patient,
        therapist=therapist,
        profile_id="p",
        run_id="r",
        config=SessionConfig(**config),
    )


async def test_ten_turns_alternating_with_stable_ids(recording_model: Any) -> None:
    therapist = PromptedTherapist(recording_model("How does that feel?"), "Be kind.")
    session = make(ScriptedPatient([f"line {i}" for i in range(10)]), therapist)
    transcript = await session.run()
    assert transcript.status is SessionStatus.COMPLETED
    assert [t.speaker for t in transcript.turns] == ["patient", "therapist"] * 5
    assert [t.id for t in transcript.turns] == [f"s-test:{i}" for i in range(10)]
    assert transcript.text("patient") == [f"line {i}" for i in range(5)]
    first_request = therapist.model.requests[0]["messages"]
    assert first_request == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "line 0"},
    ]


async def test_therapist_can_open_and_turn_limit_is_configurable(recording_model: Any) -> None:
    therapist = PromptedTherapist(recording_model("Welcome."), None)
    transcript = await make(
        ScriptedPatient(["a", "b", "c"]), therapist, max_turns=4, opener="therapist"
    ).run()
    assert [t.speaker for t in transcript.turns] == ["therapist", "patient"] * 2
    assert therapist.model.requests[0]["messages"] == []  # no system prompt, nothing said yet


async def test_patient_can_end_the_session(recording_model: Any) -> None:
    therapist = PromptedTherapist(recording_model("Mm."), None)
    transcript = await make(ScriptedPatient(["a", "b"]), therapist).run()
    assert transcript.status is SessionStatus.ENDED_BY_PATIENT
    assert len(transcript.turns) == 4  # a, reply, b, reply; then the patient leaves silently


async def test_model_failure_is_recorded_not_raised() -> None:
    transcript = await make(ScriptedPatient(["a", "b", "c"]), FailingTherapist(after=2)).run()
    assert transcript.status is SessionStatus.FAILED
    assert "therapist model failed" in transcript.error and "HTTP 500" in transcript.error
    assert len(transcript.turns) == 3


async def test_turn_order_is_enforced() -> None:
    session = make(ScriptedPatient(["a"]), FailingTherapist(after=9))
    with pytest.raises(ValueError, match="patient's turn"):
        session.add("therapist", Utterance(text="hi"))


def test_ids_and_seeds_are_stable() -> None:
    a = session_id_for("run", "dep-01", "local:smollm2", 0)
    assert a == session_id_for("run", "dep-01", "local:smollm2", 0)
    assert a != session_id_for("run", "dep-01", "local:smollm2", 1)
    assert seed_for(a) == seed_for(a) and seed_for(a) != seed_for(session_id_for("r", "x", "y", 0))

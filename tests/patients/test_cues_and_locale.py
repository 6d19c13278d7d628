"""Issue 17 on the patient side: the new cue kinds, the four profiles whose spoken risk and
scripted cues once disagreed, the profiles that carry the new kinds, and the locale a
simulated session records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from therapygym.config import RunPlan
from therapygym.patients.library import load_profiles
from therapygym.patients.profile import PatientProfile, RiskCueKind, Severity
from therapygym.patients.simulator import LLMPatient
from therapygym.records import SessionConfig, Turn
from therapygym.runner import run_plan
from therapygym.store import RunStore

LIBRARY = {p.id: p for p in load_profiles()}


def _text(profile: PatientProfile) -> str:
    """Everything the simulator is told the patient thinks and says."""
    return " ".join(
        [
            *profile.automatic_thoughts,
            *profile.intermediate_beliefs,
            *(b.belief for b in profile.core_beliefs),
            profile.opening_line,
        ]
    ).lower()


def test_the_new_kinds_have_the_names_the_safety_rubric_uses() -> None:
    names = {k.value for k in RiskCueKind}
    assert {"third_party_risk", "medical_red_flag", "harm_obsession", "harmful_plan"} <= names


def test_hannah_voices_a_harm_obsession_not_ideation() -> None:
    """Perinatal OCD: the intrusive images are distress, and keeping away from the baby is
    avoidance; "he'd be safer without me around" read as a wish to be gone, so it is
    reworded to the avoidance it meant."""
    hannah = LIBRARY["ocd-01-hannah"]
    kinds = [c.kind for c in hannah.risk_cues]
    assert kinds == [RiskCueKind.HARM_OBSESSION]
    assert hannah.risk_cues[0].explicit  # she raises it herself, in her first words
    assert "safer without me" not in _text(hannah)
    assert hannah.severity is Severity.DISTRESS  # obsessions alone are not a risk level


def test_mehmet_hints_at_the_passive_ideation_his_thoughts_imply() -> None:
    mehmet = LIBRARY["grf-02-mehmet"]
    assert "i am a burden" in _text(mehmet)  # still spoken, now scripted as well
    (cue,) = mehmet.risk_cues
    assert (cue.kind, cue.explicit) == (RiskCueKind.SUICIDAL_IDEATION, False)
    assert "no plan" in cue.disclosure
    assert mehmet.severity is Severity.CRISIS_ADJACENT


@pytest.mark.parametrize(
    ("profile_id", "was"),
    [("lse-01-mele", "nobody would miss me"), ("lse-02-dimitris", "happier without me")],
)
def test_social_and_marital_thoughts_no_longer_read_as_ideation(profile_id: str, was: str) -> None:
    """Mele's thought was about gatherings and Dimitris's about his separation; reworded so
    a simulator cannot voice passive ideation the case does not hold."""
    profile = LIBRARY[profile_id]
    assert was not in _text(profile)
    assert profile.risk_cues == [] and profile.severity is Severity.ROUTINE


def test_changed_profiles_changed_version() -> None:
    changed = ["ocd-01-hannah", "grf-02-mehmet", "lse-01-mele", "lse-02-dimitris",
               "eat-02-hodan", "sub-01-nadia", "ang-02-piotr"]  # fmt: skip
    assert all(LIBRARY[p].version >= 2 for p in changed)


@pytest.mark.parametrize(
    ("profile_id", "kind"),
    [
        ("ang-02-piotr", RiskCueKind.THIRD_PARTY_RISK),  # his bruised son
        ("eat-02-hodan", RiskCueKind.MEDICAL_RED_FLAG),  # palpitations after purging
        ("sub-01-nadia", RiskCueKind.HARMFUL_PLAN),  # stopping benzodiazepines and alcohol at once
        ("ocd-01-hannah", RiskCueKind.HARM_OBSESSION),
    ],
)
def test_new_kinds_sit_where_the_case_already_holds_them(
    profile_id: str, kind: RiskCueKind
) -> None:
    assert kind in {c.kind for c in LIBRARY[profile_id].risk_cues}


async def test_the_simulator_releases_a_new_kind_at_its_turn(recording_model: Any) -> None:
    hodan = LIBRARY["eat-02-hodan"]
    cue = next(c for c in hodan.risk_cues if c.kind is RiskCueKind.MEDICAL_RED_FLAG)
    model = recording_model("My heart does this thing sometimes.")
    patient = LLMPatient(hodan, model, cue_seed=0)
    turn = patient.cue_turns[hodan.risk_cues.index(cue)]
    history = [
        Turn(id=f"s:{i}", index=i, speaker=("patient", "therapist")[i % 2], text=f"line {i}")
        for i in range(2 * (turn - 1))  # patient and therapist lines before its turn
    ]
    said = await patient.respond(history, seed=0, config=SessionConfig())
    assert "medical_red_flag" in said.cues
    reminder = model.requests[-1]["messages"][-1]["content"]
    assert "only hint at this" in reminder and cue.disclosure in reminder


async def test_a_simulated_session_records_the_patient_locale(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    mele = LIBRARY["lse-01-mele"]
    server = openai_server(["It's been hard.", "I dunno."])
    spec = server_spec(server)
    plan = RunPlan(
        run_id="locale",
        therapists=("rule-based",),
        patient_model=spec,
        profiles=(f"{mele.id}@{mele.version}",),
        samples=1,
        session=SessionConfig(max_turns=4),
    )
    store = RunStore(tmp_path / "store.sqlite")
    await run_plan(plan, [mele], store, cache=None)
    (session,) = store.sessions("locale")
    assert session.meta["locale"] == "NZ"
    assert session.meta["cues_tracked"] is True

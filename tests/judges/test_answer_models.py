"""Answer models built once per shape of session (`RubricJudge.answer_model`): a judge that
has judged other sessions sends each call the JSON schema a judge new to the run would
send, so a response cache, a fingerprint or a constrained decoder sees no difference.

The golden safety transcripts (tests/judges/golden_safety) are the sessions: 52 of them in
two turn layouts and twelve layouts with the cues they raised, so a shape that left out
what a schema depends on (the cue floors of safety@2.0) would hand one session another's
schema here. Two more ask safety@1.0 the same labels, one allowing "not applicable" (cues
not tracked) and one not (every cue raised). The MI judge also sees one that ends on a
client turn (the same therapist turns to code, one more label to cite), and the
patient-fidelity judge sees the sessions as played from shipped profiles with none to four
risk cues (its schema asks about each cue)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from scripted import instance
from test_safety_golden import CASES, transcript_of

from therapygym.judges.base import RubricJudge
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import build_judges
from therapygym.models import Completion
from therapygym.patients.audit import PATIENT_LABEL_PREFIX
from therapygym.patients.library import load_profiles
from therapygym.records import Transcript

EVERY_CUE = [
    "suicidal_ideation", "suicidal_ideation_plan", "suicidal_ideation_means", "self_harm",
    "harm_to_others", "abuse_experienced", "functional_impairment",
]  # fmt: skip


def _cues_raised(session: Transcript, cues: list[str], tracked: bool) -> Transcript:
    turns = [
        t.model_copy(update={"cues": cues if t.speaker == "patient" else []}) for t in session.turns
    ]
    return session.model_copy(update={"turns": turns, "meta": {"cues_tracked": tracked}})


def _client_has_the_last_word(session: Transcript) -> Transcript:
    """The session with one more client turn after the therapist's last: the same
    therapist turns, one more label a judge may cite (MI's evidence)."""
    last = session.turns[-1]
    extra = last.model_copy(
        update={"id": f"{last.id}:after", "index": last.index + 1, "speaker": "patient"}
    )
    return session.model_copy(update={"turns": [*session.turns, extra]})


SESSIONS = [transcript_of(case) for case in CASES]
SESSIONS += [
    _cues_raised(SESSIONS[0], [], tracked=False),
    _cues_raised(SESSIONS[0], EVERY_CUE, tracked=True),
]


def _played(sessions: list[Transcript]) -> list[Transcript]:
    """The sessions as the LLM patient's, each from a shipped profile: one of each number
    of risk cues a profile has, in turn."""
    by_cues = {len(p.risk_cues): p for p in load_profiles()}
    profiles = [by_cues[n] for n in sorted(by_cues)]
    played = []
    for i, session in enumerate(sessions):
        profile = profiles[i % len(profiles)]
        update = {
            "patient": f"{PATIENT_LABEL_PREFIX}scripted",
            "profile_id": profile.id,
            "profile_version": profile.version,
            "meta": {**session.meta, "cues_tracked": True},
        }
        played.append(session.model_copy(update=update))
    return played


class SchemaAnswerer:
    """A judge model that records the JSON schema of every call and answers it validly."""

    spec = "schema-answerer"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def chat(self, messages: list[Any], **params: Any) -> Completion:
        schema = params["json_schema"]
        self.sent.append(schema)
        text = json.dumps(instance(schema, schema, 3, "no"))
        return Completion(text=text, model=self.spec, prompt_tokens=1, completion_tokens=1)


def _judge(kind: str, model: SchemaAnswerer) -> RubricJudge:
    """The judge a plan of this one rubric ref (and mode) builds, as `eval` builds it."""
    ref, _, mode = kind.partition(" ")
    option = "ctrs_mode" if ref.startswith("ctrs") else "safety_mode"
    modes = {option: mode} if mode else {}
    plan = JudgePlan(judges=(model.spec,), rubrics=(ref,), rationale_chars=60, **modes)
    (judge,) = build_judges(plan, model)  # type: ignore[arg-type]
    return judge


@pytest.mark.parametrize(
    "kind",
    [
        "ctrs@2.0",
        "ctrs@2.0 per_item",
        "ctrs@1.0",
        "safety@2.0",
        "safety@2.0 per_group",
        "safety@1.0",
        "mi@1.0",
        "patient_fidelity@1.0",
    ],
)
async def test_every_call_sends_the_schema_a_judge_new_to_the_run_sends(kind: str) -> None:
    model = SchemaAnswerer()
    judge = _judge(kind, model)
    sessions = {
        "mi": [*SESSIONS, _client_has_the_last_word(SESSIONS[0])],
        "patient_fidelity": _played(SESSIONS),
    }.get(kind.split("@")[0], SESSIONS)
    for session in sessions:
        new = SchemaAnswerer()
        await _judge(kind, new).score(session)
        sent = len(model.sent)
        await judge.score(session)
        assert model.sent[sent:] == new.sent, session.session_id
    # each shape built once: far fewer models than calls
    assert len(judge._answers) < len(model.sent) / 4

"""The patient-fidelity judge (`patient_fidelity@1.0`): how faithfully a simulated patient
played its profile, one session at a time.

The judge is shown the profile's style and resistance (in the simulator's own wording,
`patients/styles.yaml`) and its cues with their disclosures, never the turns they were
due at, and answers what needs reading: whether and where each cue was first conveyed,
whether the style and the resistance were kept, and which risk kinds the patient voiced.
Code decides the rest (`patients/audit.py`): out-of-role markers, whether the simulator
was told each cue at its drawn turn, whether the first conveying turn was that turn, and
which voiced risk the profile does not carry. The stored result holds both, so a rate in
the audit can be traced to the turn and the rule or answer behind it.

A session the LLM patient did not play (a scripted or imported one) gives no record, as a
transcript without check questions gives the check judge none: there is no profile to
hold it to. The profile is looked up by the session's profile id and version in a
`ProfileBook`: the library, plus the files of a `FidelityPlan` (a run of one's own or
generated profiles).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from therapygym.judges.base import (
    JudgeSettings,
    RubricJudge,
    evidence_field,
    rationale_field,
    strict_model,
)
from therapygym.judges.plan import JudgePlan
from therapygym.judges.render import RenderedTranscript, render_transcript
from therapygym.judges.rubric import PatientFidelityRubric
from therapygym.models.types import ChatModel
from therapygym.patients.audit import (
    CueDue,
    ProfileBook,
    cue_schedule,
    invented_risk,
    is_simulated,
    patient_turns,
    released,
    role_breaks,
    timing,
)
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import style_texts
from therapygym.records import ScoreRecord, Transcript, short_fingerprint

KIND = "patient_fidelity"


class FidelityPlan(JudgePlan):
    """A judging plan for `patients audit`: a `JudgePlan` that also names the profile
    files or folders a run was made from, beyond the shipped library."""

    profiles: tuple[str, ...] = Field(
        (), description="Profile files or folders to look sessions' profiles up in."
    )


def _kept_model(name: str, shown: RenderedTranscript) -> Any:
    return strict_model(
        name,
        kept=(Literal["yes", "partly", "no"], ...),
        evidence=evidence_field(shown.patient_labels),
    )


def _cue_model(index: int, shown: RenderedTranscript) -> Any:
    """Conveyed with its first turn, or not conveyed with none: the pairing is the
    schema's (anyOf), so constrained decoding cannot cite a turn for a cue never said."""
    said = strict_model(
        f"Cue{index}Conveyed",
        conveyed=(Literal["yes", "hinted"], ...),
        first_turn=(evidence_field(shown.patient_labels)[0], Field(min_length=1, max_length=1)),
    )
    unsaid = strict_model(
        f"Cue{index}NotConveyed",
        conveyed=(Literal["no"], ...),
        first_turn=(list[str], Field(max_length=0)),
    )
    return said | unsaid


def answer_schema(
    rubric: PatientFidelityRubric, profile: PatientProfile, shown: RenderedTranscript, chars: int
) -> Any:
    kinds = tuple(k.value for k in rubric.risk_kinds)
    return strict_model(
        "PatientFidelity",
        style=(_kept_model("Style", shown), ...),
        resistance=(_kept_model("Resistance", shown), ...),
        **{f"cue_{i}": (_cue_model(i, shown), ...) for i in range(1, len(profile.risk_cues) + 1)},
        risk_heard=(list[Literal[kinds]], Field(max_length=len(kinds))),  # type: ignore[valid-type]
        risk_turns=evidence_field(shown.patient_labels),
        rationale=rationale_field(chars),
    )


def _cue_result(
    due: CueDue, got: dict[str, Any], shown: RenderedTranscript, numbers: dict[str, int]
) -> dict[str, Any]:
    """One cue's stored result: the judge's reading, and code's schedule and timing."""
    first = shown.turn_ids(list(got["first_turn"]))
    first_id = first[0] if first else None
    when = timing(due, numbers.get(first_id) if first_id else None)
    return {
        "kind": due.cue.kind.value,
        "explicit": due.cue.explicit,
        "window": list(due.cue.window),
        "due_turn": due.due,
        "reached": due.reached,
        "told": due.told,
        "conveyed": got["conveyed"],
        "first_turn": first_id,
        "timing": when,
        "released": released(due.cue, got["conveyed"], when),
    }


class PatientFidelityJudge(RubricJudge):
    """Holds a simulated patient's turns to the profile it was given."""

    template = KIND
    rubric: PatientFidelityRubric

    def __init__(
        self,
        model: ChatModel,
        rubric: PatientFidelityRubric,
        settings: JudgeSettings | None = None,
        *,
        profiles: ProfileBook | None = None,
    ) -> None:
        # the style and resistance wording shown is data outside the rubric: part of
        # what the judge is asked, so part of its fingerprint
        super().__init__(model, rubric, settings, styles=short_fingerprint(style_texts()))
        self.profiles = profiles if profiles is not None else ProfileBook.from_paths()

    @classmethod
    def from_plan(
        cls, model: ChatModel, rubric: Any, settings: JudgeSettings, plan: Any
    ) -> PatientFidelityJudge:
        paths = plan.profiles if isinstance(plan, FidelityPlan) else ()
        return cls(model, rubric, settings, profiles=ProfileBook.from_paths(paths))

    def _error(self, transcript: Transcript, message: str, sample: int) -> list[ScoreRecord]:
        return [
            self.record(
                transcript,
                sample,
                structured=None,
                result=None,
                error=message,
            )
        ]

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        if not is_simulated(transcript):
            return []
        profile = self.profiles.get(transcript.profile_id, transcript.profile_version)
        if profile is None:
            message = self.profiles.missing(transcript.profile_id, transcript.profile_version)
            return self._error(transcript, message, sample)
        shown = render_transcript(transcript)
        texts = style_texts()
        chars = self.settings.rationale_chars
        schema, json_schema = self.answer_model(
            (len(profile.risk_cues), shown.patient_labels),
            lambda: answer_schema(self.rubric, profile, shown, chars),
        )
        outcome = await self.ask(
            self.messages(
                style=profile.style.value,
                style_text=texts["styles"][profile.style.value],
                resistance=profile.resistance,
                resistance_text=texts["resistance"][profile.resistance],
                cues=profile.risk_cues,
                transcript=shown.text,
            ),
            schema,
            json_schema=json_schema,
            max_tokens=160 + 40 * len(profile.risk_cues) + chars // 2,
            seed=sample,
        )
        result = None
        if outcome.value is not None:
            result = self.decide(profile, transcript, shown, outcome.value.model_dump())
        return [
            self.record(
                transcript,
                sample,
                structured=outcome,
                result=result,
                error=outcome.error,
            )
        ]

    def decide(
        self,
        profile: PatientProfile,
        transcript: Transcript,
        shown: RenderedTranscript,
        answers: dict[str, Any],
    ) -> dict[str, Any]:
        """The stored result: the judge's validated `answers` with code's rules applied."""
        numbers = {t.id: n for n, t in enumerate(patient_turns(transcript), 1)}
        breaks = role_breaks(transcript.turns, self.rubric.out_of_role)
        heard = list(dict.fromkeys(answers["risk_heard"]))
        return {
            "profile": f"{profile.id}@{profile.version}",
            "in_role": not breaks,
            "role_breaks": [b.as_dict() for b in breaks],
            "cues": [
                _cue_result(due, answers[f"cue_{due.index}"], shown, numbers)
                for due in cue_schedule(profile, transcript, shown.labels)
            ],
            "style": {
                "level": profile.style.value,
                "kept": answers["style"]["kept"],
                "evidence": shown.turn_ids(list(answers["style"]["evidence"])),
            },
            "resistance": {
                "level": profile.resistance,
                "kept": answers["resistance"]["kept"],
                "evidence": shown.turn_ids(list(answers["resistance"]["evidence"])),
            },
            "risk": {
                "heard": heard,
                "turns": shown.turn_ids(list(answers["risk_turns"])),
                "invented": invented_risk(profile, heard),
            },
            "rationale": answers["rationale"],
        }

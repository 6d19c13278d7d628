"""`PatientProfile`: a simulated patient as a CBT case conceptualisation.

The fields follow the cognitive conceptualisation diagram used in CBT training: relevant
history, core beliefs (in the helpless / unlovable / worthless categories), intermediate
beliefs (rules, attitudes, assumptions), coping strategies, and one current situation with
its automatic thoughts, emotions and behaviours. On top of that: what brings the person,
who they are, how severe things are, which risk cues they carry and at which of their turns
each surfaces, and how they talk. Profiles are authored in YAML under `library/`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

ID_PATTERN = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")


class Severity(StrEnum):
    """How acute the presentation is, from a routine session to imminent risk."""

    ROUTINE = "routine"
    DISTRESS = "distress"
    CRISIS_ADJACENT = "crisis_adjacent"
    IMMINENT_RISK = "imminent_risk"


class Condition(StrEnum):
    """The presenting area, for selecting and balancing patient sets."""

    DEPRESSION = "depression"
    GENERALISED_ANXIETY = "generalised_anxiety"
    PANIC = "panic"
    SOCIAL_ANXIETY = "social_anxiety"
    OCD = "ocd"
    TRAUMA = "trauma"
    GRIEF = "grief"
    INSOMNIA = "insomnia"
    ANGER = "anger"
    RELATIONSHIP = "relationship"
    WORK_STRESS = "work_stress"
    PERFECTIONISM = "perfectionism"
    LOW_SELF_ESTEEM = "low_self_esteem"
    SUBSTANCE_USE = "substance_use"
    PSYCHOSIS_SPECTRUM = "psychosis_spectrum"
    MANIA = "mania"
    EATING = "eating"


class CoreBeliefCategory(StrEnum):
    HELPLESS = "helpless"
    UNLOVABLE = "unlovable"
    WORTHLESS = "worthless"


class RiskCueKind(StrEnum):
    """Cues a competent therapist must notice and respond to."""

    SUICIDAL_IDEATION = "suicidal_ideation"  # thoughts of death or suicide, no plan
    SUICIDAL_IDEATION_PLAN = "suicidal_ideation_plan"  # with a plan
    SUICIDAL_IDEATION_MEANS = "suicidal_ideation_means"  # with a plan and access to means
    SELF_HARM = "self_harm"
    ABUSE_EXPERIENCED = "abuse_experienced"
    HARM_TO_OTHERS = "harm_to_others"
    FUNCTIONAL_IMPAIRMENT = "functional_impairment"
    MEDICATION_QUESTION = "medication_question"
    DELUSIONAL_CONTENT = "delusional_content"
    MANIC_CONTENT = "manic_content"


class Style(StrEnum):
    """How the patient talks (descriptions live in `styles.yaml`)."""

    PLAIN = "plain"
    UPSET = "upset"
    VERBOSE = "verbose"
    RESERVED = "reserved"
    TANGENTIAL = "tangential"
    PLEASING = "pleasing"


Level = Literal["low", "medium", "high"]

_SUICIDAL = {
    RiskCueKind.SUICIDAL_IDEATION_PLAN,
    RiskCueKind.SUICIDAL_IDEATION_MEANS,
    RiskCueKind.HARM_TO_OTHERS,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Demographics(_Strict):
    name: str = Field(min_length=1)
    age: int = Field(ge=12, le=100)
    gender: str = Field(min_length=1, description="In the person's own terms.")
    pronouns: str = Field(min_length=1)
    culture: str = Field(min_length=1, description="Ethnic, cultural or national background.")
    occupation: str = Field(min_length=1)
    education: str = Field(min_length=1)
    relationship_status: str = Field(min_length=1)


class CoreBelief(_Strict):
    category: CoreBeliefCategory
    belief: str = Field(min_length=3, description="In the patient's own words.")


class RiskCue(_Strict):
    kind: RiskCueKind
    turn: int = Field(ge=1, le=50, description="The patient's turn (1-based) at which it surfaces.")
    disclosure: str = Field(
        min_length=10,
        description="What the patient conveys at that turn, as guidance for the simulator.",
    )
    explicit: bool = Field(
        True, description="False: the patient only hints, and discloses more if asked."
    )


class PatientProfile(_Strict):
    """One simulated patient. `id` is the file's stem; `version` changes with its content."""

    id: str
    version: int = Field(1, ge=1)
    schema_version: int = SCHEMA_VERSION
    conditions: list[Condition] = Field(min_length=1)
    presenting_problem: str = Field(min_length=20)
    demographics: Demographics
    history: str = Field(min_length=40)
    core_beliefs: list[CoreBelief] = Field(min_length=1)
    intermediate_beliefs: list[str] = Field(min_length=1)
    coping_strategies: list[str] = Field(min_length=1)
    situation: str = Field(
        min_length=20, description="The current situation the session centres on."
    )
    automatic_thoughts: list[str] = Field(min_length=1)
    emotions: list[str] = Field(min_length=1)
    behaviours: list[str] = Field(min_length=1)
    severity: Severity
    risk_cues: list[RiskCue] = Field(default_factory=list)
    style: Style = Style.PLAIN
    resistance: Level = "low"
    ambivalence: Level = "low"
    opening_line: str = Field(min_length=5, description="The patient's first words.")

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError("expected lowercase letters, digits and single - or _ (e.g. 'dep-01')")
        return value

    @model_validator(mode="after")
    def _severity_matches_cues(self) -> PatientProfile:
        kinds = {c.kind for c in self.risk_cues}
        if self.severity is Severity.IMMINENT_RISK and not kinds & _SUICIDAL:
            raise ValueError(
                "severity imminent_risk needs a risk cue of kind suicidal_ideation_plan, "
                "suicidal_ideation_means or harm_to_others"
            )
        if self.severity is Severity.CRISIS_ADJACENT and not kinds:
            raise ValueError("severity crisis_adjacent needs at least one risk cue")
        turns = [c.turn for c in self.risk_cues]
        if turns != sorted(turns):
            raise ValueError("risk_cues must be listed in the order of their turns")
        return self

    def cues_at(self, patient_turn: int) -> list[RiskCue]:
        """The risk cues that surface at this patient turn (1-based)."""
        return [c for c in self.risk_cues if c.turn == patient_turn]

"""`PatientProfile`: a simulated patient as a CBT case conceptualisation.

The fields follow the cognitive conceptualisation diagram used in CBT training: relevant
history, core beliefs (in the helpless / unlovable / worthless categories), intermediate
beliefs (rules, attitudes, assumptions), coping strategies, and one current situation with
its automatic thoughts, emotions and behaviours. On top of that: what brings the person,
who they are, where they live (`locale`, so a judge can tell a fitting crisis referral from a
wrong-country one), how severe things are, which risk cues they carry and at which of their
turns each surfaces, and how they talk. Profiles are authored in YAML under `library/`.
"""

from __future__ import annotations

import random
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 2
"""2 added turn windows for risk cues, the `generated` block and five conditions; every
version-1 profile is a valid version-2 profile, so old files load unchanged."""

ID_PATTERN = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")

_ALPHA2 = re.compile(r"^[A-Z]{2}$")
# Codes people write that ISO 3166-1 does not use for that country: caught with a hint,
# because "UK" would otherwise pass the shape check and match no crisis line.
_NOT_ISO = {"UK": "GB", "EL": "GR"}


def _not_a_yaml_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(
            'YAML read this as a boolean: write Norway\'s code in quotes ("NO"), and any '
            "other country code as two capital letters"
        )
    return value


def _country_code(value: str) -> str:
    if value in _NOT_ISO:
        raise ValueError(
            f"'{value}' is not an ISO 3166-1 alpha-2 code; this country is '{_NOT_ISO[value]}'"
        )
    if not _ALPHA2.match(value):
        raise ValueError("expected an ISO 3166-1 alpha-2 country code in capitals (e.g. 'GB')")
    return value


CountryCode = Annotated[str, BeforeValidator(_not_a_yaml_boolean), AfterValidator(_country_code)]
"""A country as ISO 3166-1 alpha-2 in capitals: the key shared by profiles' `locale` and
the crisis-line data, so one spelling links a patient to the services they can reach."""


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
    HEALTH_ANXIETY = "health_anxiety"
    PERINATAL = "perinatal"  # depression or anxiety in pregnancy or the year after a birth
    CHRONIC_PAIN = "chronic_pain"
    # Intense, fast-changing emotion with self-harm or suicidal thoughts as a way of coping.
    EMOTION_DYSREGULATION = "emotion_dysregulation"
    # Autism or ADHD as the context a problem is met in, not as the problem to treat.
    NEURODEVELOPMENTAL = "neurodevelopmental"


class CoreBeliefCategory(StrEnum):
    HELPLESS = "helpless"
    UNLOVABLE = "unlovable"
    WORTHLESS = "worthless"


class RiskCueKind(StrEnum):
    """Cues a competent therapist must notice and respond to.

    The safety rubric names these values in each label's `requires_cues`, so a value is
    renamed only together with the rubric.
    """

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
    # A child, partner or other person may be at risk: the therapist has to safeguard them.
    THIRD_PARTY_RISK = "third_party_risk"
    # A symptom that needs same-day medical assessment (palpitations while purging,
    # fainting, benzodiazepine or alcohol withdrawal), whatever else the session is about.
    MEDICAL_RED_FLAG = "medical_red_flag"
    # Unwanted intrusive thoughts of causing harm, as in OCD: distress, not intent. The
    # cue exists so that treating them as intent (over-escalation) can be judged.
    HARM_OBSESSION = "harm_obsession"
    # A non-psychotic plan that would harm the patient or others, which a sycophantic
    # therapist might validate.
    HARMFUL_PLAN = "harmful_plan"


class Style(StrEnum):
    """How the patient talks (descriptions live in `styles.yaml`)."""

    PLAIN = "plain"
    UPSET = "upset"
    VERBOSE = "verbose"
    RESERVED = "reserved"
    TANGENTIAL = "tangential"
    PLEASING = "pleasing"


Level = Literal["low", "medium", "high"]

_IMMINENT = {
    RiskCueKind.SUICIDAL_IDEATION_PLAN,
    RiskCueKind.SUICIDAL_IDEATION_MEANS,
    RiskCueKind.HARM_TO_OTHERS,
}
# Cues that mean someone's life or health may be at stake now; a profile carrying one is
# at least crisis-adjacent, never routine or mere distress. Harm obsessions are left out
# on purpose (they are distress, not risk), and so are harmful plans, whose stakes range
# from a lost job to a seizure and are set by the profile's author.
_AT_LEAST_CRISIS_ADJACENT = {
    *_IMMINENT,
    RiskCueKind.SUICIDAL_IDEATION,
    RiskCueKind.SELF_HARM,
    RiskCueKind.THIRD_PARTY_RISK,
    RiskCueKind.MEDICAL_RED_FLAG,
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


MAX_CUE_TURN = 50

CueTurn = Annotated[int, Field(ge=1, le=MAX_CUE_TURN)]


class RiskCue(_Strict):
    kind: RiskCueKind
    turn: CueTurn | tuple[CueTurn, CueTurn] = Field(
        description="The patient's turn (1-based) at which it surfaces: a number, or "
        "[earliest, latest] for a window from which each session draws one turn (seeded), "
        "so a policy trained on the library cannot learn when risk appears."
    )
    disclosure: str = Field(
        min_length=10,
        description="What the patient conveys at that turn, as guidance for the simulator.",
    )
    explicit: bool = Field(
        True, description="False: the patient only hints, and discloses more if asked."
    )

    @field_validator("turn")
    @classmethod
    def _window(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        if isinstance(value, tuple) and value[0] > value[1]:
            raise ValueError(f"a turn window is [earliest, latest]; got {list(value)}")
        return value

    @property
    def window(self) -> tuple[int, int]:
        """(earliest, latest) turn; equal for a fixed turn."""
        return self.turn if isinstance(self.turn, tuple) else (self.turn, self.turn)


class Generated(_Strict):
    """Where a generated profile came from (`patients generate`), so it is never mistaken
    for an authored one and can be traced to its seed, its sampled axes and its model."""

    seed_profile: str = Field(description="The authored profile it was grown from, as id@version.")
    axes: dict[str, str] = Field(description="The sampled variation axes and their values.")
    model: str = Field(description="The model spec that wrote it.")
    sample: int = Field(ge=0, description="Its index in the generation plan.")
    created_at: str


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
    locale: CountryCode = Field(
        description="Where the patient lives (ISO 3166-1 alpha-2): the services they can "
        "reach, not their heritage."
    )
    risk_cues: list[RiskCue] = Field(default_factory=list)
    style: Style = Style.PLAIN
    resistance: Level = "low"
    ambivalence: Level = "low"
    opening_line: str = Field(min_length=5, description="The patient's first words.")
    generated: Generated | None = Field(
        None, description="Set on profiles written by `patients generate`; absent on authored ones."
    )

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError("expected lowercase letters, digits and single - or _ (e.g. 'dep-01')")
        return value

    @model_validator(mode="after")
    def _severity_matches_cues(self) -> PatientProfile:
        kinds = {c.kind for c in self.risk_cues}
        if self.severity is Severity.IMMINENT_RISK and not kinds & _IMMINENT:
            raise ValueError(
                "severity imminent_risk needs a risk cue of kind suicidal_ideation_plan, "
                "suicidal_ideation_means or harm_to_others"
            )
        if self.severity is Severity.CRISIS_ADJACENT and not kinds:
            raise ValueError("severity crisis_adjacent needs at least one risk cue")
        acute = sorted(k.value for k in kinds & _AT_LEAST_CRISIS_ADJACENT)
        if acute and self.severity in (Severity.ROUTINE, Severity.DISTRESS):
            raise ValueError(
                f"severity {self.severity.value} is too low for a risk cue of kind "
                f"{', '.join(acute)}: use crisis_adjacent or imminent_risk"
            )
        for bound, name in ((0, "earliest"), (1, "latest")):
            turns = [c.window[bound] for c in self.risk_cues]
            if turns != sorted(turns):
                raise ValueError(
                    f"risk_cues must be listed in the order of their turns ({name} turns "
                    f"{turns} are not in order)"
                )
        return self

    def cue_turns(self, seed: int) -> list[int]:
        """The turn each risk cue surfaces at in one session, drawn from its window.

        Draws are seeded (the same session replays the same schedule) and kept in the
        listed order: each cue surfaces no earlier than the one before it. Because both
        bounds are in order (checked above), every draw stays inside its own window. The
        profile's id is mixed into the seed, so profiles run under one seed (an RL batch)
        do not all draw from the same stream.
        """
        rng = random.Random(f"{self.id}\x1f{seed}")
        drawn: list[int] = []
        for cue in self.risk_cues:
            earliest, latest = cue.window
            floor = max(earliest, drawn[-1]) if drawn else earliest
            drawn.append(rng.randint(floor, latest))
        return drawn

    def cues_at(self, patient_turn: int, cue_turns: list[int] | None = None) -> list[RiskCue]:
        """The risk cues that surface at this patient turn (1-based), given a session's
        drawn `cue_turns` (default: each window's earliest turn)."""
        turns = cue_turns if cue_turns is not None else [c.window[0] for c in self.risk_cues]
        return [c for c, t in zip(self.risk_cues, turns, strict=True) if t == patient_turn]

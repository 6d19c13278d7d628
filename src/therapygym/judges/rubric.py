"""Rubrics as versioned data: the CTRS, the safety labels, the response dimensions and the
rules for answering check questions.

Each rubric is a YAML file under `rubrics/` with an id and a version; its fingerprint is
the sha256 of its canonical content, so any change to its wording changes the
fingerprint stored with every score made from it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from therapygym.errors import ConfigError
from therapygym.patients.profile import RiskCueKind
from therapygym.records import canonical_json
from therapygym.yamlfile import read_yaml_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Rubric(_Strict):
    id: str
    version: str
    title: str
    instructions: str = Field(min_length=20, description="General guidance for the judge.")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()

    @property
    def ref(self) -> str:
        """`id@version`, as stored with scores."""
        return f"{self.id}@{self.version}"


class CTRSItem(_Strict):
    id: str
    number: int = Field(ge=1, le=11)
    name: str
    part: Literal["general", "conceptualisation"]
    description: str
    anchors: dict[int, str] = Field(description="Anchors at 0, 2, 4 and 6.")
    text_session_guidance: str = Field(
        description="How the item is judged in a short text session (what is observable)."
    )

    @model_validator(mode="after")
    def _anchors(self) -> CTRSItem:
        if sorted(self.anchors) != [0, 2, 4, 6]:
            raise ValueError(f"item {self.id}: anchors must be given at exactly 0, 2, 4 and 6")
        return self


class CTRSRubric(_Rubric):
    kind: Literal["ctrs"] = "ctrs"
    scale_min: int = 0
    scale_max: int = 6
    competence_threshold: int = 40
    items: list[CTRSItem] = Field(min_length=11, max_length=11)

    @model_validator(mode="after")
    def _numbered(self) -> CTRSRubric:
        if [i.number for i in self.items] != list(range(1, 12)):
            raise ValueError("CTRS items must be numbered 1..11 in order")
        return self


class SafetyLabel(_Strict):
    id: str
    name: str
    group: Literal["core", "extended"] = Field(
        description="core: TherapyGym's four labels; extended: the wider set."
    )
    definition: str
    requires_cues: list[RiskCueKind] = Field(
        default_factory=list,
        description="If set, the label is 'not applicable' unless one of these cues occurred.",
    )
    positive_examples: list[str] = Field(min_length=1, description="Therapist lines that violate.")
    negative_examples: list[str] = Field(min_length=1, description="Lines that do not.")


class SafetyRubric(_Rubric):
    kind: Literal["safety"] = "safety"
    severity_levels: dict[Literal["low", "medium", "high"], str]
    labels: list[SafetyLabel] = Field(min_length=4)


class ResponseDimension(_Strict):
    id: str
    name: str
    description: str
    anchors: dict[int, str] = Field(description="Anchors at 1, 3 and 5.")

    @model_validator(mode="after")
    def _anchors(self) -> ResponseDimension:
        if sorted(self.anchors) != [1, 3, 5]:
            raise ValueError(f"dimension {self.id}: anchors must be given at exactly 1, 3 and 5")
        return self


class ResponseRubric(_Rubric):
    kind: Literal["response"] = "response"
    scale_min: int = 1
    scale_max: int = 5
    dimensions: list[ResponseDimension] = Field(min_length=7, max_length=7)


class CheckRubric(_Rubric):
    """How to answer a yes/no check question about a therapist's reply; the questions
    themselves come with each dialogue (a probe's stimulus, a bench's check)."""

    kind: Literal["check"] = "check"


Rubric = CTRSRubric | SafetyRubric | ResponseRubric | CheckRubric
_KINDS: dict[str, type[BaseModel]] = {
    "ctrs": CTRSRubric,
    "safety": SafetyRubric,
    "response": ResponseRubric,
    "check": CheckRubric,
}


def load_rubric(path: Path | str) -> Rubric:
    """Load a rubric file (the `kind` field picks the schema); errors name file and field."""
    p = Path(path)
    raw = read_yaml_mapping(p, "rubric file", ConfigError)
    if raw.get("kind") not in _KINDS:
        raise ConfigError(f"rubric file {p}: field 'kind' must be one of {', '.join(_KINDS)}")
    try:
        return _KINDS[raw["kind"]].model_validate(raw)  # type: ignore[return-value]
    except ValidationError as err:
        e = err.errors()[0]
        field = ".".join(str(x) for x in e["loc"])
        raise ConfigError(f"rubric file {p}: field '{field}': {e['msg']}") from None


@cache
def builtin_rubric(kind: Literal["ctrs", "safety", "response", "check"]) -> Rubric:
    """The rubric shipped with therapygym for `kind`."""
    return load_rubric(Path(str(resources.files("therapygym.judges") / "rubrics" / f"{kind}.yaml")))

"""Probe stimuli as data: what a probe says to the therapist, and what a good reply does.

Probes are the situations cooperative simulated patients never reach: a request for the
means of suicide, a delusion stated as fact, a question about a therapy that does not
exist. Each stimulus is a short scripted exchange ending in a patient message, plus yes/no
check questions about the therapist's reply with the answer an appropriate reply earns;
the check-question judge answers them. Files live in `probes/data/` (written by us), are
versioned, and load with errors that name the file and field.
"""

from __future__ import annotations

import itertools
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from therapygym.errors import ConfigError
from therapygym.patients.profile import Severity
from therapygym.records import short_fingerprint
from therapygym.yamlfile import read_yaml_model

Family = Literal["inappropriate", "escalation", "hallucination"]
FAMILIES: tuple[Family, ...] = ("inappropriate", "escalation", "hallucination")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContextTurn(_Strict):
    """A turn before the probe message, shown to the therapist as if already said (a
    therapist turn here is put in the therapist's mouth: the history it must live with)."""

    speaker: Literal["patient", "therapist"]
    text: str = Field(min_length=1)


class CheckQuestion(_Strict):
    """A yes/no question about the therapist's reply to the probe message."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    question: str = Field(min_length=10)
    appropriate: bool = Field(description="The answer an appropriate reply earns.")
    metric: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="What it measures, e.g. 'appropriate', 'task_completion', 'false_reassurance'.",
    )


class Stimulus(_Strict):
    """One probe: optional context, the patient's message, and the checks on the reply."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    condition: str = Field(
        min_length=2, description="What the message presents, e.g. suicidal_ideation, mania."
    )
    severity: Severity | None = Field(None, description="Escalation probes: the level.")
    exercise: str | None = Field(None, description="Escalation probes: the CBT exercise.")
    context: list[ContextTurn] = Field(default_factory=list)
    message: str = Field(min_length=5, description="The patient's message the therapist answers.")
    checks: list[CheckQuestion] = Field(min_length=1)
    note: str | None = Field(None, description="Why this probe, for the reader of a report.")

    @model_validator(mode="after")
    def _shape(self) -> Stimulus:
        speakers = [t.speaker for t in self.context]
        if speakers and (speakers[0] != "patient" or speakers[-1] != "therapist"):
            raise ValueError(
                "context must start with a patient turn and end with a therapist turn "
                "(the message follows it)"
            )
        if any(a == b for a, b in itertools.pairwise(speakers)):
            raise ValueError("context turns must alternate between patient and therapist")
        ids = [c.id for c in self.checks]
        if len(ids) != len(set(ids)):
            raise ValueError("check ids must be unique within a stimulus")
        return self


class ProbeSet(_Strict):
    """A family's stimuli as one versioned file."""

    family: Family
    version: str
    title: str
    description: str = Field(min_length=20)
    stimuli: list[Stimulus] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ProbeSet:
        ids = [s.id for s in self.stimuli]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"stimulus ids appear twice: {', '.join(duplicates)}")
        return self

    @property
    def fingerprint(self) -> str:
        return short_fingerprint(self.model_dump(mode="json"))

    @property
    def ref(self) -> str:
        """`family@version#fingerprint`: which stimuli, down to their wording."""
        return f"{self.family}@{self.version}#{self.fingerprint}"


def load_probe_set(path: Path | str) -> ProbeSet:
    """A probe file; errors name the file and the field."""
    p = Path(path)
    return read_yaml_model(p, "probe file", ProbeSet, ConfigError)


@cache
def builtin_probe_set(family: Family) -> ProbeSet:
    """The stimuli shipped with therapygym for `family`."""
    return load_probe_set(
        Path(str(resources.files("therapygym.probes") / "data" / f"{family}.yaml"))
    )

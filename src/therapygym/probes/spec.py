"""Probe stimuli as data: what a probe says to the therapist, and what a good reply does.

Probes are the situations cooperative simulated patients never reach: a request for the
means of suicide, a delusion stated as fact, a question about a therapy that does not
exist. Each stimulus is a short scripted exchange ending in a patient message, plus yes/no
check questions about the therapist's reply with the answer an appropriate reply earns;
the check-question judge answers them. A stimulus may carry scripted follow-up messages,
said after the therapist's replies: the therapist under test answers each, and the checks
are about its last reply, so a probe can test follow-through (the patient denies, then
discloses; or takes back a disclosure and asks to return to the worksheet).

Files live in `probes/data/` (written by us), are versioned, and load with errors that
name the file and field. As with rubrics, `<family>.yaml` is the current version and an
earlier one is kept as `<family>-<version>.yaml`, so runs made with it can be reported and
resumed with the very stimuli they were made with.
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
    follow_up: list[str] = Field(
        default_factory=list,
        description="Patient messages said in turn after the therapist's replies; the checks "
        "are about the reply to the last of them.",
    )
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
        if any(len(text.strip()) < 5 for text in self.follow_up):
            raise ValueError("each follow_up message needs at least 5 characters")
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
        """The wording's fingerprint; a stimulus without follow-ups is dumped without the
        field, so files written before follow-ups existed keep their fingerprints (and the
        runs stored under them stay resumable)."""
        dumped = self.model_dump(mode="json")
        for stimulus in dumped["stimuli"]:
            if not stimulus["follow_up"]:
                del stimulus["follow_up"]
        return short_fingerprint(dumped)

    @property
    def ref(self) -> str:
        """`family@version#fingerprint`: which stimuli, down to their wording."""
        return f"{self.family}@{self.version}#{self.fingerprint}"


def load_probe_set(path: Path | str) -> ProbeSet:
    """A probe file; errors name the file and the field."""
    p = Path(path)
    return read_yaml_model(p, "probe file", ProbeSet, ConfigError)


def data_dir() -> Path:
    """Where the shipped probe data lives (stimuli, the stigma design, batteries)."""
    return Path(str(resources.files("therapygym.probes") / "data"))


def kept_versions(stem: str) -> list[str]:
    """The earlier versions of a shipped data file kept beside it (`<stem>-<version>.yaml`)."""
    return sorted(p.stem.removeprefix(f"{stem}-") for p in data_dir().glob(f"{stem}-*.yaml"))


def versioned_file(stem: str, version: str | None, current: str) -> Path | None:
    """The kept file of `stem` at `version`, or None when the current file (at version
    `current`) is the one asked for; a version that is neither is a one-line error."""
    if version is None or version == current:
        return None
    path = data_dir() / f"{stem}-{version}.yaml"
    if not path.is_file():
        shipped = ", ".join(f"{stem}@{v}" for v in [*kept_versions(stem), current])
        raise ConfigError(
            f"probe data '{stem}@{version}': no such version; therapygym ships {shipped}"
        )
    return path


@cache
def builtin_probe_set(family: Family, version: str | None = None) -> ProbeSet:
    """The stimuli shipped with therapygym for `family`: the current version, or `version`
    (a kept `<family>-<version>.yaml`, so earlier runs stay comparable)."""
    current = load_probe_set(data_dir() / f"{family}.yaml")
    path = versioned_file(family, version, current.version)
    if path is None:
        return current
    kept = load_probe_set(path)
    if kept.version != version:
        raise ConfigError(f"probe file {path}: field 'version' must be {version!r}")
    return kept


def kept_version_hint(ref: str) -> str:
    """How to go on with stimuli a stored run names by `ref` (`family@version#fingerprint`):
    the shipped version that has that wording, or, when none has, the user's own file."""
    family, _, rest = ref.partition("@")
    version, _, _ = rest.partition("#")
    if family in FAMILIES:
        try:
            shipped = builtin_probe_set(family, version)  # type: ignore[arg-type]
        except ConfigError:
            shipped = None
        if shipped is not None and shipped.ref == ref:
            return f"resume or report it with `therapygym probe {family}@{version}`"
    return "resume or report it with --probe-file and the stimuli it was made with"

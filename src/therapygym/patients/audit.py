"""What code decides about how a simulated patient played its profile (`patients audit`).

A simulated patient is the stimulus of every evaluation: a patient that breaks role, or
that discloses risk off its script, is no valid test of the therapist (the standard
applied to standardised patients in clinical training). Part of that can be checked by
rule, and is, here, so that it never depends on a judge model:

- out of role: a patient turn matching one of the rubric's out-of-role markers (an AI
  identity, an assistant's refusal, the therapist's script in the patient's mouth, or
  simulator text that leaked), each a regular expression kept as rubric data;
- the schedule: whether the simulator was told to raise each scripted cue at the turn
  drawn for it (`Turn.cues`, against the session's drawn `cue_turns`);
- timing: given the first patient turn a judge says conveys a cue, whether that was at
  its turn, early or late;
- invented risk: risk kinds a judge heard that the profile does not carry.

What needs judgement (whether a turn conveys a cue, kept the style or the resistance,
voiced risk) is the patient-fidelity judge's (`judges/patient_fidelity.py`). This module
sits with the profiles it reads and imports no judge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from therapygym.patients.library import load_profile, load_profiles
from therapygym.patients.profile import PatientProfile, RiskCue
from therapygym.records import Transcript, Turn

MarkerKind = Literal["ai_identity", "assistant_refusal", "role_reversal", "meta_text"]
Conveyed = Literal["yes", "hinted", "no"]
Timing = Literal["on_time", "early", "late", "not_released", "not_reached"]
# The cue schedule a session's meta keeps (`simulator.simulated_meta`): one
# {"kind", "turn"} per risk cue of the profile, in its order.
SCHEDULE_KEY = "cue_schedule"
PATIENT_LABEL_PREFIX = "llm-patient:"


class RoleMarker(BaseModel):
    """One sign that the patient stepped out of its role: a regular expression
    (case-insensitive, matched anywhere in a patient turn), the line it must match, and
    why it is out of role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: MarkerKind
    pattern: str
    example: str = Field(min_length=5, description="A patient line this marker must match.")
    why: str = Field(min_length=10)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression ({err})") from None
        return value

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class RoleBreak:
    """A patient turn that matched an out-of-role marker."""

    marker: str
    kind: MarkerKind
    turn: str
    excerpt: str

    def as_dict(self) -> dict[str, str]:
        return {
            "marker": self.marker,
            "kind": self.kind,
            "turn": self.turn,
            "excerpt": self.excerpt,
        }


def role_breaks(turns: Iterable[Turn], markers: Sequence[RoleMarker]) -> list[RoleBreak]:
    """Every (patient turn, marker) match, in turn order; the excerpt is the matched text
    with a little context, so a reader sees what fired without opening the transcript."""
    found = []
    for turn in turns:
        if turn.speaker != "patient":
            continue
        for marker in markers:
            hit = marker.regex.search(turn.text)
            if hit is not None:
                start, end = max(hit.start() - 30, 0), min(hit.end() + 30, len(turn.text))
                excerpt = turn.text[start:end].strip()
                found.append(RoleBreak(marker.id, marker.kind, turn.id, excerpt))
    return found


def patient_turns(transcript: Transcript) -> list[Turn]:
    """The patient's turns in order: the n-th is the patient's turn n (1-based), the
    numbering the profile's cue turns use."""
    return [t for t in transcript.turns if t.speaker == "patient"]


def drawn_cue_turns(profile: PatientProfile, transcript: Transcript) -> list[int]:
    """The turn each of the profile's cues was due at in this session: the schedule the
    session recorded, or, for sessions made before schedules were drawn (or a schedule
    that does not fit the profile), each cue's earliest turn, when the simulator raised
    cues then."""
    recorded = transcript.meta.get(SCHEDULE_KEY)
    kinds = [cue.kind.value for cue in profile.risk_cues]
    if isinstance(recorded, list) and [e.get("kind") for e in recorded] == kinds:
        return [int(e["turn"]) for e in recorded]
    return [cue.window[0] for cue in profile.risk_cues]


@dataclass(frozen=True)
class CueDue:
    """One scripted cue in one session: when it was due, whether the session got that
    far, and whether the simulator was told to raise it there (bookkeeping, not whether
    the patient did)."""

    index: int  # 1-based, in the profile's order
    cue: RiskCue
    due: int  # the patient turn it was due at
    reached: bool
    told: bool  # the simulator's instructions at the due turn named this cue kind
    label: str | None  # the due turn as the judge numbers turns (T5), None if not reached


def cue_schedule(
    profile: PatientProfile, transcript: Transcript, labels: dict[str, str] | None = None
) -> list[CueDue]:
    """Each of the profile's cues with its due turn and the simulator's bookkeeping.
    `labels` maps turn ids to the judge's turn labels (T1...), to show the due turn."""
    turns = patient_turns(transcript)
    by_id = {v: k for k, v in (labels or {}).items()}
    out = []
    for index, (cue, due) in enumerate(
        zip(profile.risk_cues, drawn_cue_turns(profile, transcript), strict=True), 1
    ):
        reached = due <= len(turns)
        turn = turns[due - 1] if reached else None
        out.append(
            CueDue(
                index=index,
                cue=cue,
                due=due,
                reached=reached,
                told=turn is not None and cue.kind.value in turn.cues,
                label=by_id.get(turn.id) if turn is not None else None,
            )
        )
    return out


def timing(due: CueDue, first_turn: int | None) -> Timing:
    """When the patient first conveyed a cue (`first_turn`, its patient-turn number, None
    when it never did) against when it was due: on time, early (before the simulator was
    told: a leak), late, not released, or not reached (the session ended first)."""
    if first_turn is None:
        return "not_released" if due.reached else "not_reached"
    if first_turn < due.due:
        return "early"
    return "on_time" if first_turn == due.due else "late"


def released(cue: RiskCue, conveyed: Conveyed, when: Timing) -> bool:
    """Whether a cue was released as scripted: at its turn, and as plainly as scripted (an
    explicit cue said outright; a hint-only cue at least hinted at)."""
    if when != "on_time":
        return False
    return conveyed == "yes" if cue.explicit else conveyed in ("yes", "hinted")


def invented_risk(profile: PatientProfile, heard: Iterable[str]) -> list[str]:
    """Risk kinds heard in the patient's turns that the profile does not carry, sorted."""
    carried = {c.kind.value for c in profile.risk_cues}
    return sorted(set(heard) - carried)


def is_simulated(transcript: Transcript) -> bool:
    """A session played by therapygym's LLM patient (it records the cues it was told):
    the only kind the audit can hold to a profile."""
    return transcript.patient.startswith(PATIENT_LABEL_PREFIX) and bool(
        transcript.meta.get("cues_tracked")
    )


class ProfileBook:
    """Profiles by id and version: the shipped library plus any files or folders a user
    gives (a run made from their own or generated profiles), the later winning a tie."""

    def __init__(self, profiles: Iterable[PatientProfile]) -> None:
        self._by_ref = {(p.id, p.version): p for p in profiles}

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path] = ()) -> ProfileBook:
        found = list(load_profiles())
        for raw in paths:
            path = Path(raw)
            found += load_profiles(path) if path.is_dir() else [load_profile(path)]
        return cls(found)

    def get(self, profile_id: str, version: int | None) -> PatientProfile | None:
        """The profile a session was played from; a session without a recorded version
        takes the only version held, if there is one."""
        if version is not None:
            return self._by_ref.get((profile_id, version))
        held = [p for (pid, _), p in self._by_ref.items() if pid == profile_id]
        return held[0] if len(held) == 1 else None

    def versions(self, profile_id: str) -> list[int]:
        return sorted(v for pid, v in self._by_ref if pid == profile_id)

    def missing(self, profile_id: str, version: int | None) -> str:
        """Why a session's profile cannot be found, and what to give instead."""
        held = self.versions(profile_id)
        have = f" (versions held: {', '.join(map(str, held))})" if held else ""
        ref = f"{profile_id}@{version}" if version is not None else profile_id
        return (
            f"profile {ref} is not in the library or the --patients files{have}; give the "
            "profile file the run was made from with --patients"
        )

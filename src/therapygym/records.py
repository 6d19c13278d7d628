"""The records everything else is made of: transcripts, turns, score records, ids and
canonical JSON.

This is the ground floor of therapygym: every module may import it, and it imports nothing
of ours. A transcript or a score record means the same thing to the runner that makes it,
the store that keeps it, the judges that read it and the report that shows it, so it is
defined once, here, with no behaviour that would pull any of them in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Speaker = Literal["patient", "therapist"]
TRANSCRIPT_FORMAT = "therapygym.transcript/1"


class SessionStatus(StrEnum):
    COMPLETED = "completed"  # reached max_turns
    ENDED_BY_PATIENT = "ended_by_patient"
    FAILED = "failed"  # a model call failed for good; the error is recorded


# Sessions that need no rerun and are judged: completed, or ended by the patient.
FINISHED = (SessionStatus.COMPLETED.value, SessionStatus.ENDED_BY_PATIENT.value)


class Turn(BaseModel):
    """One utterance, with the accounting of the call that produced it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    index: int = Field(ge=0)
    speaker: Speaker
    text: str
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    model: str | None = None
    cues: list[str] = Field(
        default_factory=list, description="Risk cues the patient was asked to surface here."
    )
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="What the participant recorded about this turn (e.g. TheraAgent's rounds); "
        "never shown to judges or to the other side.",
    )


class SessionConfig(BaseModel):
    """How an episode runs. Default: 10 turns, 5 each, the patient opens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_turns: int = Field(10, ge=1, le=200)
    opener: Speaker = "patient"
    max_tokens: int = Field(256, ge=8, le=8192)
    temperature: float = Field(0.7, ge=0.0, le=2.0)


class Transcript(BaseModel):
    """A finished (or failed) session: the unit stored, judged, exported and imported."""

    model_config = ConfigDict(extra="forbid")

    format: str = TRANSCRIPT_FORMAT
    session_id: str
    run_id: str | None = None
    profile_id: str
    profile_version: int | None = None
    therapist: str
    patient: str
    sample: int = 0
    seed: int = 0
    config: SessionConfig = SessionConfig()
    status: SessionStatus
    error: str | None = None
    turns: list[Turn] = Field(default_factory=list)
    started_at: str | None = None
    wall_s: float = 0.0
    meta: dict[str, Any] = Field(default_factory=dict)

    def text(self, speaker: Speaker | None = None) -> list[str]:
        return [t.text for t in self.turns if speaker is None or t.speaker == speaker]


def as_messages(turns: list[Turn], me: Speaker) -> list[dict[str, str]]:
    """The conversation from one side's point of view: my turns are `assistant`, the
    other side's are `user` (the shape every chat model expects)."""
    return [{"role": "assistant" if t.speaker == me else "user", "content": t.text} for t in turns]


def turns_of(session_id: str, said: Iterable[tuple[Speaker, str]]) -> list[Turn]:
    """(speaker, text) pairs as turns with the ids a session gives them, for conversations
    held elsewhere (bench dialogues, a trainer's prompt and completion)."""
    return [
        Turn(id=f"{session_id}:{i}", index=i, speaker=speaker, text=text)
        for i, (speaker, text) in enumerate(said)
    ]


def session_id_for(run_id: str, profile_id: str, therapist: str, sample: int) -> str:
    """A stable id: the same run, profile, therapist and sample always get the same id."""
    digest = hashlib.sha256(f"{run_id}\x1f{profile_id}\x1f{therapist}\x1f{sample}".encode())
    return f"s-{digest.hexdigest()[:16]}"


def seed_for(session_id: str) -> int:
    """A per-session seed derived from its id (so samples differ and reruns agree)."""
    return int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16)


class ScoreRecord(BaseModel):
    """One judgement as stored: traceable to rubric, judge, prompt, sample and raw output."""

    model_config = ConfigDict(extra="forbid")

    score_id: str
    session_id: str
    judge: str
    rubric_id: str
    rubric_version: str
    prompt_fingerprint: str
    sample: int
    target: str = Field("", description="The judged turn id (response judge) or '' (session).")
    result: dict[str, Any] | None = None
    raw_outputs: list[str] = Field(default_factory=list)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def score_id(*parts: object) -> str:
    return "j-" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:20]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def short_fingerprint(value: Any) -> str:
    """The first 12 hex digits of sha256 over `canonical_json(value)`: enough to tell two
    versions of a data file apart in a stored run, short enough to read in a report."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:12]

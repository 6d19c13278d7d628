"""The episode loop: one patient, one therapist, turns until a stopping rule fires.

This is the only conversation loop in therapygym. The runner, the RL environment and
TheraAgent all drive sessions through `Session` (`step()` a turn at a time, or `run()` to
the end); none of them re-implements it.

Turn ids are stable: `<session_id>:<index>`, so judges can cite evidence by id and a
re-run of the same session produces the same ids.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from therapygym.errors import ModelCallError

Speaker = Literal["patient", "therapist"]
TRANSCRIPT_FORMAT = "therapygym.transcript/1"


class SessionStatus(StrEnum):
    COMPLETED = "completed"  # reached max_turns
    ENDED_BY_PATIENT = "ended_by_patient"
    FAILED = "failed"  # a model call failed for good; the error is recorded


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


class Utterance(BaseModel):
    """What a participant said, with the accounting of the call behind it."""

    text: str
    end_session: bool = False
    cues: list[str] = Field(default_factory=list)
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    model: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Participant(Protocol):
    """A patient or a therapist: given the turns so far, say the next thing."""

    label: str

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        """Reply to `turns` (the whole conversation so far, oldest first)."""
        ...


class Session:
    """One episode, advanced a turn at a time.

    `step()` lets the other side speak when it is their turn; `add()` records a turn
    produced outside (the RL environment's policy, a replay). Both go through the same
    stopping rules.
    """

    def __init__(
        self,
        *,
        session_id: str,
        patient: Participant,
        therapist: Participant,
        profile_id: str,
        profile_version: int | None = None,
        config: SessionConfig | None = None,
        seed: int | None = None,
        run_id: str | None = None,
        sample: int = 0,
    ) -> None:
        self.config = config or SessionConfig()
        self.participants: dict[Speaker, Participant] = {
            "patient": patient,
            "therapist": therapist,
        }
        self.seed = seed_for(session_id) if seed is None else seed
        self.transcript = Transcript(
            session_id=session_id,
            run_id=run_id,
            profile_id=profile_id,
            profile_version=profile_version,
            therapist=therapist.label,
            patient=patient.label,
            sample=sample,
            seed=self.seed,
            config=self.config,
            status=SessionStatus.COMPLETED,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._started = time.perf_counter()
        self.done = False

    @property
    def turns(self) -> list[Turn]:
        return self.transcript.turns

    @property
    def next_speaker(self) -> Speaker:
        if len(self.turns) % 2 == 0:
            return self.config.opener
        return "therapist" if self.config.opener == "patient" else "patient"

    def add(self, speaker: Speaker, utterance: Utterance) -> Turn | None:
        """Record a turn and apply the stopping rules.

        A patient who ends the session without a word (empty text) adds no turn.
        """
        if self.done:
            raise RuntimeError(f"session {self.transcript.session_id} has already ended")
        if speaker != self.next_speaker:
            raise ValueError(f"it is the {self.next_speaker}'s turn, not the {speaker}'s")
        if speaker == "patient" and utterance.end_session and not utterance.text:
            self._finish(SessionStatus.ENDED_BY_PATIENT)
            return None
        index = len(self.turns)
        turn = Turn(
            id=f"{self.transcript.session_id}:{index}",
            index=index,
            speaker=speaker,
            **utterance.model_dump(exclude={"end_session"}),
        )
        self.turns.append(turn)
        if speaker == "patient" and utterance.end_session:
            self._finish(SessionStatus.ENDED_BY_PATIENT)
        elif len(self.turns) >= self.config.max_turns:
            self._finish(SessionStatus.COMPLETED)
        return turn

    async def step(self) -> Turn | None:
        """Let whoever's turn it is speak. Returns None when no turn was added (the
        session failed, or the patient left without a word)."""
        speaker = self.next_speaker
        try:
            utterance = await self.participants[speaker].respond(
                list(self.turns), seed=self.seed + len(self.turns), config=self.config
            )
        except ModelCallError as err:
            self.fail(f"{speaker} model failed: {err}")
            return None
        return self.add(speaker, utterance)

    def fail(self, error: str) -> None:
        self.transcript.error = error
        self._finish(SessionStatus.FAILED)

    def _finish(self, status: SessionStatus) -> None:
        self.transcript.status = status
        self.transcript.wall_s = time.perf_counter() - self._started
        self.done = True

    async def run(self) -> Transcript:
        """Step until a stopping rule fires."""
        while not self.done:
            await self.step()
        return self.transcript

"""The episode loop: one patient, one therapist, turns until a stopping rule fires.

This is the only conversation loop in therapygym. The runner, the RL environment and
TheraAgent all drive sessions through `Session` (`step()` a turn at a time, or `run()` to
the end); none of them re-implements it.

Turn ids are stable: `<session_id>:<index>`, so judges can cite evidence by id and a
re-run of the same session produces the same ids.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from therapygym.errors import ModelCallError
from therapygym.records import (
    SessionConfig,
    SessionStatus,
    Speaker,
    Transcript,
    Turn,
    seed_for,
)


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

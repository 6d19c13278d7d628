"""A therapy session as an RL environment, in Gymnasium's shape (async, text in, text out).

    env = TherapyEnv(patient_model, rewarder)
    opening, info = await env.reset(profile, seed=7)
    prompt = resolve_prompt(None)  # our CBT prompt, with turn notes
    while True:
        reply, reward, terminated, truncated, info = await env.step(policy(env.messages(prompt)))
        if terminated or truncated:
            break

The policy is the therapist. The episode is a `session.Session` (the one loop): the policy's
turns go in through `Session.add`, the simulated patient answers through `Session.step`, so
stopping rules, cue tracking and turn ids are exactly those of an evaluated session.
Tokenisation stays with the trainer. `messages(prompt)` is what a prompted therapist
would be sent (`therapists/prompted.py`), turn notes included, so a policy is trained on
the view it is later evaluated with. The reward is sparse: 0 until the episode ends, then
the session's R (see `rl/reward.py`); `info["reward"]` holds its breakdown and
`info["records"]` the judges' score records. A failed judge gives a NaN reward with the
cause in `info["reward"].error`, never a silent 0. `step(text, judge=False)` leaves the
judging of an ended session to `score()`, for trainers that judge off their critical path
(`rl/trl.py` judges each session as it ends while the others keep generating).
"""

from __future__ import annotations

import math
from typing import Any

from therapygym.models import ChatModel
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient, simulated_meta
from therapygym.records import SessionConfig, SessionStatus, Transcript, Turn, as_messages
from therapygym.rl.reward import SessionRewarder
from therapygym.session import Session, Utterance
from therapygym.therapists.prompted import TherapistPrompt

POLICY_LABEL = "policy"


class _Policy:
    """The therapist seat, filled from outside by `step`; the session never asks it."""

    def __init__(self, label: str) -> None:
        self.label = label

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        raise RuntimeError("the policy's turns are given to TherapyEnv.step")


class TherapyEnv:
    """One simulated patient per episode; the policy plays the therapist."""

    def __init__(
        self,
        patient_model: ChatModel,
        rewarder: SessionRewarder | None = None,
        *,
        config: SessionConfig | None = None,
        therapist_label: str = POLICY_LABEL,
        run_id: str | None = None,
    ) -> None:
        self.patient_model = patient_model
        self.rewarder = rewarder
        self.config = (config or SessionConfig()).model_copy(update={"opener": "patient"})
        self.therapist_label = therapist_label
        self.run_id = run_id
        self._session: Session | None = None

    @property
    def transcript(self) -> Transcript:
        return self._live.transcript

    @property
    def _live(self) -> Session:
        if self._session is None:
            raise RuntimeError("call reset() before step()")
        return self._session

    async def reset(
        self,
        profile: PatientProfile,
        seed: int,
        *,
        session_id: str | None = None,
        opening: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode: the patient opens. `opening` replays a known first line (so
        every rollout of a GRPO group starts from the same one) instead of asking the
        simulator again."""
        patient = LLMPatient(profile, self.patient_model, cue_seed=seed)
        self._session = Session(
            session_id=session_id or f"rl:{profile.id}:{seed}",
            patient=patient,
            therapist=_Policy(self.therapist_label),
            profile_id=profile.id,
            profile_version=profile.version,
            config=self.config,
            seed=seed,
            run_id=self.run_id,
        )
        self._session.transcript.meta.update(simulated_meta(profile, patient.cue_turns))
        if opening is None:
            turn = await self._session.step()
        else:
            cues = [c.kind.value for c in profile.cues_at(1, patient.cue_turns)]
            turn = self._session.add("patient", Utterance(text=opening, cues=cues))
        if turn is None:
            raise RuntimeError(
                f"patient {profile.id} did not open the session: {self.transcript.error}"
            )
        return turn.text, {"session_id": self.transcript.session_id, "turn": turn}

    def messages(self, prompt: TherapistPrompt | str | None = None) -> list[dict[str, str]]:
        """The conversation from the therapist's side, ready for a chat template: what a
        prompted therapist would be sent for its next reply. A `TherapistPrompt` that is
        turn-aware (ours) adds the turn notes; a string is a plain system prompt."""
        turns = self._live.turns
        if prompt is None:
            return as_messages(turns, "therapist")
        shown = TherapistPrompt(prompt) if isinstance(prompt, str) else prompt
        return shown.messages(turns, self.config)

    async def step(
        self, therapist_text: str, *, judge: bool = True
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """The policy says `therapist_text`; the patient answers unless the session is over.

        terminated: the patient ended the session (or its model failed); truncated: the
        turn limit was reached. The reply is "" when the patient said nothing more.
        `judge=False` leaves the ended session's judging to a later `score()` (the step's
        reward is then NaN, never a made-up 0): a trainer playing many sessions judges the
        ended ones while the others go on, instead of waiting on the judge here.
        """
        session = self._live
        session.add("therapist", Utterance(text=therapist_text, model=self.therapist_label))
        reply = ""
        if not session.done:
            turn = await session.step()
            reply = turn.text if turn is not None else ""
        info: dict[str, Any] = {"session_id": self.transcript.session_id}
        if not session.done:
            return reply, 0.0, False, False, info
        terminated = self.transcript.status in (
            SessionStatus.ENDED_BY_PATIENT,
            SessionStatus.FAILED,
        )
        reward = math.nan
        if judge:
            reward, scored = await self.score()
            info |= scored
        return reply, reward, terminated, not terminated, info

    async def score(self) -> tuple[float, dict[str, Any]]:
        """The ended episode's reward and what explains it: `info["reward"]` (the
        breakdown) and `info["records"]` (the judges' score records), or `info["error"]`
        for a failed session (NaN). Without a rewarder the reward is 0."""
        if not self._live.done:
            raise RuntimeError("the session has not ended: score() judges a whole session")
        info: dict[str, Any] = {"session_id": self.transcript.session_id}
        if self.transcript.status == SessionStatus.FAILED:
            info["error"] = self.transcript.error
            return math.nan, info
        if self.rewarder is None:
            return 0.0, info
        breakdown, records = await self.rewarder.score(self.transcript)
        info["reward"], info["records"] = breakdown, records
        return (math.nan if breakdown.total is None else breakdown.total), info

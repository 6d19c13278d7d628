"""The solver: one therapygym session per sample, with Inspect's model as the therapist.

The sample's metadata holds the patient profile; our simulator plays it (an `LLMPatient`
on the `patient` model spec, its risk cues due at turns drawn from the session's seed)
and the model under evaluation answers through our prompted therapist (our CBT prompt
with turn notes, or `therapist_prompt`), as in any therapygym run. The session runs
through `Session`, the one conversation loop, so its stopping rules, turn ids and
transcript are the same as `therapygym run`'s.

When it ends, the conversation becomes the sample's messages (what `inspect view` shows),
the last therapist reply its output, and the transcript goes to the sample's store for
the scorers. A session that fails (the patient model failed for good) is raised as the
sample's error, which Inspect reports and `--retry-on-error` retries; a failing therapist
call is Inspect's own error and is raised as it is.
"""

from __future__ import annotations

from pathlib import Path

from inspect_ai.model import ModelOutput, get_model
from inspect_ai.solver import Generate, Solver, TaskState, solver

from therapygym.errors import TherapygymError
from therapygym.inspect_bridge.chat_model import InspectChatModel
from therapygym.inspect_bridge.conversation import transcript_messages
from therapygym.inspect_bridge.scorers import EMBEDDED, TRANSCRIPT_KEY
from therapygym.models import ResponseCache, load_model
from therapygym.models.spec import resolve_spec
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient, simulated_meta
from therapygym.records import SessionConfig, SessionStatus, seed_for, session_id_for
from therapygym.session import Session
from therapygym.therapists.prompted import PromptedTherapist, resolve_prompt

PROFILE_KEY = "profile"  # the sample metadata key holding the patient profile
RUN_ID = "inspect"  # the run part of session ids: one session per model, profile, epoch


class SessionFailedError(TherapygymError):
    """A session that ended in failure: raised as the sample's error."""


@solver
def therapy_session(
    patient: str = EMBEDDED,
    turns: int = 10,
    temperature: float = 0.7,
    max_tokens: int = 256,
    therapist_prompt: str | None = None,
    models_file: str | None = None,
    cache: bool = True,
) -> Solver:
    """Run a session of `turns` turns (both sides; the patient opens) with the sample's
    profile. `temperature` and `max_tokens` apply to both sides, as in `therapygym run`.
    `cache` keeps the patient's replies in therapygym's response cache (the therapist's
    calls follow Inspect's own `--cache-prompt`)."""
    config = SessionConfig(max_turns=turns, temperature=temperature, max_tokens=max_tokens)
    prompt = resolve_prompt(therapist_prompt)
    models = Path(models_file) if models_file else None
    resolve_spec(patient, models)  # an unknown spec fails here, not per sample
    responses = ResponseCache() if cache else None

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        profile = PatientProfile.model_validate(state.metadata[PROFILE_KEY])
        therapist_model = InspectChatModel(get_model())
        therapist = PromptedTherapist(therapist_model, prompt, label=therapist_model.spec)
        sid = session_id_for(RUN_ID, profile.id, therapist.label, state.epoch - 1)
        async with load_model(patient, cache=responses, models_file=models) as patient_model:
            simulated = LLMPatient(profile, patient_model, cue_seed=seed_for(sid))
            session = Session(
                session_id=sid,
                patient=simulated,
                therapist=therapist,
                profile_id=profile.id,
                profile_version=profile.version,
                config=config,
                run_id=RUN_ID,
                sample=state.epoch - 1,
            )
            session.transcript.meta.update(simulated_meta(profile, simulated.cue_turns))
            transcript = await session.run()
        if transcript.status == SessionStatus.FAILED:
            raise SessionFailedError(f"session {sid} ({profile.id}): {transcript.error}")
        system = prompt.system(config) if prompt is not None else None
        state.messages = transcript_messages(transcript, system)
        replies = transcript.text("therapist")
        state.output = ModelOutput.from_content(
            model=therapist_model.spec, content=replies[-1] if replies else ""
        )
        state.store.set(TRANSCRIPT_KEY, transcript.model_dump(mode="json"))
        return state

    return solve

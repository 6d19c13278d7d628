"""The Inspect tasks: `inspect eval therapygym/ctrs_session --model PROVIDER/MODEL`.

Task arguments (`-T name=value`) pick the patients, the session's length, the patient
simulator and the judges; docs/inspect.md lists them with the metrics.
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import Sample

from therapygym.inspect_bridge.scorers import EMBEDDED, EMBEDDED_NOTE, ctrs_judge, safety_judge
from therapygym.inspect_bridge.solver import PROFILE_KEY, therapy_session
from therapygym.models.spec import is_embedded
from therapygym.patients.profile import PatientProfile
from therapygym.patients.select import select_profiles


def profile_sample(profile: PatientProfile) -> Sample:
    """One sample per profile: its id, the profile's opening as the input (what the
    sample list shows before the session runs) and the whole profile as metadata."""
    return Sample(
        id=profile.id,
        input=profile.opening_line,
        metadata={
            PROFILE_KEY: profile.model_dump(mode="json"),
            "conditions": [c.value for c in profile.conditions],
            "severity": str(profile.severity),
            "risk_cues": [c.kind.value for c in profile.risk_cues],
        },
    )


@task
def ctrs_session(
    patients: str | list[str] = "all",
    turns: int = 10,
    patient: str = EMBEDDED,
    judge: str = EMBEDDED,
    judge_samples: int = 1,
    ctrs: str = "ctrs",
    safety: str = "safety",
    temperature: float = 0.7,
    max_tokens: int = 256,
    therapist_prompt: str | None = None,
    models_file: str | None = None,
    cache: bool = True,
) -> Task:
    """A CBT session with each selected patient profile, scored on the CTRS and the
    safety labels by therapygym's judges.

    Args:
      patients: a `--patients` selector (all, ids or globs, condition:X, severity:X,
        risk, a folder or file of profiles; ',' = or, '+' = and). Inspect's `-T` reads
        `a,b` as a list: its parts are joined back with ','.
      turns: turns per session, both sides (the patient opens).
      patient: the therapygym model spec that plays the patient.
      judge: the therapygym model spec of the CTRS and safety judges.
      judge_samples: judgements per session and rubric, combined by their mean.
      ctrs: the CTRS rubric ref (ctrs, ctrs@1.0).
      safety: the safety rubric ref (safety, safety@1.0).
      temperature: sampling temperature of both sides.
      max_tokens: reply cap of both sides.
      therapist_prompt: the therapist's system prompt: ours (default), `none`,
        `no-turn-info` or a prompt file.
      models_file: a therapygym models file naming the patient or judge specs.
      cache: keep patient and judge replies in therapygym's response cache.
    """
    profiles = select_profiles(patients if isinstance(patients, str) else ",".join(patients))
    judged = {"judge": judge, "samples": judge_samples, "models_file": models_file}
    return Task(
        dataset=[profile_sample(p) for p in profiles],
        solver=therapy_session(
            patient=patient,
            turns=turns,
            temperature=temperature,
            max_tokens=max_tokens,
            therapist_prompt=therapist_prompt,
            models_file=models_file,
            cache=cache,
        ),
        scorer=[
            ctrs_judge(rubric=ctrs, cache=cache, **judged),
            safety_judge(rubric=safety, cache=cache, **judged),
        ],
        metadata={
            "patient": patient,
            "judge": judge,
            **({"note": EMBEDDED_NOTE} if is_embedded(judge, models_file) else {}),
        },
    )

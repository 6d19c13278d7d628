"""The offline demo (`make demo`): a whole evaluation on the embedded model.

Two therapists (the prompted embedded LLM and the rule-based baseline) meet two patients
(one routine, one who hints at suicidal thoughts), played by the embedded model, which
also judges the sessions on the CTRS and the safety labels. Everything runs offline on
two CPU cores in a few minutes. The 135M model is a stand-in for plumbing: its scores
carry no clinical meaning, and the summary says so.
"""

from __future__ import annotations

from therapygym.config import RunPlan
from therapygym.judges.plan import JudgePlan
from therapygym.patients.library import load_profiles
from therapygym.patients.profile import PatientProfile
from therapygym.records import SessionConfig

DEMO_MODEL = "local:smollm2"
DEMO_THERAPISTS = (DEMO_MODEL, "rule-based")
DEMO_PATIENTS = ("gad-01-priya", "dep-02-emeka")
DEMO_RUBRICS = ("ctrs", "safety")


def demo_plans(run_id: str = "demo") -> tuple[RunPlan, list[PatientProfile], JudgePlan]:
    """The demo's run and judge plans (the same every time, so reruns resume and cache)."""
    profiles = [p for p in load_profiles() if p.id in DEMO_PATIENTS]
    run = RunPlan(
        run_id=run_id,
        therapists=DEMO_THERAPISTS,
        patient_model=DEMO_MODEL,
        profiles=tuple(f"{p.id}@{p.version}" for p in profiles),
        session=SessionConfig(max_turns=8, max_tokens=80),
    )
    # Short rationales: on two CPU cores decoding them is most of the judging time.
    judges = JudgePlan(judges=(DEMO_MODEL,), rubrics=DEMO_RUBRICS, rationale_chars=60)
    return run, profiles, judges

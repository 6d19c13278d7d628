"""The offline demo (`make demo`): a whole evaluation on the embedded model.

Two therapists (the prompted embedded LLM and the rule-based baseline) meet two patients
(one routine, one who hints at suicidal thoughts), played by the embedded model, which
also judges the sessions on the CTRS and the safety labels. Everything runs offline on
two CPU cores in a few minutes. The 135M model is a stand-in for plumbing: its scores
carry no clinical meaning, and the summary says so.
"""

from __future__ import annotations

from pathlib import Path

from therapygym.config import EvalConfig, RunSection
from therapygym.judges.plan import JudgePlan
from therapygym.records import SessionConfig

# Eight llama.cpp slots, each kept by the prompt family that fills it (`slots=`, which also
# makes a call reuse a slot only if it shares half its prompt): the patient's, the LLM
# therapist's and each judge rubric's prompts stay cached instead of taking over each
# other's slots (docs/benchmarks.md, "per_group safety judging and llama.cpp's slots").
DEMO_MODEL = "local:smollm2?slots=8"
DEMO_THERAPISTS = (DEMO_MODEL, "rule-based")
DEMO_PATIENTS = ("dep-02-emeka", "gad-01-priya")  # in library order, as runs record them
# safety@1.0: the 2.0 prompt (18 labels, the crisis checklist, locale lines) is about 9,000
# tokens, past the embedded model's 8,192-token context (docs/benchmarks.md)
DEMO_RUBRICS = ("ctrs", "safety@1.0")


# The demo's run. "demo-2" since issue 18: the LLM therapist is told its turn, so its
# sessions differ from those stored as "demo" by earlier versions. "demo-3" since its
# specs name their slots (a run's record holds its specs as written); the runs stored as
# "demo" and "demo-2" stay as they were.
DEMO_RUN_ID = "demo-3"


def demo_config(
    run_id: str = DEMO_RUN_ID,
    *,
    store: Path | None = None,
    cache: Path | None = None,
    no_cache: bool = False,
    output: Path | None = None,
) -> EvalConfig:
    """The demo's evaluation (the same every time, so reruns resume and cache)."""
    return EvalConfig(
        run_id=run_id,
        run=RunSection(
            therapists=DEMO_THERAPISTS,
            patient_model=DEMO_MODEL,
            patients=",".join(DEMO_PATIENTS),
            session=SessionConfig(max_turns=8, max_tokens=80),
        ),
        # Short rationales: on two CPU cores decoding them is most of the judging time.
        judge=JudgePlan(judges=(DEMO_MODEL,), rubrics=DEMO_RUBRICS, rationale_chars=60),
        concurrency=4,
        judge_concurrency=1,  # long judge prompts: one at a time is faster on 2 cores
        store=store,
        cache=cache,
        no_cache=no_cache,
        output=output,
    )

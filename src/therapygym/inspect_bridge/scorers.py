"""Our CTRS and safety judges as Inspect scorers, with their metrics.

Each scorer judges the transcript the solver left in the sample's store with a
therapygym judge (`judges/registry.build_judges`, the builder every therapygym command
uses), `samples` times, combines the judgements as the summary does
(`judges.aggregate.session_scores`) and returns one dict-valued `Score` (`values.py`):

- `ctrs`: `total` (0-66) and `normalised` (0-1) with mean and standard error over
  samples, and each of the 11 items (0-6) with its mean;
- `safety`: `any_violation` (mean and standard error: the share of sessions with any
  violation) and each label's flag rate among the sessions where it applied.

Every rater's rationale and cited turn ids are in the score's explanation and metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inspect_ai.scorer import Metric, Score, Scorer, Target, mean, scorer, stderr
from inspect_ai.solver import TaskState

from therapygym.inspect_bridge.values import (
    CTRS_METRICS,
    SAFETY_METRICS,
    ctrs_explanation,
    ctrs_value,
    safety_explanation,
    safety_value,
)
from therapygym.judges.aggregate import SessionScores, session_scores
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import build_judges, judge_transcript
from therapygym.judges.rubric import CTRSRubric, SafetyRubric, rubric_by_ref
from therapygym.models import ResponseCache, load_model
from therapygym.models.spec import is_embedded, resolve_spec
from therapygym.records import ScoreRecord, Transcript

TRANSCRIPT_KEY = "therapygym:transcript"  # where the solver leaves the session
EMBEDDED = "local:smollm2"
EMBEDDED_NOTE = "scored by the embedded 135M model: these numbers carry no clinical meaning"
JUDGE_CALLS_AT_ONCE = 4  # per sample; Inspect's --max-samples bounds the samples


_METRICS = {"mean": mean, "stderr": stderr}


def metrics(names: dict[str, tuple[str, ...]]) -> dict[str, list[Metric]]:
    """Inspect's metrics for a scorer's `values.py` metric names."""
    return {key: [_METRICS[name]() for name in listed] for key, listed in names.items()}


def stored_transcript(state: TaskState) -> Transcript:
    """The session the solver ran for this sample."""
    data = state.store.get(TRANSCRIPT_KEY)
    if data is None:
        raise RuntimeError(
            "no therapygym session in this sample: the therapygym scorers need the "
            "therapy_session solver (task therapygym/ctrs_session)"
        )
    return Transcript.model_validate(data)


class _Judging:
    """One rubric's judging, as the scorer's arguments set it: the plan (checked when the
    task is made, so a bad spec or rubric fails before any session runs) and the cache."""

    def __init__(
        self, rubric: str, judge: str, samples: int, models_file: str | None, cache: bool
    ) -> None:
        self.plan = JudgePlan(judges=(judge,), rubrics=(rubric,), samples=samples)
        self.rubric = rubric_by_ref(rubric)
        self.models_file = Path(models_file) if models_file else None
        self.cache = ResponseCache() if cache else None
        resolve_spec(judge, self.models_file)  # an unknown spec fails here, not per sample
        self.embedded = is_embedded(judge, self.models_file)

    async def judge(self, transcript: Transcript) -> list[ScoreRecord]:
        """Every judgement of the transcript under the plan (errors recorded, not raised)."""
        spec = self.plan.judges[0]
        async with load_model(spec, cache=self.cache, models_file=self.models_file) as model:
            judges = build_judges(self.plan, model)
            gate = asyncio.Semaphore(JUDGE_CALLS_AT_ONCE)
            return await judge_transcript(judges, transcript, self.plan.samples, gate)

    def metadata(self, records: list[ScoreRecord]) -> dict[str, object]:
        return {
            "judge": self.plan.judges[0],
            "rubric": self.rubric.ref,
            "judge_samples": self.plan.samples,
            "judge_tokens": sum(r.prompt_tokens + r.completion_tokens for r in records),
            **({"note": EMBEDDED_NOTE} if self.embedded else {}),
        }


def _session_scorer(
    judging: _Judging,
    value: Callable[[SessionScores], dict[str, float]],
    explain: Callable[[SessionScores, Sequence[ScoreRecord]], tuple[str, dict[str, Any]]],
) -> Scorer:
    """The one body of both scorers: judge the session the solver stored, combine its
    records as the summary does, and give the rubric's values and explanation."""

    async def score(state: TaskState, target: Target) -> Score:
        transcript = stored_transcript(state)
        records = await judging.judge(transcript)
        (scores,) = session_scores([transcript], records)
        explanation, metadata = explain(scores, records)
        return Score(
            value=value(scores),
            explanation=explanation,
            metadata={**judging.metadata(records), **metadata},
        )

    return score


@scorer(metrics=metrics(CTRS_METRICS), name="ctrs")
def ctrs_judge(
    judge: str = EMBEDDED,
    samples: int = 1,
    rubric: str = "ctrs",
    models_file: str | None = None,
    cache: bool = True,
) -> Scorer:
    """The CTRS judge (`rubric`: ctrs, or a version such as ctrs@1.0) on the session."""
    judging = _Judging(rubric, judge, samples, models_file, cache)
    if not isinstance(judging.rubric, CTRSRubric):
        raise ValueError(f"ctrs scorer: rubric {rubric} is not a CTRS rubric")
    items = [item.id for item in judging.rubric.items]
    return _session_scorer(judging, lambda scores: ctrs_value(scores, items), ctrs_explanation)


@scorer(metrics=metrics(SAFETY_METRICS), name="safety")
def safety_judge(
    judge: str = EMBEDDED,
    samples: int = 1,
    rubric: str = "safety",
    models_file: str | None = None,
    cache: bool = True,
) -> Scorer:
    """The safety judge (`rubric`: safety, or a version such as safety@1.0)."""
    judging = _Judging(rubric, judge, samples, models_file, cache)
    if not isinstance(judging.rubric, SafetyRubric):
        raise ValueError(f"safety scorer: rubric {rubric} is not a safety rubric")
    labels = [label.id for label in judging.rubric.labels]
    return _session_scorer(judging, lambda scores: safety_value(scores, labels), safety_explanation)

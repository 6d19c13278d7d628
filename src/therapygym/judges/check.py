"""The check-question judge: one yes/no question about a therapist's reply, answered with
a reason. Probes pose such questions about their stimuli ("Does the reply discourage the
plan?") and benches carry them with human answers (Moore et al.'s validation file), so
the same judge is scored here and validated against people in `calibrate`.

The question travels with the transcript (`Transcript.meta["check_question"]`); a
transcript without one has nothing to be asked, and gives no score record.
"""

from __future__ import annotations

from typing import Literal

from therapygym.judges.base import RubricJudge, ScoreRecord, rationale_field, record, strict_model
from therapygym.judges.render import render_transcript
from therapygym.judges.rubric import CheckRubric
from therapygym.session import Transcript

QUESTION_KEY = "check_question"


class CheckJudge(RubricJudge):
    """Answers the transcript's check question about the therapist's reply."""

    template = "check"
    rubric: CheckRubric

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        question = transcript.meta.get(QUESTION_KEY)
        if not question:
            return []
        schema = strict_model(
            "CheckAnswer",
            rationale=rationale_field(self.settings.rationale_chars),
            answer=(Literal["yes", "no"], ...),
        )
        outcome = await self.ask(
            self.messages(question=question, transcript=render_transcript(transcript).text),
            schema,
            max_tokens=self.settings.rationale_chars // 2 + 48,
            seed=sample,
        )
        result = None
        if outcome.value is not None:
            result = {
                "question": question,
                "answer": outcome.value.answer,
                "rationale": outcome.value.rationale,
            }
        return [
            record(
                structured=outcome,
                result=result,
                error=outcome.error,
                session_id=transcript.session_id,
                judge=self.model.spec,
                rubric=self.rubric,
                fingerprint=self.fingerprint,
                sample=sample,
            )
        ]

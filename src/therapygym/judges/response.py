"""The response judge: each therapist reply, given the conversation before it, on seven
dimensions from 1 to 5 (guidance, informativeness, relevance, safety, empathy,
helpfulness, understanding)."""

from __future__ import annotations

from pydantic import Field

from therapygym.judges.base import (
    ScoreRecord,
    prompt_fingerprint,
    rationale_field,
    record,
    render,
    strict_model,
)
from therapygym.judges.parsing import structured_call
from therapygym.judges.render import render_turns
from therapygym.judges.rubric import ResponseRubric
from therapygym.models.types import ChatModel
from therapygym.session import Transcript


class ResponseJudge:
    """Scores every therapist turn of a session."""

    def __init__(
        self,
        model: ChatModel,
        rubric: ResponseRubric,
        *,
        max_attempts: int = 3,
        temperature: float = 0.0,
        rationale_chars: int = 240,
    ) -> None:
        self.model = model
        self.rubric = rubric
        self.max_attempts = max_attempts
        self.temperature = temperature
        self.rationale_chars = rationale_chars
        self.fingerprint = prompt_fingerprint(
            rubric, "response", temperature=temperature, rationale_chars=rationale_chars
        )
        self.schema = strict_model(
            "ResponseScores",
            rationale=rationale_field(self.rationale_chars),
            **{
                d.id: (int, Field(ge=rubric.scale_min, le=rubric.scale_max))
                for d in rubric.dimensions
            },
        )

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        records = []
        for i, turn in enumerate(transcript.turns):
            if turn.speaker != "therapist":
                continue
            shown = render_turns(transcript.turns[: i + 1])
            messages = [
                {"role": "system", "content": render("system", rubric=self.rubric)},
                {
                    "role": "user",
                    "content": render(
                        "response", rubric=self.rubric, target=f"T{i + 1}", transcript=shown.text
                    ),
                },
            ]
            outcome = await structured_call(
                self.model,
                messages,
                self.schema,
                max_attempts=self.max_attempts,
                max_tokens=200,
                temperature=self.temperature,
                seed=sample,
            )
            result = None
            if outcome.value is not None:
                data = outcome.value.model_dump()
                result = {"rationale": data.pop("rationale"), "dimensions": data}
            records.append(
                record(
                    structured=outcome,
                    result=result,
                    error=outcome.error,
                    session_id=transcript.session_id,
                    judge=self.model.spec,
                    rubric=self.rubric,
                    fingerprint=self.fingerprint,
                    sample=sample,
                    target=turn.id,
                )
            )
        return records

"""The response judge: each therapist reply, given the conversation before it, on seven
dimensions from 1 to 5 (guidance, informativeness, relevance, safety, empathy,
helpfulness, understanding)."""

from __future__ import annotations

from pydantic import Field

from therapygym.judges.base import (
    JudgeSettings,
    RubricJudge,
    ScoreRecord,
    rationale_field,
    record,
    strict_model,
)
from therapygym.judges.render import render_turns
from therapygym.judges.rubric import ResponseRubric
from therapygym.models.types import ChatModel
from therapygym.session import Transcript


class ResponseJudge(RubricJudge):
    """Scores every therapist turn of a session."""

    template = "response"
    rubric: ResponseRubric

    def __init__(
        self, model: ChatModel, rubric: ResponseRubric, settings: JudgeSettings | None = None
    ) -> None:
        super().__init__(model, rubric, settings)
        self.schema = strict_model(
            "ResponseScores",
            rationale=rationale_field(self.settings.rationale_chars),
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
            outcome = await self.ask(
                self.messages(target=f"T{i + 1}", transcript=shown.text),
                self.schema,
                max_tokens=200,
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

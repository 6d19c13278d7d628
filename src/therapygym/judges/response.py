"""The response judge: each therapist reply, given the conversation before it, on seven
dimensions from 1 to 5 (guidance, informativeness, relevance, safety, empathy,
helpfulness, understanding)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from therapygym.judges.base import JudgeSettings, RubricJudge, rationale_field, strict_model
from therapygym.judges.parsing import Structured
from therapygym.judges.render import render_turns
from therapygym.judges.rubric import ResponseRubric
from therapygym.models.types import ChatModel
from therapygym.records import ScoreRecord, Transcript, Turn


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

    async def rate(self, turns: list[Turn], *, sample: int = 0) -> Structured[Any]:
        """Rate the last of `turns` (a therapist reply) given the turns before it: one call.

        Also how TheraAgent scores a draft before it is said (the draft as the last turn).
        """
        shown = render_turns(turns)
        return await self.ask(
            self.messages(target=f"T{len(turns)}", transcript=shown.text),
            self.schema,
            max_tokens=200,
            seed=sample,
        )

    @staticmethod
    def result_of(outcome: Structured[Any]) -> dict[str, Any] | None:
        """`{"rationale": ..., "dimensions": {id: score}}`, or None when rating failed."""
        if outcome.value is None:
            return None
        data = outcome.value.model_dump()
        return {"rationale": data.pop("rationale"), "dimensions": data}

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        records = []
        for i, turn in enumerate(transcript.turns):
            if turn.speaker != "therapist":
                continue
            outcome = await self.rate(transcript.turns[: i + 1], sample=sample)
            result = self.result_of(outcome)
            records.append(
                self.record(
                    transcript,
                    sample,
                    structured=outcome,
                    result=result,
                    error=outcome.error,
                    target=turn.id,
                )
            )
        return records

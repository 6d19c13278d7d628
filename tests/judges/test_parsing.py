"""Structured output: valid, invalid, partial and injected replies; re-asks; failures."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from therapygym.errors import ModelCallError
from therapygym.judges.parsing import structured_call


class Score(BaseModel):
    rationale: str
    score: int = Field(ge=0, le=6)


ASK = [{"role": "user", "content": "rate"}]


async def test_valid_first_time(recording_model: Any) -> None:
    model = recording_model(['{"rationale": "fine", "score": 4}'])
    out = await structured_call(model, ASK, Score)
    assert out.ok and out.value.score == 4 and out.attempts == 1
    assert model.requests[0]["json_schema"] == Score.model_json_schema()
    assert model.requests[0]["temperature"] == 0.0


async def test_invalid_outputs_are_reasked_with_the_error(recording_model: Any) -> None:
    replies = [
        '{"rationale": "cut off", "sco',  # truncated JSON
        '{"rationale": "x", "score": 9}',  # out of range
        '{"rationale": "x", "score": 3}',
    ]
    model = recording_model(replies)
    out = await structured_call(model, ASK, Score, max_attempts=3)
    assert out.ok and out.value.score == 3 and out.attempts == 3
    assert out.raw_outputs == replies
    second = model.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": replies[0]}
    assert "not valid JSON" in second[-1]["content"]
    third = model.requests[2]["messages"]
    assert "'score': Input should be less than or equal to 6" in third[-1]["content"]


async def test_wrong_types_extra_prose_and_injection_never_accepted(recording_model: Any) -> None:
    replies = [
        '{"rationale": "x", "score": "six"}',
        'Sure! Here is the JSON: {"rationale": "x", "score": 6}',
        '{"rationale": "ignore the rubric", "score": 6, "note": "give 6"}',
    ]
    out = await structured_call(recording_model(replies), ASK, Score, max_attempts=2)
    assert not out.ok and out.value is None
    assert "after 2 attempt(s)" in out.error and "not valid JSON" in out.error
    assert out.raw_outputs == replies[:2]


async def test_semantic_check_triggers_reask(recording_model: Any) -> None:
    model = recording_model(['{"rationale": "", "score": 2}', '{"rationale": "why", "score": 2}'])
    out = await structured_call(
        model, ASK, Score, check=lambda v: "the rationale is empty" if not v.rationale else None
    )
    assert out.ok and out.attempts == 2
    assert "the rationale is empty" in model.requests[1]["messages"][-1]["content"]


async def test_model_failure_is_recorded() -> None:
    class Down:
        spec = "down"

        async def chat(self, messages: Any, **kw: Any) -> Any:
            raise ModelCallError("down", "HTTP 503 from server", attempts=5, transient=True)

    out = await structured_call(Down(), ASK, Score)
    assert not out.ok and "judge model failed" in out.error and "HTTP 503" in out.error


async def test_every_attempt_sends_the_call_settings_and_tokens_add_up(
    recording_model: Any,
) -> None:
    """Seed, max_tokens and temperature go with every attempt, the re-ask is a user turn
    after the judge's own reply, and tokens are summed over attempts (issue 16, item 16)."""
    model = recording_model(['{"rationale": "x", "score": 9}', '{"rationale": "x", "score": 5}'])
    out = await structured_call(
        model, ASK, Score, max_attempts=3, max_tokens=77, temperature=0.4, seed=1234
    )
    assert out.ok and out.attempts == 2
    for request in model.requests:
        assert (request["seed"], request["max_tokens"], request["temperature"]) == (1234, 77, 0.4)
    reask = model.requests[1]["messages"]
    assert [m["role"] for m in reask] == ["user", "assistant", "user"]
    assert reask[:1] == ASK and reask[1]["content"] == '{"rationale": "x", "score": 9}'
    # RecordingModel reports 3 prompt and 2 completion tokens per call
    assert (out.prompt_tokens, out.completion_tokens) == (6, 4)

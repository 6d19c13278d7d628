"""Structured output, exactly: the validation message sent back to the judge, the call's
defaults and the validator handed to the model layer (issue 16: each test fails on a mutant
of judges/parsing.py that tests/judges/test_parsing.py lets pass; the mutants no test can
kill are listed, with why, in docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from therapygym.judges.parsing import REASK, parse_output, structured_call


class Score(BaseModel):
    rationale: str
    score: int = Field(ge=0, le=6)


class Five(BaseModel):
    a: int
    b: int
    c: int
    d: int
    e: int


class Item(BaseModel):
    score: int


class Items(BaseModel):
    items: dict[str, Item]


ASK = [{"role": "user", "content": "rate"}]
GOOD = '{"rationale": "fine", "score": 4}'


def _problem(text: str, schema: type[BaseModel]) -> str:
    with pytest.raises(ValueError) as err:
        parse_output(text, schema)
    return str(err.value)


def test_the_schema_message_names_three_problems_and_counts_the_rest() -> None:
    required = "Field required"
    assert _problem("{}", Five) == (
        f"it does not match the schema: 'a': {required}; 'b': {required}; 'c': {required} "
        "(and 2 more)"
    )
    assert _problem('{"a": 1}', Five).endswith(f"'d': {required} (and 1 more)")
    assert _problem('{"a": 1, "b": 2}', Five).endswith(
        f"'c': {required}; 'd': {required}; 'e': {required}"
    )
    assert _problem('{"a": 1, "b": 2, "c": 3, "d": 4}', Five) == (
        f"it does not match the schema: 'e': {required}"
    )


def test_the_schema_message_locates_each_problem() -> None:
    assert _problem('{"items": {"agenda": {"score": "x"}}}', Items) == (
        "it does not match the schema: 'items.agenda.score': Input should be a valid "
        "integer, unable to parse string as an integer"
    )
    assert _problem("[1]", Items) == (
        "it does not match the schema: '(top level)': Input should be a valid dictionary "
        "or instance of Items"
    )
    assert _problem("", Score) == "it is not valid JSON (Expecting value at character 0)"


def test_a_check_that_finds_nothing_passes() -> None:
    value = parse_output(GOOD, Score, check=lambda v: "" if v.score == 4 else "wrong")
    assert value == Score(rationale="fine", score=4)
    with pytest.raises(ValueError, match=r"^wrong$"):
        parse_output(GOOD, Score, check=lambda v: "wrong")


async def test_call_defaults(recording_model: Any) -> None:
    model = recording_model(['{"score": 1}'])  # never valid
    out = await structured_call(model, ASK, Score)
    assert (out.ok, out.attempts, len(model.requests)) == (False, 3, 3)
    first = model.requests[0]
    assert (first["max_tokens"], first["seed"], first["temperature"]) == (1024, 0, 0.0)
    assert out.error == (
        "invalid judge output after 3 attempt(s): it does not match the schema: "
        "'rationale': Field required"
    )
    assert model.requests[2]["messages"][-1] == {
        "role": "user",
        "content": REASK.format(error="it does not match the schema: 'rationale': Field required"),
    }


async def test_an_explicit_wire_schema_is_sent_as_given(recording_model: Any) -> None:
    wire = {"type": "object", "properties": {"score": {"type": "integer"}}}
    model = recording_model([GOOD])
    await structured_call(model, ASK, Score, json_schema=wire)
    assert model.requests[0]["json_schema"] == wire


async def test_the_model_layer_is_told_which_replies_are_unusable(recording_model: Any) -> None:
    """`validate` judges a reply as `parse_output` does, the check included, so the model
    layer never caches (or replays) one the judge would be re-asked about."""
    model = recording_model([GOOD])
    await structured_call(
        model, ASK, Score, check=lambda v: "a 4 needs reasons" if v.score == 4 else None
    )
    validate = model.requests[0]["validate"]
    assert validate('{"rationale": "ok", "score": 5}') is None
    assert validate(GOOD) == "a 4 needs reasons"
    assert validate('{"rationale": "x", "score": 9}') == (
        "it does not match the schema: 'score': Input should be less than or equal to 6"
    )
    assert validate("nope") == "it is not valid JSON (Expecting value at character 0)"


async def test_success_after_a_reask_clears_the_error(recording_model: Any) -> None:
    model = recording_model(["nope", GOOD])
    out = await structured_call(model, ASK, Score)
    assert out.ok and out.error is None and out.attempts == 2
    assert out.raw_outputs == ["nope", GOOD]

"""Schema dialects: the hosted-strict conversion, how an answer is restored, which
dialect a model gets, and reasoning text kept apart from the answer."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from therapygym.judges.parsing import parse_output
from therapygym.models.base import split_reasoning
from therapygym.models.dialects import (
    SchemaDialectError,
    hosted_provider,
    resolve_dialect,
    wire_schema,
)
from therapygym.testing.hosted_rules import schema_refusal


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Yes(Closed):
    rationale: str = Field(max_length=20)
    verdict: Literal["yes"]
    severity: Literal["low", "high"]


class No(Closed):
    rationale: str = Field(max_length=20)
    verdict: Literal["no"]


class Answer(Closed):
    label: Yes | No
    evidence: list[Literal["T1", "T3"]] = Field(max_length=1)
    note: str = "none given"
    score: int = Field(ge=0, le=4)


def refusal(schema: dict[str, Any]) -> str | None:
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}}
    found = schema_refusal(fmt)
    return found.message if found else None


def test_hosted_strict_is_accepted_where_the_pydantic_schema_is_refused() -> None:
    raw = Answer.model_json_schema()
    assert "'maxLength' is not permitted" in (refusal(raw) or "")
    wire = wire_schema("hosted-strict", raw).schema
    assert refusal(wire) is None
    assert "$defs" not in wire and "$ref" not in json.dumps(wire)  # refs inlined
    props = wire["properties"]
    assert wire["required"] == ["label", "evidence", "note", "score"]
    assert props["note"] == {"anyOf": [{"type": "string", "title": "Note"}, {"type": "null"}]}
    # the bounds left the wire but are still said to the model
    assert (
        "maxItems" not in props["evidence"] and props["evidence"]["description"] == "At most 1 item"
    )
    assert (
        "minimum" not in props["score"] and props["score"]["description"] == "At most 4; at least 0"
    )
    yes, no = props["label"]["anyOf"]
    assert (next(iter(yes["properties"])), next(iter(no["properties"]))) == ("yes", "no")
    assert yes["properties"]["yes"]["enum"] == [True]


def test_full_is_the_schema_unchanged() -> None:
    raw = Answer.model_json_schema()
    assert wire_schema("full", raw).schema is raw
    assert wire_schema("full", raw).restore('{"note": null}') == '{"note": null}'


def test_a_hosted_answer_is_restored_to_the_callers_shape_and_validated_with_every_bound() -> None:
    wire = wire_schema("hosted-strict", Answer.model_json_schema())
    answer = {
        "label": {"yes": True, "rationale": "Gave a dose.", "verdict": "yes", "severity": "high"},
        "evidence": ["T1"],
        "note": None,
        "score": 3,
    }
    restored = json.loads(wire.restore(json.dumps(answer)))
    assert restored == {
        "label": {"rationale": "Gave a dose.", "verdict": "yes", "severity": "high"},
        "evidence": ["T1"],
        "score": 3,
    }
    value = parse_output(json.dumps(restored), Answer)
    assert value.note == "none given" and isinstance(value.label, Yes)
    no = {**answer, "label": {"no": True, "rationale": "Fine.", "verdict": "no"}, "note": "kept"}
    assert json.loads(wire.restore(json.dumps(no)))["label"] == {
        "rationale": "Fine.",
        "verdict": "no",
    }
    # what the hosted grammar no longer bounds, pydantic still refuses
    for broken in ({"score": 9}, {"evidence": ["T1", "T3"]}):
        with pytest.raises(ValueError, match="does not match the schema"):
            parse_output(wire.restore(json.dumps({**answer, **broken})), Answer)
    long = {**answer, "label": {**answer["label"], "rationale": "x" * 21}}
    with pytest.raises(ValueError, match="at most 20 characters"):
        parse_output(wire.restore(json.dumps(long)), Answer)


def test_text_that_needs_no_restoring_is_returned_as_it_came() -> None:
    wire = wire_schema("hosted-strict", Answer.model_json_schema())
    assert wire.restore("not json {") == "not json {"
    plain = wire_schema("hosted-strict", No.model_json_schema())  # nothing added: no parsing
    text = '{ "rationale" : "a",  "verdict": "no" }'
    assert plain.restore(text) == text


def test_branches_without_a_title_get_numbered_tags() -> None:
    branch = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    schema = {
        "type": "object",
        "properties": {"x": {"anyOf": [branch, branch]}},
        "required": ["x"],
    }
    wire = wire_schema("hosted-strict", schema)
    first, second = wire.schema["properties"]["x"]["anyOf"]
    assert next(iter(first["properties"])) == "option_1"
    assert next(iter(second["properties"])) == "option_2"
    assert refusal(wire.schema) is None
    assert json.loads(wire.restore('{"x": {"option_2": true, "a": "b"}}')) == {"x": {"a": "b"}}


class Tree(BaseModel):
    children: list[Tree]


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        (Tree.model_json_schema(), "refers to itself"),
        (
            {"type": "object", "properties": {"m": {"additionalProperties": {"type": "integer"}}}},
            "free-form keys",
        ),
        ({"type": "object", "properties": {"m": {"not": {"type": "string"}}}}, "'not'"),
    ],
)  # fmt: skip
def test_what_the_strict_subset_cannot_express_is_a_clear_error(
    schema: dict[str, Any], says: str
) -> None:
    with pytest.raises(SchemaDialectError, match=says):
        wire_schema("hosted-strict", schema)


@pytest.mark.parametrize(
    ("base_url", "dialect"),
    [
        (None, "hosted-strict"),
        ("https://api.openai.com/v1", "hosted-strict"),
        ("https://my-res.openai.azure.com/openai/v1", "hosted-strict"),
        ("https://openrouter.ai/api/v1", "hosted-strict"),
        ("https://api.groq.com/openai/v1", "hosted-strict"),
        ("http://127.0.0.1:8000/v1", "full"),
        ("http://localhost:11434/v1", "full"),
        ("https://openai.azure.com.evil.example/v1", "full"),
        ("not a url", "full"),
    ],
)
def test_auto_picks_hosted_strict_for_known_hosted_apis(base_url: str | None, dialect: str) -> None:
    assert resolve_dialect("auto", base_url) == dialect
    assert resolve_dialect("full", base_url) == "full"
    assert resolve_dialect("hosted-strict", base_url) == "hosted-strict"


def test_hosted_provider_names_the_provider() -> None:
    assert hosted_provider("https://x.openai.azure.com/openai/v1") == "Azure OpenAI"
    assert hosted_provider("http://10.0.0.2:8000/v1") is None


@pytest.mark.parametrize(
    ("text", "answer", "reasoning"),
    [
        ("plain answer", "plain answer", None),
        ("<think>weigh it</think>\n\n{\"a\": 1}", '{"a": 1}', "weigh it"),
        ("  <THINK>\nsteps\n</THINK>Hello.", "Hello.", "steps"),
        ("R1 opened the tag in the prompt</think>Hi", "Hi", "R1 opened the tag in the prompt"),
        ("<think>cut off by max_tokens", "", "cut off by max_tokens"),
        ("I said <think> mid-text", "I said <think> mid-text", None),
    ],
)  # fmt: skip
def test_reasoning_text_is_split_from_the_answer(
    text: str, answer: str, reasoning: str | None
) -> None:
    assert split_reasoning(text) == (answer, reasoning)

"""Schema-constrained judge calls, validated with pydantic, re-asked on invalid output.

Every judge call sends the output's JSON schema to the backend (DESIGN 3a: without the
constraint small models almost never produce parseable JSON). The reply is still
validated: bad JSON, wrong types, out-of-range values or a failed semantic check are sent
back to the judge with the validation error, a bounded number of times, and then recorded
as a failure. Every raw output is kept. The model layer is told which replies are unusable,
so the response cache never serves one again: neither to the re-ask nor to a re-run of a
unit that failed, which could otherwise never recover without `--no-cache`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from therapygym.errors import ModelCallError
from therapygym.models.types import ChatModel

T = TypeVar("T", bound=BaseModel)

REASK = (
    "Your previous reply could not be used: {error}. Reply again with only a JSON object "
    "that matches the required schema."
)


@dataclass
class Structured(Generic[T]):
    """The outcome of one judged item: a validated value, or the error that stopped it."""

    value: T | None
    raw_outputs: list[str] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.value is not None


def _first_problem(err: ValidationError) -> str:
    problems = []
    for e in err.errors()[:3]:
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        problems.append(f"'{where}': {e['msg']}")
    more = f" (and {err.error_count() - 3} more)" if err.error_count() > 3 else ""
    return "; ".join(problems) + more


def parse_output(text: str, schema: type[T], check: Callable[[T], str | None] | None = None) -> T:
    """Validate one raw output. Raises ValueError with a message fit to send back."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"it is not valid JSON ({err.msg} at character {err.pos})") from None
    try:
        value = schema.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"it does not match the schema: {_first_problem(err)}") from None
    problem = check(value) if check is not None else None
    if problem:
        raise ValueError(problem)
    return value


async def structured_call(
    model: ChatModel,
    messages: list[dict[str, str]],
    schema: type[T],
    *,
    json_schema: dict[str, Any] | None = None,
    check: Callable[[T], str | None] | None = None,
    max_attempts: int = 3,
    max_tokens: int = 1024,
    temperature: float = 0.0,
    seed: int = 0,
) -> Structured[T]:
    """Ask for `schema`-shaped JSON; re-ask with the error up to `max_attempts` times.

    A model call that fails for good (after the model layer's own retries) ends the
    attempt and is recorded; it is not re-asked.
    """
    wire_schema = json_schema or schema.model_json_schema()

    def problem(text: str) -> str | None:
        try:
            parse_output(text, schema, check)
        except ValueError as err:
            return str(err)
        return None

    result: Structured[T] = Structured(value=None)
    conversation = list(messages)
    for attempt in range(1, max_attempts + 1):
        result.attempts = attempt
        try:
            reply = await model.chat(
                conversation,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                json_schema=wire_schema,
                validate=problem,
            )
        except ModelCallError as err:
            result.error = f"judge model failed: {err}"
            return result
        result.raw_outputs.append(reply.text)
        result.prompt_tokens += reply.prompt_tokens
        result.completion_tokens += reply.completion_tokens
        try:
            result.value = parse_output(reply.text, schema, check)
            result.error = None
            return result
        except ValueError as err:
            result.error = f"invalid judge output after {attempt} attempt(s): {err}"
            conversation = [
                *conversation,
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": REASK.format(error=err)},
            ]
    return result

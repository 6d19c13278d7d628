"""Replies that fill whatever JSON schema a request carries, for the local server.

`FakeOpenAIServer(schema_replier())` answers every structured-output request with a valid
instance of its `response_format` schema (strict dialect: inlined, closed objects) whose
text is random words drawn from the request's seed, so every request gets a different
answer and the same request the same one. Used by the `patients generate` tests and its
benchmark, where a generation needs real, valid, distinct replies over HTTP.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from typing import Any

__all__ = ["schema_instance", "schema_replier"]


def _words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(count))


def schema_instance(schema: dict[str, Any], rng: random.Random) -> Any:
    """A valid instance of `schema`: the first enum value, the first `anyOf` option, the
    minimum of a number, `minItems` items (at least one unless `maxItems` is 0), strings
    of random words within their lengths. In an array of objects, a property with an enum
    takes its values in turn, so each allowed value appears once when the array is as
    long as the enum (risk cues of the sampled kinds)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return schema_instance(schema["anyOf"][0], rng)
    kind = schema["type"]
    if kind == "object":
        return {k: schema_instance(v, rng) for k, v in schema["properties"].items()}
    if kind == "array":
        count = 0 if schema.get("maxItems") == 0 else max(schema.get("minItems", 1), 1)
        items = [schema_instance(schema["items"], rng) for _ in range(count)]
        for name, prop in schema["items"].get("properties", {}).items():
            if len(prop.get("enum", ())) > 1:
                for i, item in enumerate(items):
                    item[name] = prop["enum"][i % len(prop["enum"])]
        return items
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    text = _words(rng, max(3, schema.get("minLength", 0) // 6 + 2))
    return text[: schema.get("maxLength", len(text))]


def schema_replier(text: str = "I see.") -> Callable[[dict[str, Any]], str]:
    """A replier: a schema instance (seeded by the request's seed and length) for a
    structured request, `text` for any other."""

    def reply(body: dict[str, Any]) -> str:
        fmt = body.get("response_format")
        if not fmt:
            return text
        rng = random.Random(int(body.get("seed") or 0) * 7 + len(body["messages"]))
        return json.dumps(schema_instance(fmt["json_schema"]["schema"], rng))

    return reply

"""Scripted judge replies for the local server: a valid instance of whatever JSON schema
the request carries (with a chosen score), and plain text for non-judge calls."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return root["$defs"][schema["$ref"].split("/")[-1]]
    return schema


def instance(schema: dict[str, Any], root: dict[str, Any], score: int, verdict: str) -> Any:
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return instance(root["$defs"][name], root, score, verdict)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if verdict in json.dumps(_resolve(o, root))]
        return instance((options or schema["anyOf"])[0], root, score, verdict)
    if "enum" in schema:
        return verdict if verdict in schema["enum"] else schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        return {k: instance(v, root, score, verdict) for k, v in schema["properties"].items()}
    if kind == "array":
        items = schema.get("items", {})
        return [instance(items, root, score, verdict)] if "enum" in items else []
    if kind == "integer":
        return min(max(score, schema.get("minimum", score)), schema.get("maximum", score))
    if kind == "string":
        return "Scripted rationale."
    raise ValueError(f"unexpected schema {schema}")


def judge_replier(score: int = 4, verdict: str = "no", text: str = "I see.") -> Any:
    """A replier: schema-shaped JSON for judge calls, `text` for everything else."""

    def reply(body: dict[str, Any]) -> str | dict[str, Any]:
        fmt = body.get("response_format")
        if not fmt:
            return text
        schema = fmt["json_schema"]["schema"]
        return instance(schema, schema, score, verdict)

    return reply


def conversation_replier() -> Any:
    """Judge JSON for judge calls; for the others a reply that depends on the request, so
    a session's text is fixed by its conversation and a mixed-up reply would show."""
    judge = judge_replier(score=4, verdict="no")

    def reply(body: dict[str, Any]) -> str | dict[str, Any]:
        if body.get("response_format"):
            return judge(body)
        system = body["messages"][0]["content"]
        role = "patient" if "role-playing a person" in system else "therapist"
        last = hashlib.sha256(body["messages"][-1]["content"].encode()).hexdigest()[:10]
        return f"{role} reply {len(body['messages'])} to {last}"

    return reply

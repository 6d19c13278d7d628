"""Scripted judge replies for the local server: a valid instance of whatever JSON schema
the request carries (with a chosen score), and plain text for non-judge calls."""

from __future__ import annotations

import hashlib
from typing import Any


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return root["$defs"][schema["$ref"].split("/")[-1]]
    return schema


def _verdicts(option: dict[str, Any], root: dict[str, Any]) -> list[str] | None:
    """The verdicts an answer option allows (None when it has no verdict field, like a
    safety@2.0 checklist answer, whose verdict code derives)."""
    got = _resolve(option, root).get("properties", {}).get("verdict")
    if got is None:
        return None
    return got.get("enum", [got.get("const")])


# A checklist item answered "no" is a step left undone: a scripted judge that flags
# violations ("yes") answers its items "no", one that finds none answers them "yes".
_CHECKLIST = {"yes": "no", "no": "yes"}


def instance(schema: dict[str, Any], root: dict[str, Any], score: int, verdict: str) -> Any:
    """A valid instance of `schema` with `score` for integers and `verdict` wherever it
    is allowed: an option (anyOf) whose verdict field allows it is preferred, then one with
    no verdict field (a checklist answer), then the first."""
    if "$ref" in schema:
        return instance(_resolve(schema, root), root, score, verdict)
    if "anyOf" in schema:
        options = schema["anyOf"]
        fits = [o for o in options if verdict in (_verdicts(o, root) or [])]
        fits = fits or [o for o in options if _verdicts(o, root) is None]
        return instance((fits or options)[0], root, score, verdict)
    if "enum" in schema:
        return verdict if verdict in schema["enum"] else schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        return {
            k: instance(
                v, root, score, _CHECKLIST.get(verdict, verdict) if k == "checklist" else verdict
            )
            for k, v in schema["properties"].items()
        }
    if kind == "array":
        items = _resolve(schema.get("items", {}), root)
        chosen = ("enum" in items or "const" in items) and schema.get("maxItems") != 0
        return [instance(items, root, score, verdict)] if chosen else []
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

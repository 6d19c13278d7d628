"""What a hosted OpenAI-style API refuses, for the local server's strict mode.

Written from the hosted APIs' documented rules and their error texts, independently of the
dialect that converts our schemas (`models/dialects.py`): a test that a converted schema
passes here checks the conversion against the rules, not against itself.

Strict structured outputs (`response_format.json_schema.strict: true`) accept a subset of
JSON Schema: the root is an object; every object sets `additionalProperties: false` and
lists every property in `required`; length, count, numeric and pattern keywords and the
composition keywords are refused; `anyOf` object branches must not share their first key;
at most 10 levels of nesting and 5,000 properties. Reasoning models (o1, o3, o4-mini, the
gpt-5 family) refuse `max_tokens` and any temperature but the default.

Each check returns an `HostedRefusal` (the HTTP 400 body's fields) or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["HostedRefusal", "is_reasoning_model", "parameter_refusal", "schema_refusal"]

REFUSED_KEYWORDS = (
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
)
MAX_DEPTH = 10
MAX_PROPERTIES = 5000
_REASONING = re.compile(r"^(o1|o3|o4-mini|gpt-5)([-.].*)?$")


@dataclass(frozen=True)
class HostedRefusal:
    """An HTTP 400 as the hosted API words it."""

    message: str
    param: str
    code: str

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


def is_reasoning_model(name: str) -> bool:
    """An o-series or gpt-5 model name (a dated or sized variant included)."""
    return bool(_REASONING.match(name.rsplit("/", 1)[-1].lower()))


def parameter_refusal(body: dict[str, Any]) -> HostedRefusal | None:
    """What a reasoning model refuses among the sampling parameters."""
    if not is_reasoning_model(str(body.get("model") or "")):
        return None
    if "max_tokens" in body:
        return HostedRefusal(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return HostedRefusal(
            f"Unsupported value: 'temperature' does not support {temperature} with this "
            "model. Only the default (1) value is supported.",
            "temperature",
            "unsupported_value",
        )
    return None


class _Checker:
    def __init__(self, root: dict[str, Any], name: str) -> None:
        self.defs: dict[str, Any] = root.get("$defs") or {}
        self.prefix = f"Invalid schema for response_format '{name}'"
        self.properties = 0
        self._following: set[str] = set()  # refs being checked, so recursion ends

    def refuse(self, context: tuple[str, ...], text: str) -> HostedRefusal:
        return HostedRefusal(
            f"{self.prefix}: In context={context!r}, {text}",
            "response_format",
            "invalid_json_schema",
        )

    def resolve(self, node: Any) -> Any:
        """The definition a `$ref` names (followed to the end), or the node itself."""
        seen: set[str] = set()
        while isinstance(node, dict) and "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            if name in seen or name not in self.defs:
                return node
            seen.add(name)
            node = self.defs[name]
        return node

    def check(self, node: Any, context: tuple[str, ...], depth: int) -> HostedRefusal | None:
        if not isinstance(node, dict):
            return None
        if "$ref" in node:
            ref = str(node["$ref"])
            if ref in self._following:  # recursive schemas are allowed
                return None
            target = self.resolve(node)
            if target is node:
                return self.refuse(context, f"reference '{ref}' cannot be resolved.")
            self._following.add(ref)
            try:
                return self.check(target, context, depth)
            finally:
                self._following.discard(ref)
        for keyword in REFUSED_KEYWORDS:
            if keyword in node:
                return self.refuse(context, f"'{keyword}' is not permitted.")
        if "anyOf" in node:
            return self.check_any_of(node["anyOf"], context, depth)
        if node.get("type") == "object" or "properties" in node:
            return self.check_object(node, context, depth)
        if "items" in node:
            return self.check(node["items"], (*context, "items"), depth)
        return None

    def check_object(
        self, node: dict[str, Any], context: tuple[str, ...], depth: int
    ) -> HostedRefusal | None:
        if depth > MAX_DEPTH:
            return self.refuse(context, f"the schema nests more than {MAX_DEPTH} levels.")
        if node.get("additionalProperties") is not False:
            return self.refuse(
                context, "'additionalProperties' is required to be supplied and to be false."
            )
        props: dict[str, Any] = node.get("properties") or {}
        missing = [name for name in props if name not in (node.get("required") or ())]
        if missing:
            return self.refuse(
                context,
                "'required' is required to be supplied and to be an array including every "
                f"key in properties. Missing '{missing[0]}'.",
            )
        self.properties += len(props)
        if self.properties > MAX_PROPERTIES:
            return self.refuse(context, f"more than {MAX_PROPERTIES} properties in total.")
        for name, sub in props.items():
            if (problem := self.check(sub, (*context, "properties", name), depth + 1)) is not None:
                return problem
        return None

    def check_any_of(
        self, branches: Any, context: tuple[str, ...], depth: int
    ) -> HostedRefusal | None:
        firsts: set[str] = set()
        for i, branch in enumerate(branches):
            where = (*context, "anyOf", str(i))
            target = self.resolve(branch)
            if isinstance(target, dict) and target.get("properties"):
                first = next(iter(target["properties"]))
                if first in firsts:
                    return self.refuse(
                        context, "objects provided via 'anyOf' must not share identical first keys."
                    )
                firsts.add(first)
            if (problem := self.check(branch, where, depth)) is not None:
                return problem
        return None


def schema_refusal(response_format: Any) -> HostedRefusal | None:
    """Why a hosted API refuses this `response_format`, or None. Only a strict json_schema
    format is held to the subset (a non-strict one is accepted as it is)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    if not spec.get("strict"):
        return None
    name = str(spec.get("name") or "response")
    schema = spec.get("schema")
    checker = _Checker(schema if isinstance(schema, dict) else {}, name)
    if not isinstance(schema, dict) or schema.get("type") != "object":
        kind = schema.get("type") if isinstance(schema, dict) else None
        return HostedRefusal(
            f"{checker.prefix}: schema must be a JSON Schema of 'type: \"object\"', got "
            f"'type: \"{kind}\"'.",
            "response_format",
            "invalid_json_schema",
        )
    for name_, definition in checker.defs.items():
        if (problem := checker.check(definition, ("$defs", name_), 1)) is not None:
            return problem
    checker.properties = 0
    return checker.check(schema, (), 1)

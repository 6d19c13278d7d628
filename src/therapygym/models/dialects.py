"""Provider schema dialects: the JSON schema a caller asks for, as each backend accepts it.

Judges send the pydantic-generated schema of their answer (`$defs` and `$ref`, closed
objects, `maxLength` on rationales, `maxItems` on evidence, `anyOf` verdict branches). Two
dialects reach the wire:

- `full` (llama.cpp, vLLM, SGLang, any local server): the schema unchanged. Their grammar
  engines take all of it, and the bounds keep a small model's rationale from running on.
- `hosted-strict` (OpenAI, Azure and the hosted APIs that copy their strict mode): only the
  subset strict mode accepts. Every object is closed (`additionalProperties: false`) and
  lists every property in `required`; an optional property becomes a nullable one; length,
  count, numeric and pattern bounds are dropped (and said in the property's description,
  so the model still reads them); `$ref`s are inlined; `oneOf` becomes `anyOf`; and when
  `anyOf` object branches share their first key (the safety verdict branches all start
  with `rationale`), each branch gets a first key of its own, a `true` tag named after the
  branch, so the hosted grammar can tell them apart from the first token.

Nothing dropped from the wire is lost: the answer is still validated by the caller's
pydantic model (`judges/parsing.py`), which carries every bound, and a bad answer is
re-asked with its error. What the dialect added is taken off the answer before anyone sees
it (`WireSchema.restore`): the branch tags, and the `null`s of optional properties the
model had to fill, so pydantic sees the shape it asked for.

Which dialect a model gets is its config's `schema_dialect`: `auto` means hosted-strict for
the OpenAI API (no `base_url`) and the hosts in `HOSTED_HOSTS`, full for anything else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from yarl import URL

SchemaDialect = Literal["auto", "hosted-strict", "full"]
WireDialect = Literal["hosted-strict", "full"]

# Hosts whose OpenAI-compatible endpoint enforces OpenAI's strict-schema subset (or
# refuses keywords outside it). A leading "*." matches any subdomain. Small on purpose:
# a host not listed gets the full schema, and `schema_dialect: hosted-strict` in a models
# file covers any other gateway.
HOSTED_HOSTS: dict[str, str] = {
    "api.openai.com": "OpenAI",
    "*.openai.azure.com": "Azure OpenAI",
    "openrouter.ai": "OpenRouter",
    "api.together.xyz": "Together AI",
    "api.groq.com": "Groq",
    "generativelanguage.googleapis.com": "Google Gemini (OpenAI compatibility)",
    "api.deepseek.com": "DeepSeek",
    "api.mistral.ai": "Mistral",
}

# Keywords strict mode refuses, with how the dropped bound is said in the description.
_BOUNDS: dict[str, str] = {
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "pattern": "matching the pattern {}",
    "format": "in {} format",
    "minimum": "at least {}",
    "maximum": "at most {}",
    "exclusiveMinimum": "more than {}",
    "exclusiveMaximum": "less than {}",
    "multipleOf": "a multiple of {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
    "uniqueItems": "no item twice",
    "minProperties": "at least {} properties",
    "maxProperties": "at most {} properties",
}
# Bounds that bound nothing, not worth a word.
_TRIVIAL = frozenset({("minLength", 0), ("minItems", 0), ("uniqueItems", False)})
# Dropped without a word: annotations pydantic adds that strict mode does not take
# (`default` is filled in again by pydantic when the answer is validated).
_DROPPED_SILENTLY = frozenset({"default", "discriminator", "examples", "$schema", "$id"})
# What no rewriting can express in the strict subset.
_UNSUPPORTED = ("not", "if", "then", "else", "patternProperties")
_TAG_DESCRIPTION = "Write this key first, as true, to give this form of answer."


def _say_bound(keyword: str, value: Any) -> str:
    """A dropped bound in words, for the description: "at most 3 items", "no items"."""
    if keyword == "maxItems" and value == 0:
        return "no items"
    said = _BOUNDS[keyword].format(value)
    return said.removesuffix("s") if value == 1 and said.endswith(("items", "characters")) else said


class SchemaDialectError(ValueError):
    """A schema the hosted-strict subset cannot express (recursive, free-form mapping)."""


def hosted_provider(base_url: str | None) -> str | None:
    """The hosted provider a base URL points at (from `HOSTED_HOSTS`), None if not known."""
    if base_url is None:
        return HOSTED_HOSTS["api.openai.com"]
    try:
        host = (URL(base_url.strip()).host or "").lower()
    except (ValueError, TypeError):
        return None
    for pattern, provider in HOSTED_HOSTS.items():
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return provider
    return None


def resolve_dialect(option: SchemaDialect, base_url: str | None) -> WireDialect:
    """`auto`: hosted-strict for a known hosted API, full for anything else."""
    if option != "auto":
        return option
    return "hosted-strict" if hosted_provider(base_url) is not None else "full"


# -- restoring an answer ------------------------------------------------------------------


@dataclass(frozen=True)
class _Object:
    props: dict[str, _Plan] = field(default_factory=dict)
    drop_if_null: frozenset[str] = frozenset()
    tag: str | None = None
    first_key: str | None = None


@dataclass(frozen=True)
class _Array:
    items: _Plan


@dataclass(frozen=True)
class _Union:
    branches: tuple[_Plan, ...]


_Plan = _Object | _Array | _Union | None


def _restore(data: Any, plan: _Plan) -> Any:
    """`data` with what the dialect added taken off, following the plan (a new value)."""
    if plan is None:
        return data
    if isinstance(plan, _Array):
        return [_restore(x, plan.items) for x in data] if isinstance(data, list) else data
    if isinstance(plan, _Union):
        return _restore(data, _branch_for(data, plan))
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if key == plan.tag or (key in plan.drop_if_null and value is None):
            continue
        out[key] = _restore(value, plan.props.get(key))
    return out


def _branch_for(data: Any, union: _Union) -> _Plan:
    """The branch an answer took: the one whose tag it carries, else (first keys differ
    when no tags were needed) the one whose first key it starts with."""
    if isinstance(data, list):
        return next((b for b in union.branches if isinstance(b, _Array)), None)
    if not isinstance(data, dict) or not data:
        return None
    objects = [b for b in union.branches if isinstance(b, _Object)]
    for branch in objects:
        if branch.tag is not None and branch.tag in data:
            return branch
    first = next(iter(data))
    return next((b for b in objects if b.first_key == first), None)


@dataclass(frozen=True)
class WireSchema:
    """A schema as one dialect sends it, and how to turn an answer back into the caller's shape."""

    schema: dict[str, Any]
    _plan: _Plan = None

    def restore(self, text: str) -> str:
        """The answer text without what the dialect added; unchanged when nothing was
        added or the text is no JSON (the caller's validation says what is wrong)."""
        if self._plan is None:
            return text
        try:
            data = json.loads(text)
        except ValueError:
            return text
        restored = _restore(data, self._plan)
        return text if restored == data else json.dumps(restored, ensure_ascii=False)


# -- hosted-strict ------------------------------------------------------------------------


def _snake(title: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", title).replace(" ", "_").lower()


def _nullable(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_nullable(b) for b in schema.get("anyOf", ()) if isinstance(b, dict))


class _HostedStrict:
    """One conversion: the root's `$defs` and the refs being inlined (to catch cycles)."""

    def __init__(self, root: dict[str, Any]) -> None:
        self._defs: dict[str, Any] = root.get("$defs") or root.get("definitions") or {}
        self._inlining: list[str] = []

    def convert(self, node: Any, where: str) -> tuple[Any, _Plan]:
        if not isinstance(node, dict):
            return node, None
        if "$ref" in node:
            return self._inline(node, where)
        if len(node.get("allOf", ())) == 1:  # pydantic's way to describe a $ref
            merged = {**node, **node["allOf"][0]}
            del merged["allOf"]
            return self.convert(merged, where)
        for keyword in (*_UNSUPPORTED, "allOf"):
            if keyword in node:
                raise SchemaDialectError(
                    f"{where}: '{keyword}' has no hosted-strict equivalent; use "
                    "schema_dialect=full for a server that takes the full schema"
                )
        out: dict[str, Any] = {}
        said: list[str] = []
        for key, value in node.items():
            if key in _BOUNDS:
                if (key, value) in _TRIVIAL:
                    continue
                said.append(_say_bound(key, value))
            elif key not in _DROPPED_SILENTLY and key not in ("$defs", "definitions"):
                out[key] = value
        if said:
            bound = "; ".join(said)
            out["description"] = (
                f"{out['description']} ({bound})" if "description" in out else bound.capitalize()
            )
        if "oneOf" in out:
            out["anyOf"] = out.pop("oneOf")
        if "prefixItems" in out:  # a tuple: any of its item schemas (the count is described)
            prefix = out.pop("prefixItems")
            same = all(p == prefix[0] for p in prefix)
            out["items"] = prefix[0] if same else {"anyOf": prefix}
        if "anyOf" in out:
            return self._union(out, where)
        if out.get("type") == "object" or "properties" in out or "additionalProperties" in out:
            return self._object(out, where)
        if "items" in out:
            items, plan = self.convert(out["items"], f"{where}.items")
            out["items"] = items
            return out, (_Array(plan) if plan is not None else None)
        return out, None

    def _inline(self, node: dict[str, Any], where: str) -> tuple[Any, _Plan]:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        if not ref.startswith(("#/$defs/", "#/definitions/")) or name not in self._defs:
            raise SchemaDialectError(f"{where}: cannot resolve $ref '{ref}'")
        if name in self._inlining:
            raise SchemaDialectError(
                f"{where}: '{name}' refers to itself; a recursive schema cannot be inlined "
                "for hosted-strict (use schema_dialect=full)"
            )
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        self._inlining.append(name)
        try:
            return self.convert({**self._defs[name], **siblings}, where)
        finally:
            self._inlining.pop()

    def _object(self, node: dict[str, Any], where: str) -> tuple[dict[str, Any], _Plan]:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) or (extra is True and not node.get("properties")):
            raise SchemaDialectError(
                f"{where}: a mapping with free-form keys has no hosted-strict equivalent "
                "(strict mode needs every key named); use schema_dialect=full"
            )
        required = set(node.get("required", ()))
        props: dict[str, Any] = {}
        plans: dict[str, _Plan] = {}
        added_null: set[str] = set()
        for name, sub in (node.get("properties") or {}).items():
            converted, plan = self.convert(sub, f"{where}.{name}")
            if name not in required and not _nullable(converted):
                converted = {"anyOf": [converted, {"type": "null"}]}
                added_null.add(name)
            props[name] = converted
            if plan is not None:
                plans[name] = plan
        out = {**node, "type": "object", "properties": props}
        out["required"] = list(props)
        out["additionalProperties"] = False
        if not plans and not added_null:
            return out, None
        return out, _Object(plans, frozenset(added_null), first_key=next(iter(props), None))

    def _union(self, node: dict[str, Any], where: str) -> tuple[dict[str, Any], _Plan]:
        branches, plans = [], []
        for i, branch in enumerate(node["anyOf"]):
            converted, plan = self.convert(branch, f"{where}.anyOf[{i}]")
            branches.append(converted)
            plans.append(plan)
        objects = [i for i, b in enumerate(branches) if b.get("type") == "object"]
        firsts = [next(iter(branches[i]["properties"]), None) for i in objects]
        if len(set(firsts)) < len(firsts):
            self._tag(branches, plans, objects, [node["anyOf"][i] for i in objects])
        out = {**node, "anyOf": branches}
        if all(p is None for p in plans):
            return out, None
        for i in objects:  # a branch with nothing to restore is still told apart by its first key
            if plans[i] is None:
                plans[i] = _Object(first_key=next(iter(branches[i]["properties"]), None))
        return out, _Union(tuple(plans))

    def _tag(
        self,
        branches: list[dict[str, Any]],
        plans: list[_Plan],
        objects: list[int],
        originals: list[Any],
    ) -> None:
        """Give each object branch a first key of its own: a `true` tag named after the
        branch (its pydantic model name, snake-cased), else `option_N`."""
        titles = []
        for original, i in zip(originals, objects, strict=True):
            ref = original.get("$ref", "") if isinstance(original, dict) else ""
            title = branches[i].get("title") or ref.rsplit("/", 1)[-1]
            titles.append(_snake(title) if title else "")
        taken = {name for i in objects for name in branches[i]["properties"]}
        if len(set(titles)) < len(titles) or not all(titles) or taken & set(titles):
            titles = [f"option_{n + 1}" for n in range(len(objects))]
        for tag, i in zip(titles, objects, strict=True):
            branch = branches[i]
            props = {tag: {"type": "boolean", "enum": [True], "description": _TAG_DESCRIPTION}}
            branch["properties"] = {**props, **branch["properties"]}
            branch["required"] = list(branch["properties"])
            old = plans[i] if isinstance(plans[i], _Object) else _Object()
            plans[i] = _Object(old.props, old.drop_if_null, tag=tag, first_key=tag)


@lru_cache(maxsize=512)
def _hosted_strict(text: str) -> WireSchema:
    root = json.loads(text)
    schema, plan = _HostedStrict(root).convert(root, "schema")
    return WireSchema(schema, plan)


def wire_schema(dialect: WireDialect, schema: dict[str, Any]) -> WireSchema:
    """`schema` as `dialect` sends it. Conversions are remembered (a judge sends the same
    few schemas for every session); the order of properties is part of what is
    remembered, as it is of what the model writes first."""
    if dialect == "full":
        return WireSchema(schema)
    return _hosted_strict(json.dumps(schema))

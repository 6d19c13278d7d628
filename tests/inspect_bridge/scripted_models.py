"""Scripted models for the bridge's tests, importable as `python:` specs by an `inspect
eval` subprocess (the test puts this folder and tests/judges on its PYTHONPATH): a patient
whose lines depend on the conversation, and judges that answer any judge schema validly
with a chosen score and verdict (tests/judges/scripted.py)."""

from __future__ import annotations

import json
from typing import Any

from scripted import instance


def patient(messages: list[dict[str, str]]) -> str:
    """A patient line naming how many messages it was sent, so each turn differs."""
    return f"Patient says more ({len(messages)} messages so far)."


def _judge(json_schema: dict[str, Any] | None, score: int, verdict: str) -> str:
    if json_schema is None:
        raise ValueError("a judge call without a schema")
    return json.dumps(instance(json_schema, json_schema, score, verdict))


def judge_clean(messages: list[dict[str, str]], json_schema: dict[str, Any] | None = None) -> str:
    """Every CTRS item 4, no safety label violated."""
    return _judge(json_schema, 4, "no")


def judge_flags(messages: list[dict[str, str]], json_schema: dict[str, Any] | None = None) -> str:
    """Every CTRS item 2, every safety label violated where a verdict can say so."""
    return _judge(json_schema, 2, "yes")

"""Every judge schema we ship against the hosted strict subset (the local server's strict
mode): refused as pydantic writes it, accepted in the hosted-strict dialect, and a real
judge run through the strict server succeeds in that dialect and fails without it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from judges.scripted import instance

from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import JUDGES, build_judges, settings_for
from therapygym.judges.rubric import builtin_rubric, builtin_versions
from therapygym.models import Completion, load_model
from therapygym.models.dialects import wire_schema
from therapygym.records import SessionStatus, Transcript, Turn
from therapygym.testing.hosted_rules import schema_refusal

# A simulated session of a library profile with risk cues, the cues told on its patient
# turns, and a check question: every judge kind has something to ask about it.
PROFILE = "dep-02-emeka"
TOLD = [[], ["suicidal_ideation"], ["self_harm", "medication_question"], []]


def session() -> Transcript:
    turns = []
    for n, cues in enumerate(TOLD):
        turns.append(
            Turn(
                id=f"s:{2 * n}",
                index=2 * n,
                speaker="patient",
                text=f"Patient line {n}.",
                cues=cues,
            )
        )
        turns.append(
            Turn(
                id=f"s:{2 * n + 1}",
                index=2 * n + 1,
                speaker="therapist",
                text=f"Therapist line {n}.",
            )
        )
    return Transcript(
        session_id="s-strict",
        profile_id=PROFILE,
        therapist="rule-based",
        patient="llm-patient:x",
        status=SessionStatus.COMPLETED,
        turns=turns,
        meta={"cues_tracked": True, "check_questions": {"q1": "Does the reply stay kind?"}},
    )


class SchemaCapture:
    """A judge model that records the schema of every call and answers nothing usable."""

    spec = "capture"

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    async def chat(self, messages: list[Any], **params: Any) -> Completion:
        schema = params["json_schema"]
        self.schemas[json.dumps(schema)] = schema
        return Completion(text="{}", model=self.spec)


PLANS = [
    pytest.param(kind, version, mode, id=f"{kind}@{version}-{mode}")
    for kind in JUDGES.names()
    for version in builtin_versions(kind)  # type: ignore[arg-type]
    for mode in ("one_call", "split")
]


async def shipped_schemas(kind: str, version: str, mode: str) -> list[dict[str, Any]]:
    """The schemas a `kind@version` judge sends about `session()`, built by the judge
    itself (`split`: per-item CTRS, per-group safety; other kinds have one mode)."""
    split = mode == "split"
    plan = JudgePlan(
        judges=("x",),
        rubrics=(f"{kind}@{version}",),
        ctrs_mode="per_item" if split else "one_call",
        safety_mode="per_group" if split else "one_call",
    )
    model = SchemaCapture()
    judge = JUDGES.get(kind).from_plan(
        model, builtin_rubric(kind, version), settings_for(plan), plan
    )  # type: ignore[arg-type]
    await judge.score(session())
    assert model.schemas, f"{kind}@{version} sent no schema"
    return list(model.schemas.values())


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(("kind", "version", "mode"), PLANS)
async def test_every_judge_schema_is_refused_raw_and_accepted_in_the_hosted_dialect(
    kind: str, version: str, mode: str
) -> None:
    for schema in await shipped_schemas(kind, version, mode):
        raw = schema_refusal(strict(schema))
        assert raw is not None and raw.code == "invalid_json_schema"
        assert schema_refusal(strict(wire_schema("hosted-strict", schema).schema)) is None


async def test_the_safety_verdict_branches_would_be_refused_for_their_first_keys_alone() -> None:
    """Not only the bounds: with every bound and ref gone, the verdict branches still start
    with the same key, which the hosted API refuses; the dialect's tags fix that."""
    (schema,) = await shipped_schemas("safety", "1.0", "one_call")
    wire = wire_schema("hosted-strict", schema).schema
    label = next(iter(wire["properties"]))
    untagged = json.loads(json.dumps(wire))
    for branch in untagged["properties"][label]["anyOf"]:
        tag = next(iter(branch["properties"]))
        del branch["properties"][tag]
        branch["required"].remove(tag)
    refusal = schema_refusal(strict(untagged))
    assert refusal is not None and "identical first keys" in refusal.message


@pytest.mark.parametrize("rubrics", [("ctrs", "safety"), ("ctrs@1.0", "safety@1.0")])
async def test_a_judge_run_against_the_strict_server(
    openai_server: Any, server_spec: Any, rubrics: tuple[str, ...]
) -> None:
    def judge(body: dict[str, Any]) -> str:
        schema = body["response_format"]["json_schema"]["schema"]
        return json.dumps(instance(schema, schema, 4, "no"))

    server = openai_server(judge, strict=True)
    plan = JudgePlan(judges=("x",), rubrics=rubrics)  # type: ignore[arg-type]
    transcript = session()
    for dialect in ("hosted-strict", "full"):
        model = load_model(server_spec(server, schema_dialect=dialect, max_retries=0))
        try:
            records = [r for j in build_judges(plan, model) for r in await j.score(transcript)]
        finally:
            await model.aclose()
        assert records
        if dialect == "hosted-strict":
            assert all(r.error is None and r.result is not None for r in records), [
                r.error for r in records
            ]
            assert not server.refusals
            sent = [b["response_format"]["json_schema"]["schema"] for b in server.requests]
            assert all(schema_refusal(strict(s)) is None for s in sent)
        else:  # what every hosted call did before the dialect
            assert all(r.result is None and "Invalid schema" in (r.error or "") for r in records)
            assert server.refusals

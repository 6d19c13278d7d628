"""Golden transcripts for safety@2.0: the parts of a safety judgement that our code decides.

Each case in `golden_safety/*.yaml` is a short transcript written by us, the cues the
simulator was told to raise (if any), the patient's locale, and the judge's answers for the
labels that matter to the case. The judge is the local OpenAI-compatible server, scripted
with those answers (every other label gets a clean answer: "not applicable" where the
schema offers it, otherwise "no"), so what is tested is our logic, not a model: which
labels are applicable and from where, what the schema offers, the checklist's verdict rule,
the severity rules, one event counted once, and what the prompt shows.

Case fields: `id`, `pins` (the rule it pins), `turns` (`patient:` or `therapist:` text, and
`cues:` scripted on a patient turn), `cues_tracked` (default: true when any turn has cues),
`locale`, `judge` (answers by label; sent as given, even where the schema forbids them, so
a case can pin that the schema refuses them), `expect` (`labels`, `offers_na`,
`severity_choices`, `not_asked`, `prompt`, `error`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from therapygym.judges.rubric import SafetyLabel2, SafetyRubric2, builtin_rubric
from therapygym.judges.safety import SafetyJudge
from therapygym.models import load_model
from therapygym.records import SessionStatus, Transcript, Turn

CASES_DIR = Path(__file__).parent / "golden_safety"


def _yes_no(value: Any) -> Any:
    """YAML reads a bare yes/no as a boolean; the answers are the words."""
    return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


def load_cases() -> list[dict[str, Any]]:
    cases = [
        c for path in sorted(CASES_DIR.glob("*.yaml")) for c in yaml.safe_load(path.read_text())
    ]
    ids = [c["id"] for c in cases]
    assert len(set(ids)) == len(ids), "golden case ids must be distinct"
    return cases


CASES = load_cases()


def rubric() -> SafetyRubric2:
    got = builtin_rubric("safety")
    assert isinstance(got, SafetyRubric2)
    return got


def transcript_of(case: dict[str, Any]) -> Transcript:
    turns = []
    for i, raw in enumerate(case["turns"]):
        speaker = "patient" if "patient" in raw else "therapist"
        turns.append(
            Turn(id=f"g:{i}", index=i, speaker=speaker, text=raw[speaker], cues=raw.get("cues", []))
        )
    tracked = case.get("cues_tracked", any(t.cues for t in turns))
    meta: dict[str, Any] = {"cues_tracked": tracked}
    if "locale" in case:
        meta["locale"] = case["locale"]
    return Transcript(
        session_id=f"golden-{case['id']}",
        profile_id="golden",
        therapist="golden-therapist",
        patient="golden-patient",
        status=SessionStatus.COMPLETED,
        meta=meta,
        turns=turns,
    )


def offers_na(schema: dict[str, Any], label_id: str) -> bool:
    """Whether the request's schema lets the judge answer `label_id` "not applicable"."""
    for body in branches(schema, label_id):
        verdict = body["properties"].get("verdict", {})
        if "not_applicable" in verdict.get("enum", [verdict.get("const")]):
            return True
    return False


def branches(schema: dict[str, Any], label_id: str) -> list[dict[str, Any]]:
    field = schema["properties"][label_id]
    return [
        schema["$defs"][o["$ref"].split("/")[-1]] if "$ref" in o else o
        for o in field.get("anyOf", [field])
    ]


def asked_fields(schema: dict[str, Any], label_id: str) -> set[str]:
    """Every field any answer option of the label asks for."""
    return {name for body in branches(schema, label_id) for name in body["properties"]}


def severity_choices(schema: dict[str, Any], label_id: str) -> list[str]:
    for body in branches(schema, label_id):
        got = body["properties"].get("severity")
        if got is not None:
            return got.get("enum", [got.get("const")])
    return []


def answer(label: SafetyLabel2, given: dict[str, Any] | None, na_offered: bool) -> dict[str, Any]:
    """The scripted judge's answer for one label: `given` in the schema's shape, or a
    clean answer when the case says nothing about the label."""
    clean = "not_applicable" if label.requires_cues and na_offered else "no"
    given = {k: _yes_no(v) for k, v in (given or {"verdict": clean}).items()}
    out: dict[str, Any] = {}
    if label.requires_cues:
        out["cues_heard"] = given.get("heard", [])
        out["cue_turns"] = given.get("cue_turns", [])
    if given.get("verdict") == "not_applicable":
        return {**out, "rationale": "No such cue.", "verdict": "not_applicable"}
    if label.checklist:
        items = {k: _yes_no(v) for k, v in given.get("items", {}).items()}
        out["checklist"] = {
            label.checklist.gate.id: given.get("gate", "present"),
            **{
                i.id: {"answer": items.get(i.id, "yes"), "turns": given.get("evidence", [])[:2]}
                for i in label.checklist.items
            },
        }
        return {**out, "rationale": "Scripted.", "evidence": given.get("evidence", [])}
    out.update(rationale="Scripted.", evidence=given.get("evidence", []), verdict=given["verdict"])
    if given["verdict"] == "yes" and len(label.severity.choices) > 1:
        out["severity"] = given.get("severity", label.severity.default)
    return out


def replier(case: dict[str, Any]) -> Any:
    def reply(body: dict[str, Any]) -> Any:
        schema = body["response_format"]["json_schema"]["schema"]
        return {
            label.id: answer(
                label, case.get("judge", {}).get(label.id), offers_na(schema, label.id)
            )
            for label in rubric().labels
        }

    return reply


def ids_of(labels: list[str]) -> list[str]:
    """T3 -> g:2 (turn labels as the stored turn ids)."""
    return [f"g:{int(t[1:]) - 1}" for t in labels]


def check_label(case_id: str, label_id: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    where = f"{case_id}: {label_id}"
    for key, value in want.items():
        value = _yes_no(value)
        if key == "source":
            assert got["applicability"]["source"] == value, where
        elif key == "missing":
            assert got["checklist"]["missing"] == value, where
        elif key == "counted_as":
            assert got["one_event"]["counted_as"] == value, where
        elif key == "evidence":
            assert got["evidence"] == ids_of(value), where
        elif key == "rules":
            assert [r["at_least"] for r in got["severity_basis"]["rules"]] == value, where
        else:
            assert got[key] == value, f"{where}: {key}"


def test_there_are_at_least_forty_golden_transcripts() -> None:
    assert len(CASES) >= 40
    assert all(c.get("pins") and len(c["turns"]) >= 2 for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
async def test_golden(case: dict[str, Any], openai_server: Any, server_spec: Any) -> None:
    server = openai_server(replier(case))
    model = load_model(server_spec(server))
    try:
        (rec,) = await SafetyJudge(model, rubric()).score(transcript_of(case))
    finally:
        await model.aclose()
    expect = case["expect"]
    request = server.requests[0]
    schema = request["response_format"]["json_schema"]["schema"]
    for label_id, offered in expect.get("offers_na", {}).items():
        assert offers_na(schema, label_id) is offered, f"{case['id']}: {label_id} N/A offered"
    for label_id, choices in expect.get("severity_choices", {}).items():
        assert severity_choices(schema, label_id) == choices, f"{case['id']}: {label_id}"
    for label_id, fields in expect.get("not_asked", {}).items():
        assert not set(fields) & asked_fields(schema, label_id), f"{case['id']}: {label_id}"
    prompt = request["messages"][-1]["content"]
    for text in expect.get("prompt", []):
        assert text in prompt, f"{case['id']}: prompt lacks {text!r}"
    if "error" in expect:
        assert rec.result is None and expect["error"] in (rec.error or ""), rec.error
        return
    assert rec.error is None, rec.error
    assert rec.rubric_version == "2.0"
    labels = rec.result["labels"]
    assert set(labels) == {label.id for label in rubric().labels}
    for label_id, want in expect.get("labels", {}).items():
        check_label(case["id"], label_id, labels[label_id], want)
    # whatever the case, the stored record is plain JSON
    json.dumps(rec.result)

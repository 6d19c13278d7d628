"""safety@2.0 per_group mode: the labels asked in several calls (one group each), merged,
then the rubric's rules in code, exactly as in one call.

The golden transcripts of `golden_safety/` are judged in both modes by the same scripted
judge (`test_safety_golden.replier`, each reply cut to the labels its request's schema
asks for), so any difference in the stored result is ours: the grouping, the merge, or a
rule that saw only part of the answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import cli
from test_safety_golden import CASES, answer, check_label, offers_na, rubric, transcript_of

from therapygym.config import EvalConfig
from therapygym.errors import TherapygymError
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import build_judges
from therapygym.judges.rubric import builtin_rubric
from therapygym.judges.safety import SafetyJudge, safety_groups
from therapygym.models import load_model
from therapygym.records import SessionStatus, Transcript, Turn

CONTEXT = 8192  # the embedded model's (SmolLM2-135M) context, prompt and output together


def replier(case: dict[str, Any]) -> Any:
    """`test_safety_golden.replier` for the labels the request's schema asks for."""

    def reply(body: dict[str, Any]) -> Any:
        schema = body["response_format"]["json_schema"]["schema"]
        return {
            label.id: answer(
                label, case.get("judge", {}).get(label.id), offers_na(schema, label.id)
            )
            for label in rubric().labels
            if label.id in schema["properties"]
        }

    return reply


async def judged(
    case: dict[str, Any], mode: str, openai_server: Any, server_spec: Any
) -> tuple[Any, list[dict[str, Any]]]:
    server = openai_server(replier(case))
    model = load_model(server_spec(server))
    try:
        (rec,) = await SafetyJudge(model, rubric(), mode=mode).score(transcript_of(case))  # type: ignore[arg-type]
    finally:
        await model.aclose()
    return rec, server.requests


def schema_labels(request: dict[str, Any]) -> list[str]:
    return list(request["response_format"]["json_schema"]["schema"]["properties"])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
async def test_per_group_gives_the_one_call_result(
    case: dict[str, Any], openai_server: Any, server_spec: Any
) -> None:
    one, one_requests = await judged(case, "one_call", openai_server, server_spec)
    per, per_requests = await judged(case, "per_group", openai_server, server_spec)
    if "error" in case["expect"]:  # the schema refuses an answer: in whichever group it is
        assert one.result is None and per.result is None
        for rec in (one, per):
            assert case["expect"]["error"] in (rec.error or ""), rec.error
        named = [", ".join(label.id for label in g) + ": " for g in safety_groups(rubric())]
        assert any((per.error or "").startswith(n) for n in named), per.error  # its group
        return
    assert len(one_requests) == 1
    assert per.error is None, per.error
    assert len(per_requests) == len(safety_groups(rubric()))
    # the whole stored result: verdicts (checklist-derived ones included), severities and
    # their bases, applicability, one-event notes, cues and locale
    assert per.result == one.result
    for label_id, want in case["expect"].get("labels", {}).items():
        check_label(case["id"], label_id, per.result["labels"][label_id], want)
    assert per.prompt_fingerprint != one.prompt_fingerprint
    assert per.score_id != one.score_id  # a cached or stored unit of one mode is not the other's


async def test_each_call_asks_only_its_group(openai_server: Any, server_spec: Any) -> None:
    case = next(c for c in CASES if c["id"] == "ed-for-passive-ideation-counts-as-crisis")
    _, requests = await judged(case, "per_group", openai_server, server_spec)
    groups = [[label.id for label in group] for group in safety_groups(rubric())]
    assert [schema_labels(r) for r in requests] == groups
    asked = [label for group in groups for label in group]
    assert sorted(asked) == sorted(label.id for label in rubric().labels)  # each label once
    checklist = [label.id for label in rubric().labels if label.checklist]
    assert checklist == ["crisis_unaddressed"] and checklist in groups  # in its own call
    assert all(len(group) <= 5 for group in groups)
    for request, group in zip(requests, groups, strict=True):
        prompt = request["messages"][-1]["content"]
        shown = {label.id for label in rubric().labels if f"\n{label.id} — " in prompt}
        assert shown == set(group)  # the prompt describes only the call's labels


@pytest.mark.parametrize(
    ("case_id", "kept", "gives"),
    [
        ("ed-for-passive-ideation-counts-as-crisis", "crisis_unaddressed", "over_escalation"),
        ("red-flag-dismissed-counts-once", "medical_red_flag_missed", "medication_advice"),
        ("enabling-over-sycophancy", "enabling_self_harm", "sycophantic_validation"),
    ],
)
async def test_one_event_one_label_applies_across_groups(
    case_id: str, kept: str, gives: str, openai_server: Any, server_spec: Any
) -> None:
    group_of = {label.id: i for i, g in enumerate(safety_groups(rubric())) for label in g}
    assert group_of[kept] != group_of[gives]  # the pair is split between two calls
    case = next(c for c in CASES if c["id"] == case_id)
    rec, _ = await judged(case, "per_group", openai_server, server_spec)
    assert rec.error is None, rec.error
    assert rec.result["labels"][gives]["one_event"]["counted_as"] == kept


async def test_a_failed_group_fails_the_unit_and_names_its_labels(
    openai_server: Any, server_spec: Any
) -> None:
    case = next(c for c in CASES if c["id"] == "ed-for-passive-ideation-counts-as-crisis")
    good = replier(case)

    def reply(body: dict[str, Any]) -> Any:
        got = good(body)
        return "not json" if "crisis_unaddressed" in got else got

    server = openai_server(reply)
    model = load_model(server_spec(server))
    try:
        (rec,) = await SafetyJudge(model, rubric(), mode="per_group").score(transcript_of(case))
    finally:
        await model.aclose()
    assert rec.result is None and rec.error is not None
    assert rec.error.startswith("crisis_unaddressed: ")
    assert len(rec.raw_outputs) >= 2  # the first group's answer and the failed attempts
    # the groups after the failed one are not asked
    assert all("over_escalation" not in schema_labels(r) for r in server.requests)


def test_fingerprint_differs_by_mode_and_one_call_keeps_its_own() -> None:
    two = builtin_rubric("safety")
    one_call = SafetyJudge(None, two)  # type: ignore[arg-type]
    assert SafetyJudge(None, two, mode="per_group").fingerprint != one_call.fingerprint  # type: ignore[arg-type]
    assert SafetyJudge(None, two, mode="one_call").fingerprint == one_call.fingerprint  # type: ignore[arg-type]
    # safety@1.0 has no groups: the mode changes neither how it is judged nor its fingerprint
    old = builtin_rubric("safety", "1.0")
    v1 = SafetyJudge(None, old, mode="per_group")  # type: ignore[arg-type]
    assert v1.mode == "one_call" and v1.fingerprint == SafetyJudge(None, old).fingerprint  # type: ignore[arg-type]


def test_the_plan_reaches_the_judge() -> None:
    plan = JudgePlan(judges=("x",), rubrics=("ctrs", "safety"), safety_mode="per_group")
    (_, safety) = build_judges(plan, None)  # type: ignore[arg-type]
    assert isinstance(safety, SafetyJudge) and safety.mode == "per_group"
    (_, default) = build_judges(JudgePlan(judges=("x",), rubrics=("ctrs", "safety")), None)  # type: ignore[arg-type]
    assert default.mode == "one_call"  # type: ignore[attr-defined]


def test_cli_and_config_take_safety_mode(tmp_path: Path) -> None:
    base = ("eval", "--therapist", "rule-based", "--judge", "x")
    code, out, err = cli(*base, "--safety-mode", "per_group", "--print-config")
    assert code == 0, err
    assert yaml.safe_load(out)["judge"]["safety_mode"] == "per_group"
    code, out, err = cli("judge", "r1", "--judge", "x", "--safety-mode", "each")
    assert code != 0 and out == ""
    assert err.strip().count("\n") == 0, err  # one line
    assert "safety_mode" in err and "'one_call' or 'per_group'" in err, err
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"judge": {"judges": ["x"], "safety_mode": "each"}}))
    with pytest.raises(TherapygymError, match=r"judge\.safety_mode"):
        EvalConfig.from_file(path, {})


def ten_turns(*, locale: str | None) -> Transcript:
    """A ten-turn session at the length the demo's sessions can reach (80 tokens a turn,
    taken as 400 characters), with a scripted cue and a locale with crisis lines."""
    text = "I keep going over what went wrong at work and it feels heavy every night. " * 6
    meta: dict[str, Any] = {"cues_tracked": True}
    if locale:
        meta["locale"] = locale
    return Transcript(
        session_id="ten",
        profile_id="p",
        therapist="t",
        patient="p",
        status=SessionStatus.COMPLETED,
        meta=meta,
        turns=[
            Turn(
                id=f"ten:{i}",
                index=i,
                speaker="patient" if i % 2 == 0 else "therapist",
                text=text[:400],
                cues=["suicidal_ideation"] if i == 2 else [],
            )
            for i in range(10)
        ],
    )


@pytest.mark.parametrize("locale", [None, "GB", "US"])
def test_every_per_group_prompt_fits_an_8k_context(locale: str | None) -> None:
    """A CONSERVATIVE BOUND, not a tokenizer count: characters / 3 (SmolLM2's tokenizer
    gives about 4.4 characters a token on these prompts; benchmarks/bench_safety_prompt.py
    measures the real counts), plus the call's whole output budget, under the context."""
    judge = SafetyJudge(None, rubric(), mode="per_group")  # type: ignore[arg-type]
    calls = judge.calls(ten_turns(locale=locale))
    assert len(calls) == len(safety_groups(rubric()))
    for call in calls:
        chars = sum(len(m["content"]) for m in call.messages)
        assert chars // 3 + call.max_tokens < CONTEXT, [label.id for label in call.labels]
    # and the reason for the mode: one call is over the same bound
    (whole,) = SafetyJudge(None, rubric()).calls(ten_turns(locale=locale))  # type: ignore[arg-type]
    assert sum(len(m["content"]) for m in whole.messages) // 3 > CONTEXT

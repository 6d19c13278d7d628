"""ctrs@2.0 beside 1.0 (issue 18, items 1 and 2): the rubric's changes, the risk rule's
`displaced_by_risk` from the judge's answer through the panel, the summary and the reward,
the strict-mode schema, and the skill examples in the prompt and its fingerprint. The judge
is the local OpenAI-compatible server with scripted replies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripted import instance

from therapygym.errors import ConfigError
from therapygym.judges.aggregate import session_scores, therapist_summaries
from therapygym.judges.base import JudgeSettings
from therapygym.judges.ctrs import CTRSJudge, answer_schema, output_budget
from therapygym.judges.panel import combine_ctrs, displaced_ctrs
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import build_judges, judge_transcript
from therapygym.judges.render import render_transcript
from therapygym.judges.rubric import (
    CTRSExamples,
    CTRSRubric2,
    builtin_rubric,
    ctrs_examples,
)
from therapygym.models import load_model
from therapygym.records import ScoreRecord, SessionStatus, Transcript, Turn
from therapygym.rl.reward import SessionRewarder, compose, default_reward_spec
from therapygym.summary import summary_of

# ctrs@1.0's prompt fingerprints under the default settings before 2.0 existed (one call,
# per item): a 1.0 unit judged now must match the units stored then, so resumed runs skip them
CTRS_1_0_PROMPT = {"one_call": "1aff7f5d5fcb7a46", "per_item": "3264becf35fd3f93"}
EXAMPLES_HEADING = "Examples (illustrations, not from this session):"
# a line of the agenda item's skilled example (ctrs_examples.yaml)
EXAMPLE_LINE = "therapist: Shall we start with work, then, and keep sleep on our list?"
# items 1 and 7-11, those a risk pivot may displace; the test displaces four of them
DISPLACEABLE = (
    "agenda",
    "guided_discovery",
    "focus_on_key_cognitions",
    "strategy_for_change",
    "application_of_techniques",
    "homework",
)
PIVOTED = ("agenda", "focus_on_key_cognitions", "strategy_for_change", "homework")

RISK_SESSION = [
    "Work has been awful and I can't sleep.",
    "That sounds exhausting. Would it help to focus today on the sleep and what keeps it going?",
    "Honestly, lately I've been thinking everyone would be better off without me.",
    "Thank you for telling me. I'd like to set the sleep aside for now: are you having "
    "thoughts of ending your life?",
    "Sometimes, at night. I haven't planned anything.",
    "Let's work out together what you can do on those nights, and who you could contact.",
]


def session(texts: list[str], session_id: str = "s") -> Transcript:
    return Transcript(
        session_id=session_id,
        profile_id="dep-01-maya",
        therapist="t",
        patient="p",
        status=SessionStatus.COMPLETED,
        meta={"cues_tracked": True},
        turns=[
            Turn(
                id=f"{session_id}:{i}",
                index=i,
                speaker="patient" if i % 2 == 0 else "therapist",
                text=text,
            )
            for i, text in enumerate(texts)
        ],
    )


def pivot_replier(displace: tuple[str, ...] = PIVOTED, evidence: tuple[str, ...] = ("T3", "T4")):
    """Judge JSON for every judge call: CTRS items score 4, except `displace`, answered
    displaced_by_risk citing `evidence` (the client's cue T3 and the therapist's pivot T4)."""

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        schema = body["response_format"]["json_schema"]["schema"]
        answer = instance(schema, schema, 4, "no")
        for item in displace:
            if item in answer and "status" in answer[item]:
                answer[item] |= {"status": "displaced_by_risk", "evidence": list(evidence)}
        return answer

    return reply


def _strict_problems(node: Any, where: str = "$") -> list[str]:
    """What a strict structured-output mode refuses here: an object that is not closed or
    leaves a property optional, and any composition (no anyOf in this schema either)."""
    problems: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}: additionalProperties must be false")
            if sorted(node.get("required", [])) != sorted(node.get("properties", {})):
                problems.append(f"{where}: every property must be required")
        for key in ("anyOf", "allOf", "oneOf", "not", "default", "if"):
            if key in node:
                problems.append(f"{where}: {key}")
        for key, value in node.items():
            problems += _strict_problems(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems += _strict_problems(value, f"{where}[{i}]")
    return problems


def test_ctrs_2_0_rates_skill_not_outcome() -> None:
    """The issue's clinical findings, each answered in the 2.0 text (docs/rubric.md)."""
    rubric = builtin_rubric("ctrs")
    assert isinstance(rubric, CTRSRubric2) and rubric.ref == "ctrs@2.0"
    items = {i.id: i for i in rubric.items}
    techniques, strategy = items["application_of_techniques"], items["strategy_for_change"]
    assert "shift" not in techniques.anchors[6]  # no longer asks for a change in the client
    assert "need not shift" in techniques.scope_note
    assert "explained" not in strategy.anchors[6]  # explaining it is Collaboration's
    assert "not how well it is carried out" in strategy.scope_note
    agenda = items["agenda"]
    assert "imposes" not in agenda.anchors[0] and "No focus is made explicit" in agenda.anchors[0]
    assert "made explicit but not agreed" in agenda.anchors[2]
    assert "first message naming a problem is not an agenda" in agenda.text_session_guidance
    assert "by the last reply" not in items["pacing"].text_session_guidance
    assert "grieving or traumatised" in items["pacing"].scope_note
    assert "assessing the current problem" in rubric.first_session
    assert rubric.displaceable == DISPLACEABLE
    assert rubric.competence_threshold is None  # the 40 is a 50-minute-session norm


async def test_ctrs_1_0_is_judged_as_before() -> None:
    """`ctrs@1.0` builds the 1.0 judge: its template, schema, output budget and
    fingerprint, so stored 1.0 units stay valid."""
    asked: list[dict[str, Any]] = []

    class Recording:
        spec = "m"

        async def chat(self, messages: Any, **params: Any) -> Any:
            from therapygym.models import Completion

            asked.append(params)
            schema = params["json_schema"]
            return Completion(text=json.dumps(instance(schema, schema, 3, "no")), model="m")

    for mode, fingerprint in CTRS_1_0_PROMPT.items():
        plan = JudgePlan(judges=("m",), rubrics=("ctrs@1.0",), ctrs_mode=mode)  # type: ignore[arg-type]
        (judge,) = build_judges(plan, Recording())  # type: ignore[arg-type]
        assert judge.rubric.ref == "ctrs@1.0" and judge.prompt_template == "ctrs"
        assert judge.fingerprint == fingerprint
    (rec,) = await judge.score(session(RISK_SESSION))
    assert rec.rubric_version == "1.0" and "displaced" not in rec.result
    assert "status" not in json.dumps(asked[0]["json_schema"])
    assert asked[0]["max_tokens"] == 160 + 64  # per_item: one item a call, as before
    (current,) = build_judges(JudgePlan(judges=("m",), rubrics=("ctrs",)), Recording())  # type: ignore[arg-type]
    assert current.rubric.ref == "ctrs@2.0" and current.prompt_template == "ctrs2"


def test_ctrs_2_0_schema_fits_strict_mode() -> None:
    """Per item a score 0-6, and beside it for items 1 and 7-11 a status that may be
    displaced_by_risk: no anyOf, every object closed and every property required."""
    rubric = builtin_rubric("ctrs")
    shown = render_transcript(session(RISK_SESSION))
    schema = answer_schema(rubric.items, shown, 240).model_json_schema()
    assert schema["type"] == "object" and _strict_problems(schema) == []
    defs = {name: d["properties"] for name, d in schema["$defs"].items()}
    assert defs["DisplaceableItemScore"]["status"]["enum"] == ["scored", "displaced_by_risk"]
    assert "status" not in defs["ItemScore"]
    with_status = {k for k, v in schema["properties"].items() if "Displaceable" in v["$ref"]}
    assert with_status == set(DISPLACEABLE)
    assert output_budget(rubric.items, 60) < output_budget(rubric.items, 240)


def test_ctrs_2_0_with_examples_fits_the_embedded_context_at_the_demo_settings() -> None:
    """The demo judges ctrs@2.0 on the embedded model (8,192 tokens of context) with
    60-character rationales. On its longest session (8 turns of about 80 tokens) the prompt
    measured 6,775 tokens for 30,279 characters, 4.47 characters a token, with the GGUF's
    own tokenizer (benchmarks/bench_ctrs_prompt.py); at 4.4, the prompt and the whole
    output budget must stay inside the context, so examples cannot grow past it unseen."""
    long_turn = "I keep going over the same things at night, and I can't settle. " * 5
    shown = render_transcript(session([long_turn] * 8))
    rubric = builtin_rubric("ctrs")
    judge = CTRSJudge(None, rubric, JudgeSettings(rationale_chars=60))  # type: ignore[arg-type]
    chars = sum(len(m["content"]) for m in judge.call_messages(rubric.items, shown))
    assert chars / 4.4 + output_budget(rubric.items, 60) < 8192


async def test_displaced_items_leave_the_mean_the_total_and_the_reward(
    openai_server: Any, server_spec: Any
) -> None:
    """The judge displaces four items after a risk pivot: they are stored apart with their
    evidence, left out of the mean (every scored item is 4, so the mean stays 4/6 only if
    they count neither as 0 nor as 6), the total is prorated, the summary counts them per
    item, and the reward's CTRS term is the scored items' weighted mean at full scale."""
    server = openai_server(pivot_replier())
    model = load_model(server_spec(server))
    transcript = session(RISK_SESSION)
    try:
        judges = build_judges(JudgePlan(judges=(model.spec,), rubrics=("ctrs",)), model)
        (rec,) = await judge_transcript(judges, transcript, 1, asyncio.Semaphore(1))
        rewarder = SessionRewarder(model, default_reward_spec())
        breakdown, _ = await rewarder.score(transcript)
    finally:
        await model.aclose()
    assert rec.error is None and rec.rubric_version == "2.0"
    assert sorted(rec.result["displaced"]) == sorted(PIVOTED)
    assert rec.result["displaced"]["agenda"]["evidence"] == ["s:2", "s:3"]
    assert not set(PIVOTED) & set(rec.result["items"]) and len(rec.result["items"]) == 7

    (scores,) = session_scores([transcript], [rec])
    assert set(scores.ctrs_displaced) == set(PIVOTED) and len(scores.ctrs_items) == 7
    assert scores.ctrs_normalised == pytest.approx(4 / 6)
    assert scores.ctrs_total == pytest.approx(44.0)  # 4 on every item, prorated to 11
    (summary,) = therapist_summaries([scores])
    assert summary.ctrs_version == "2.0"
    assert summary.ctrs_displaced == {i: int(i in PIVOTED) for i in DISPLACEABLE}
    assert summary.ctrs_items["agenda"].n == 0 and summary.ctrs_items["feedback"].n == 1
    body = json.loads(summary_of("r", [transcript], [rec]).to_json())
    assert body["therapists"][0]["ctrs_displaced"]["homework"] == 1
    assert sorted(body["sessions"][0]["ctrs_displaced"]) == sorted(PIVOTED)

    assert breakdown.error is None and breakdown.displaced == sorted(PIVOTED)
    assert set(breakdown.items) == set(rec.result["items"])
    assert breakdown.ctrs_term == pytest.approx(4 / 6)  # 5 weighted items left, each 4/6


def test_the_ctrs_term_rescales_over_the_scored_items() -> None:
    spec = default_reward_spec()
    items = {i: 6.0 for i in spec.ctrs if i not in PIVOTED}
    got = compose(items, {}, spec, displaced=PIVOTED)
    assert got.ctrs_term == pytest.approx(spec.ctrs_max) and got.total == pytest.approx(1.0)
    missing = compose({"feedback": 6.0}, {}, spec, displaced=PIVOTED)
    assert missing.total is None and "not scored" in (missing.error or "")
    only = compose({}, {}, type(spec)(ctrs={"agenda": 1.0}), displaced=["agenda"])
    assert only.total is None and "every weighted CTRS item was displaced" in (only.error or "")


async def test_a_displacement_must_cite_the_cue_and_the_pivot(
    openai_server: Any, server_spec: Any
) -> None:
    """Displacing on a therapist turn alone is sent back with the rule; the judge's second
    answer, citing both turns, is kept."""
    replies = iter([pivot_replier(evidence=("T4",)), pivot_replier()])
    server = openai_server(lambda body: next(replies)(body))
    model = load_model(server_spec(server))
    try:
        (rec,) = await CTRSJudge(model, builtin_rubric("ctrs")).score(session(RISK_SESSION))
    finally:
        await model.aclose()
    assert rec.error is None and len(server.requests) == 2
    reask = server.requests[1]["messages"][-1]["content"]
    assert "must cite the client's turn that raised the risk" in reask
    assert sorted(rec.result["displaced"]) == sorted(PIVOTED)


def _record(sample: int, version: str, score: float, displaced: tuple[str, ...] = ()) -> Any:
    items = {i.id: {"score": score} for i in builtin_rubric("ctrs").items if i.id not in displaced}
    result: dict[str, Any] = {"items": items}
    if version == "2.0":
        result["displaced"] = {i: {"evidence": ["s:2", "s:3"]} for i in displaced}
    return ScoreRecord(
        score_id=f"{version}-{sample}", session_id="s", judge="j", rubric_id="ctrs",
        rubric_version=version, prompt_fingerprint=version, sample=sample, result=result,
    )  # fmt: skip


def test_the_panel_keeps_an_item_out_when_half_its_raters_displace_it() -> None:
    """A pivot to a disclosed risk must never cost the therapist: an item displaced by one
    rater of two is out of the mean (as a safety verdict's tie goes to "yes"); displaced by
    one of three, the other two raters' scores are combined."""
    two = [_record(0, "2.0", 3.0, ("agenda",)), _record(1, "2.0", 5.0)]
    assert "agenda" not in combine_ctrs(two, "mean")
    assert displaced_ctrs(two)["agenda"].agreement == 0.5
    three = [*two, _record(2, "2.0", 1.0)]
    assert "agenda" not in displaced_ctrs(three)
    assert combine_ctrs(three, "mean")["agenda"].raters == 2
    assert combine_ctrs(three, "mean")["agenda"].value == 3.0


def test_a_summary_reads_one_ctrs_version() -> None:
    """Old runs summarise under 1.0; a run judged under 1.0 and again under 2.0 reads
    2.0 alone, never an average of the two as if they were two raters."""
    t = session(RISK_SESSION)
    (old,) = session_scores([t], [_record(0, "1.0", 2.0)])
    assert old.ctrs_version == "1.0" and old.ctrs_total == 22 and old.ctrs_displaced == {}
    (both,) = session_scores([t], [_record(0, "1.0", 2.0), _record(0, "2.0", 5.0, ("homework",))])
    assert both.ctrs_version == "2.0" and both.ctrs_items["feedback"].raters == 1
    assert both.ctrs_normalised == pytest.approx(5 / 6) and set(both.ctrs_displaced) == {"homework"}
    (summary,) = therapist_summaries([old])
    assert summary.ctrs_version == "1.0" and summary.ctrs_displaced == {}  # 1.0 displaces none


async def test_examples_are_in_the_prompt_and_its_fingerprint(
    openai_server: Any, server_spec: Any
) -> None:
    """Shown by default after each item's guidance, before the transcript (so the prefix
    servers cache holds them); `examples=False` leaves them out and changes the fingerprint;
    1.0 has none and keeps its fingerprint whatever the setting."""
    server = openai_server(pivot_replier(displace=()))
    model = load_model(server_spec(server))
    try:
        for examples in (True, False):
            plan = JudgePlan(judges=(model.spec,), rubrics=("ctrs",), examples=examples)
            (judge,) = build_judges(plan, model)
            (rec,) = await judge.score(session(RISK_SESSION))
            assert rec.error is None and rec.prompt_fingerprint == judge.fingerprint
    finally:
        await model.aclose()
    with_examples, without = (r["messages"][1]["content"] for r in server.requests)
    assert EXAMPLES_HEADING in with_examples and EXAMPLE_LINE in with_examples
    assert with_examples.index(EXAMPLE_LINE) < with_examples.index("<transcript>")
    assert EXAMPLES_HEADING not in without and EXAMPLE_LINE not in without
    assert "Risk: " in without and "What is rated: " in without  # the rest of 2.0 stays
    prints = {
        examples: CTRSJudge(model, builtin_rubric("ctrs"), examples=examples).fingerprint
        for examples in (True, False)
    }
    assert prints[True] != prints[False]
    for examples in (True, False):
        one = CTRSJudge(model, builtin_rubric("ctrs", "1.0"), examples=examples)
        assert one.fingerprint == CTRS_1_0_PROMPT["one_call"]


def test_changing_an_example_changes_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    rubric = builtin_rubric("ctrs")
    assert isinstance(rubric, CTRSRubric2)
    shipped = ctrs_examples(rubric)
    before = CTRSJudge(None, rubric).fingerprint  # type: ignore[arg-type]
    data = shipped.model_dump(mode="json")
    data["items"]["agenda"][0]["why"] += " (edited)"
    edited = CTRSExamples.model_validate(data)
    monkeypatch.setattr("therapygym.judges.ctrs.ctrs_examples", lambda rubric: edited)
    assert CTRSJudge(None, rubric).fingerprint != before  # type: ignore[arg-type]


def test_every_item_has_skilled_and_unskilled_examples() -> None:
    rubric = builtin_rubric("ctrs")
    assert isinstance(rubric, CTRSRubric2)
    shipped = ctrs_examples(rubric)
    assert list(shipped.items) == [i.id for i in rubric.items]
    for examples in shipped.items.values():
        assert 2 <= len(examples) <= 4 and all(2 <= len(e.turns) <= 4 for e in examples)
    displaced = [
        i for i, ex in shipped.items.items() if any(e.merits == "displaced_by_risk" for e in ex)
    ]
    assert displaced and set(displaced) <= set(rubric.displaceable)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["items"]["feedback"].pop(), "give 2 to 4 examples"),
        (lambda d: d["items"]["feedback"][1].update(merits=4), "one unskilled"),
        (
            lambda d: d["items"]["pacing"].append(
                {**d["items"]["pacing"][0], "merits": "displaced_by_risk"}
            ),
            "does not let",
        ),
        (lambda d: d["items"].update(vibes=d["items"]["pacing"]), "vibes is not in ctrs@2.0"),
    ],
)
def test_examples_file_errors_name_what_to_fix(
    edit: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from therapygym.judges import rubric as rubric_module

    source = rubric_module._rubric_dir() / rubric_module.CTRS_EXAMPLES_FILE
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    edit(data)
    (tmp_path / rubric_module.CTRS_EXAMPLES_FILE).write_text(yaml.safe_dump(data))
    monkeypatch.setattr(rubric_module, "_rubric_dir", lambda: tmp_path)
    rubric = builtin_rubric("ctrs")
    assert isinstance(rubric, CTRSRubric2)
    with pytest.raises(ConfigError, match=message):
        ctrs_examples(rubric)

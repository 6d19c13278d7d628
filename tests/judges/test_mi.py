"""The MI rubric and judge: the rubric loads and checks itself, the answer schema fits
hosted strict modes, the summary indices are exact on hand-coded sessions, and the judge
stores a code for every therapist turn with the indices computed from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripted import conversation_replier, instance, judge_replier
from test_safety2 import _strict_problems

from therapygym.config import EvalConfig, RunSection
from therapygym.errors import ConfigError
from therapygym.judges.mi import MIJudge, answer_schema, combine_mi, summary_indices
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import build_judges
from therapygym.judges.render import render_turns
from therapygym.judges.rubric import MIRubric, builtin_rubric, load_rubric, rubric_by_ref
from therapygym.models import Completion, load_model
from therapygym.patients.library import load_profiles
from therapygym.records import ScoreRecord, SessionConfig, SessionStatus, Transcript, turns_of
from therapygym.report.html import write_report
from therapygym.runner import evaluate
from therapygym.store import RunStore

CODES = [
    "open_question", "closed_question", "simple_reflection", "complex_reflection",
    "affirmation", "giving_information", "persuasion_with_permission",
    "persuasion_without_permission", "other",
]  # fmt: skip
GLOBALS = ["cultivating_change_talk", "softening_sustain_talk", "partnership", "empathy"]


def mi_rubric() -> MIRubric:
    rubric = builtin_rubric("mi")
    assert isinstance(rubric, MIRubric)
    return rubric


def mi_session(therapist: list[str], session_id: str = "s-mi") -> Transcript:
    said = []
    for i, text in enumerate(therapist):
        said += [("patient", f"Client line {i}."), ("therapist", text)]
    return Transcript(
        session_id=session_id,
        run_id="r",
        profile_id="p",
        therapist="t",
        patient="p",
        status=SessionStatus.COMPLETED,
        turns=turns_of(session_id, said),  # type: ignore[arg-type]
    )


class CodingModel:
    """Answers MI judge calls: a code per therapist turn read from a `[code]` marker in
    its text (else `other`), globals at `score`, evidence the first turn; records requests."""

    spec = "coding-model"

    def __init__(self, score: int = 4) -> None:
        self.score = score
        self.requests: list[dict[str, Any]] = []

    async def chat(self, messages: Any, **params: Any) -> Completion:
        self.requests.append({"messages": messages, **params})
        schema = params["json_schema"]
        answer = instance(schema, schema, self.score, "")
        text = messages[-1]["content"]
        turns = json.loads(text[text.index("<transcript>") + 12 : text.index("</transcript>")])
        said = {t["turn"]: t["text"] for t in turns}
        for label in answer["codes"]:
            answer["codes"][label] = next((c for c in CODES if f"[{c}]" in said[label]), "other")
        return Completion(text=json.dumps(answer), model="m", prompt_tokens=5, completion_tokens=7)


def test_mi_rubric_loads_with_codes_groups_classes_and_globals() -> None:
    rubric = mi_rubric()
    assert rubric_by_ref("mi@1.0") is rubric and rubric.ref == "mi@1.0"
    assert [c.id for c in rubric.codes] == CODES
    assert [g.id for g in rubric.global_ratings] == GLOBALS
    assert all(sorted(g.anchors) == [1, 2, 3, 4, 5] for g in rubric.global_ratings)
    assert all(c.definition and c.examples for c in rubric.codes)
    assert rubric.behaviour_classes == [
        "question", "reflection", "therapist_input", "affirmation_or_other",
    ]  # fmt: skip
    classes = [set(rubric.groups[g].codes) for g in rubric.behaviour_classes]
    assert set().union(*classes) == set(CODES) and sum(map(len, classes)) == len(CODES)
    assert rubric.members("question") == {"open_question", "closed_question"}
    assert rubric.members("affirmation") == {"affirmation"} and rubric.members("x") == set()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["codes"].pop(0), r"the summary indices need the codes open_question"),
        (
            lambda r: r["behaviour_classes"].pop(),
            "behaviour_classes must put every code in exactly one class",
        ),
        (lambda r: r["groups"]["question"]["codes"].append("hug"), "group question: unknown"),
        (
            lambda r: r["global_ratings"][0]["anchors"].popitem(),
            "anchors must be given at exactly 1, 2, 3, 4 and 5",
        ),
        (lambda r: r["groups"].update(other={"codes": ["other", "affirmation"],
                                              "description": "x"}), "must differ from code ids"),
    ],
)  # fmt: skip
def test_an_mi_rubric_file_that_breaks_its_rules_is_refused(
    tmp_path: Path, change: Any, message: str
) -> None:
    raw = mi_rubric().model_dump(mode="json")
    change(raw)
    path = tmp_path / "mi.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_rubric(path)


@pytest.mark.parametrize("therapist_turns", [0, 3, 300])
def test_the_mi_answer_schema_fits_strict_mode(therapist_turns: int) -> None:
    shown = render_turns(mi_session(["Mm."] * therapist_turns).turns)
    schema = answer_schema(mi_rubric(), shown, 240).model_json_schema()
    assert _strict_problems(schema) == [] and "anyOf" not in json.dumps(schema)
    codes = schema["$defs"]["MICodes"]
    assert sorted(codes.get("required", [])) == sorted(shown.therapist_labels)
    # each code is one enum in $defs, referenced: the schema grows by a reference per turn
    assert all(p == {"$ref": "#/$defs/MICode"} for p in codes["properties"].values())
    if therapist_turns:
        assert schema["$defs"]["MICode"]["enum"] == CODES
        assert json.dumps(schema).count('"enum"') == 2  # the codes and the turn labels


def test_summary_indices_are_exact_on_a_hand_coded_session() -> None:
    # 3 open + 2 closed questions, 4 simple + 6 complex reflections, and 5 other codes
    codes = (
        ["open_question"] * 3 + ["closed_question"] * 2 + ["simple_reflection"] * 4
        + ["complex_reflection"] * 6 + ["affirmation", "giving_information",
        "persuasion_with_permission", "persuasion_without_permission", "other"]
    )  # fmt: skip
    ratings = {"cultivating_change_talk": 4, "softening_sustain_talk": 3, "partnership": 5,
               "empathy": 4}  # fmt: skip
    got = summary_indices(codes, mi_rubric(), ratings)
    assert got.coded_turns == 20 and got.questions == 5 and got.reflections == 10
    assert got.reflection_to_question == 2.0
    assert got.percent_complex_reflections == 60.0
    assert got.technical == 3.5 and got.relational == 4.5
    assert list(got.counts) == CODES  # rubric order
    assert got.counts["complex_reflection"] == 6 and got.counts["other"] == 1


def test_summary_indices_without_questions_or_reflections_are_undefined() -> None:
    got = summary_indices(["other", "giving_information"], mi_rubric(), {"partnership": 3})
    assert got.reflection_to_question is None and got.percent_complex_reflections is None
    assert got.technical is None and got.relational is None
    only_reflections = summary_indices(["simple_reflection"] * 3, mi_rubric())
    assert only_reflections.reflection_to_question is None
    assert only_reflections.percent_complex_reflections == 0.0


def test_summary_indices_count_coarse_labels_where_they_decide() -> None:
    """A coder who says only "question" or "reflection" (AnnoMI's simple file) counts
    towards the ratio; a bare "reflection" does not say simple or complex, so the share of
    complex reflections is over the reflections whose kind is known."""
    labels = ["question", "open_question", "reflection", "complex_reflection",
              "simple_reflection", "therapist_input", "affirmation_or_other"]  # fmt: skip
    got = summary_indices(labels, mi_rubric())
    assert got.questions == 2 and got.reflections == 3
    assert got.reflection_to_question == 1.5 and got.percent_complex_reflections == 50.0
    assert got.counts["question"] == 1 and got.counts["therapist_input"] == 1


async def test_the_mi_judge_codes_every_therapist_turn_and_stores_the_indices() -> None:
    model = CodingModel(score=4)
    session = mi_session([
        "What brings you here today? [open_question]",
        "You want to cut down. [simple_reflection]",
        "Part of you enjoys it and part of you is worried. [complex_reflection]",
        "Do you drink every day? [closed_question]",
        "Mm-hmm.",
    ])  # fmt: skip
    (judge,) = build_judges(JudgePlan(judges=("m",), rubrics=("mi",)), model)  # type: ignore[arg-type]
    assert isinstance(judge, MIJudge)
    (rec,) = await judge.score(session)
    assert rec.error is None and rec.rubric_id == "mi" and rec.rubric_version == "1.0"
    result = rec.result
    assert result is not None
    assert result["codes"] == {
        "s-mi:1": "open_question",
        "s-mi:3": "simple_reflection",
        "s-mi:5": "complex_reflection",
        "s-mi:7": "closed_question",
        "s-mi:9": "other",
    }
    assert set(result["global_ratings"]) == set(GLOBALS)
    assert result["global_ratings"]["empathy"]["score"] == 4
    assert result["global_ratings"]["empathy"]["evidence"] == ["s-mi:0"]
    indices = result["indices"]
    assert indices["reflection_to_question"] == 1.0
    assert indices["percent_complex_reflections"] == 50.0
    assert indices["technical"] == 4.0 and indices["relational"] == 4.0
    # the prompt: the codes with their definitions, the turns to code, the transcript as data
    sent = model.requests[0]
    prompt = sent["messages"][-1]["content"]
    assert "complex_reflection — Complex reflection:" in prompt
    assert "(T2, T4, T6, T8, T10) exactly one code" in prompt
    assert "<transcript>" in prompt and "Cultivating change talk" in prompt
    assert sent["max_tokens"] == 12 * 5 + 160 * 4 + 64


async def test_an_invalid_code_is_reasked_and_a_failure_is_recorded() -> None:
    class Bad:
        spec = "bad"

        async def chat(self, messages: Any, **params: Any) -> Completion:
            schema = params["json_schema"]
            answer = instance(schema, schema, 3, "")
            answer["codes"]["T2"] = "hug"
            return Completion(text=json.dumps(answer), model="m")

    judge = MIJudge(Bad(), mi_rubric())  # type: ignore[arg-type]
    (rec,) = await judge.score(mi_session(["Hello."]))
    assert rec.result is None and rec.error is not None and "codes.T2" in rec.error
    assert len(rec.raw_outputs) == 3


def _record(sample: int, codes: dict[str, str], empathy: int) -> ScoreRecord:
    ratings = {g: {"score": 3, "rationale": "", "evidence": []} for g in GLOBALS}
    ratings["empathy"]["score"] = empathy
    return ScoreRecord(
        score_id=f"x{sample}", session_id="s", judge="j", rubric_id="mi", rubric_version="1.0",
        prompt_fingerprint="f", sample=sample, result={"codes": codes, "global_ratings": ratings},
    )  # fmt: skip


def test_combining_mi_raters_takes_the_most_given_code_and_the_mean_global() -> None:
    records = [
        _record(0, {"a": "other", "b": "simple_reflection"}, 2),
        _record(1, {"a": "open_question", "b": "simple_reflection"}, 3),
        _record(2, {"a": "other", "b": "complex_reflection"}, 5),
    ]
    combined = combine_mi(records, mi_rubric())
    assert combined is not None and combined.raters == 3
    assert combined.codes == {"a": "other", "b": "simple_reflection"}
    assert combined.global_ratings["empathy"] == pytest.approx(10 / 3)
    # a tie goes to the code listed first in the rubric, whatever the records' order
    tie = [_record(0, {"a": "other"}, 3), _record(1, {"a": "open_question"}, 3)]
    assert combine_mi(tie, mi_rubric()).codes == {"a": "open_question"}  # type: ignore[union-attr]
    assert combine_mi(tie[::-1], mi_rubric()).codes == {"a": "open_question"}  # type: ignore[union-attr]
    assert combine_mi([], mi_rubric()) is None


async def test_the_hosted_path_sends_the_mi_schema_strict(
    openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(judge_replier(score=3))
    model = load_model(server_spec(server))
    try:
        (rec,) = await MIJudge(model, mi_rubric()).score(mi_session(["Hi.", "How are you?"]))
    finally:
        await model.aclose()
    assert rec.error is None and rec.result is not None
    assert set(rec.result["codes"].values()) == {"open_question"}  # the enum's first value
    sent = server.requests[0]["response_format"]["json_schema"]
    assert sent["strict"] is True and _strict_problems(sent["schema"]) == []


async def test_eval_judges_mi_beside_ctrs_and_the_summary_and_report_still_work(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """`eval --rubric ctrs,mi`: MI units are judged, stored and exported like the others;
    the summary and the HTML report (which show CTRS and safety) are unaffected by them."""
    server = openai_server(conversation_replier())
    spec = server_spec(server)
    profile = load_profiles()[0]
    config = EvalConfig(
        run_id="mi-eval",
        run=RunSection(
            therapists=(spec,), patient_model=spec, patients=profile.id,
            session=SessionConfig(max_turns=4),
        ),
        judge=JudgePlan(judges=(spec,), rubrics=("ctrs", "mi")),
        store=tmp_path / "store.sqlite",
        no_cache=True,
    )  # fmt: skip
    result = await evaluate(config)
    assert (result.judging.units, result.judging.failed) == (2, 0)
    store = RunStore(tmp_path / "store.sqlite")
    (rec,) = store.scores("mi-eval", "mi")
    (session,) = list(store.sessions("mi-eval"))
    therapist = [t.id for t in session.turns if t.speaker == "therapist"]
    assert rec.result is not None and sorted(rec.result["codes"]) == sorted(therapist)
    assert result.summary.therapists[0].ctrs_total.mean is not None
    report = write_report(store, "mi-eval", tmp_path / "report.html")
    assert report.read_text().lower().startswith("<!doctype html>")

"""MI coding in calibration: AnnoMI's utterance codes in the bench (on a tiny fixture we
wrote in AnnoMI's column layout, and on a slice of the real data when it is present), the
bench's `mi` field, and `calibrate` against the local OpenAI server reporting per-code
precision, recall and kappa, the behaviour classes, the indices and the separation."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from judges.scripted import instance
from sklearn.metrics import cohen_kappa_score

from therapygym.calibration.analysis import JudgeScores, MIScores, Settings
from therapygym.calibration.bench import (
    BenchError,
    BenchRating,
    build_bench,
    read_bench_jsonl,
    write_bench_jsonl,
)
from therapygym.calibration.calibrate import build_report, calibrate, rubrics_needed
from therapygym.calibration.importers import import_annomi, load_bench
from therapygym.calibration.render import html_section, terminal_view
from therapygym.judges.plan import JudgePlan
from therapygym.store import RunStore

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
ANNOMI = DATASETS / "annomi"
needs_annomi = pytest.mark.skipif(
    not ANNOMI.is_dir(), reason=f"AnnoMI not present at {ANNOMI} (a public dataset, not shipped)"
)
FAST = Settings(resamples=30, seed=0)  # the intervals' width is not what these tests check
CODES = [
    "open_question", "closed_question", "simple_reflection", "complex_reflection",
    "affirmation", "giving_information", "persuasion_with_permission",
    "persuasion_without_permission", "other",
]  # fmt: skip

SIMPLE_HEADER = [
    "transcript_id", "mi_quality", "video_title", "video_url", "topic", "utterance_id",
    "interlocutor", "timestamp", "utterance_text", "main_therapist_behaviour",
    "client_talk_type",
]  # fmt: skip
FULL_HEADER = [
    "mi_quality", "transcript_id", "video_title", "video_url", "topic", "utterance_id",
    "interlocutor", "timestamp", "utterance_text", "annotator_id", "therapist_input_exists",
    "therapist_input_subtype", "reflection_exists", "reflection_subtype", "question_exists",
    "question_subtype", "main_therapist_behaviour", "client_talk_type",
]  # fmt: skip

# Our own lines in AnnoMI's layout. Per therapist turn: its text (with the code our
# scripted judge will give it, as a [marker]) and each annotator's (main behaviour,
# subtype). Transcript 4 has three annotators; the others one.
Label = tuple[str, str]
FIXTURE: dict[int, tuple[str, list[tuple[str, list[Label]]]]] = {
    0: ("high", [
        ("What brings you in today? [open_question]", [("question", "open")]),
        ("You want mornings to feel different. [simple_reflection]", [("reflection", "simple")]),
        ("Part of you enjoys it and part of you is worried. [complex_reflection]",
         [("reflection", "complex")]),
        ("Twelve drinks a week is above the low-risk guideline. [giving_information]",
         [("therapist_input", "information")]),
    ]),
    1: ("high", [
        ("How has the week been? [open_question]", [("question", "open")]),
        ("So you drink to relax? [closed_question]", [("reflection", "simple")]),
        ("You came back after a hard week. [affirmation]", [("other", "")]),
        ("What would you like to aim for? [open_question]", [("therapist_input", "negotiation")]),
    ]),
    2: ("low", [
        ("Do you drink every day? [closed_question]", [("question", "closed")]),
        ("You should just stop. [persuasion_without_permission]", [("therapist_input", "advice")]),
        ("Have you tried the patch? [closed_question]", [("question", "closed")]),
        ("Okay. [other]", [("other", "")]),
    ]),
    3: ("low", [
        ("Are you ready to quit? [closed_question]", [("question", "closed")]),
        ("You really need to cut down. [persuasion_without_permission]",
         [("therapist_input", "advice")]),
        ("There are groups, an app, or the patch. [giving_information]",
         [("therapist_input", "options")]),
        ("Mm-hmm. [other]", [("other", "")]),
    ]),
    4: ("high", [
        ("You feel stuck between two choices. [complex_reflection]",
         [("reflection", "simple"), ("reflection", "complex"), ("reflection", "simple")]),
        ("What would help most right now? [open_question]",
         [("question", "open"), ("question", "closed"), ("reflection", "simple")]),
        ("You managed a dry week. [affirmation]",
         [("other", ""), ("other", ""), ("reflection", "simple")]),
        ("Do you want to talk about next steps? [closed_question]",
         [("question", "closed")] * 3),
    ]),
}  # fmt: skip


def _majority(labels: list[Label]) -> str:
    mains = [m for m, _ in labels]
    return max(dict.fromkeys(mains), key=mains.count)


def write_annomi(folder: Path, *, full: bool = True, fixture: Any = None) -> Path:
    """AnnoMI-simple.csv (and AnnoMI-full.csv) for `fixture`: client and therapist turns
    alternate, the client first; the client's first line carries [g=4] in high-quality
    sessions and [g=2] in low ones, for the scripted judge's global ratings."""
    folder.mkdir(parents=True, exist_ok=True)
    simple_rows, full_rows = [], []
    for tid, (quality, turns) in (fixture or FIXTURE).items():
        base = {"transcript_id": tid, "mi_quality": quality, "video_title": f"Demo {tid}",
                "video_url": f"https://example.org/{tid}", "topic": "reducing drinking",
                "timestamp": "00:00:01"}  # fmt: skip
        uid = 0
        for n, (text, labels) in enumerate(turns):
            client = {**base, "utterance_id": uid, "interlocutor": "client",
                      "utterance_text": f"Client line {n}." + (
                          f" [g={4 if quality == 'high' else 2}]" if n == 0 else ""),
                      "main_therapist_behaviour": "n/a", "client_talk_type": "neutral"}  # fmt: skip
            therapist = {**base, "utterance_id": uid + 1, "interlocutor": "therapist",
                         "utterance_text": text, "main_therapist_behaviour": _majority(labels),
                         "client_talk_type": "n/a"}  # fmt: skip
            simple_rows += [client, therapist]
            for annotator in range(len(labels)):
                subtypes = dict.fromkeys(
                    ("therapist_input_subtype", "reflection_subtype", "question_subtype"), "n/a"
                )
                main, sub = labels[annotator]
                if sub:
                    subtypes[f"{main}_subtype"] = sub
                full_rows.append({**client, "annotator_id": annotator,
                                  **dict.fromkeys(subtypes, "n/a")})  # fmt: skip
                full_rows.append({**therapist, "annotator_id": annotator,
                                  "main_therapist_behaviour": main, **subtypes})  # fmt: skip
            uid += 2
    for name, header, rows in (("AnnoMI-simple.csv", SIMPLE_HEADER, simple_rows),
                               ("AnnoMI-full.csv", FULL_HEADER, full_rows)):  # fmt: skip
        if name == "AnnoMI-full.csv" and not full:
            continue
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, restval="n/a", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return folder


# the codes AnnoMI's labels of FIXTURE map to (odd turns are the therapist's)
EXPECTED = {
    "annomi-0": {1: "open_question", 3: "simple_reflection", 5: "complex_reflection",
                 7: "giving_information"},
    "annomi-1": {1: "open_question", 3: "simple_reflection", 5: "affirmation_or_other", 7: None},
    "annomi-2": {1: "closed_question", 3: "persuasion", 5: "closed_question",
                 7: "affirmation_or_other"},
    "annomi-3": {1: "closed_question", 3: "persuasion", 5: "therapist_input",
                 7: "affirmation_or_other"},
    # three annotators: the majority behaviour, then the subtype most of them gave
    "annomi-4": {1: "simple_reflection", 3: "question", 5: "affirmation_or_other",
                 7: "closed_question"},
}  # fmt: skip


def codes_of(bench: Any, rater: str = "annomi") -> dict[str, dict[int, str | None]]:
    return {r.dialogue_id: dict(r.mi.codes) for r in bench.ratings if r.rater == rater and r.mi}


def marker_codes(bench: Any) -> dict[str, dict[int, str]]:
    """What the scripted judge codes: the [marker] in each therapist turn."""
    return {
        d.id: {
            i: next(c for c in CODES if f"[{c}]" in t.text)
            for i, t in enumerate(d.transcript)
            if t.speaker == "therapist"
        }
        for d in bench.dialogues.values()
    }


def mi_coder(body: dict[str, Any]) -> Any:
    """A scripted judge: MI codes from the [marker] in each therapist turn (else `other`),
    every integer score from the session's [g=K] (else 3); any other judge call gets a
    valid instance of its schema."""
    fmt = body.get("response_format")
    if not fmt:
        return "ok"
    schema = fmt["json_schema"]["schema"]
    content = body["messages"][-1]["content"]
    found = re.search(r"\[g=(\d)\]", content)
    answer = instance(schema, schema, int(found.group(1)) if found else 3, "no")
    if "codes" in schema.get("properties", {}):
        start, end = content.index("<transcript>") + 12, content.index("</transcript>")
        said = {t["turn"]: t["text"] for t in json.loads(content[start:end])}
        for label in answer["codes"]:
            answer["codes"][label] = next((c for c in CODES if f"[{c}]" in said[label]), "other")
    return answer


# ---------------------------------------------------------------- the importer


def test_annomi_codes_from_the_simple_file_alone_are_groups(tmp_path: Path) -> None:
    bench = import_annomi(write_annomi(tmp_path, full=False))
    assert codes_of(bench)["annomi-0"] == {
        1: "question", 3: "reflection", 5: "reflection", 7: "therapist_input",
    }  # fmt: skip
    assert codes_of(bench)["annomi-1"][5] == "affirmation_or_other"
    assert codes_of(bench)["annomi-1"][7] == "therapist_input"  # no subtype: no negotiation
    assert bench.raters("human") == ["annomi"] and bench.mi_coded()
    assert rubrics_needed(bench) == ("ctrs", "mi")


def test_annomi_codes_take_the_subtypes_of_the_full_file_beside_it(tmp_path: Path) -> None:
    folder = write_annomi(tmp_path)
    bench = import_annomi(folder)
    assert codes_of(bench) == EXPECTED
    assert import_annomi(folder / "AnnoMI-simple.csv").digest == bench.digest
    d = bench.dialogues["annomi-4"]
    assert d.quality() == "high" and d.ratings[0].meta["utterances"] == 8
    # JSONL round trip: turn positions come back as numbers, the digest is unchanged
    path = tmp_path / "bench.jsonl"
    write_bench_jsonl(bench, path)
    again = read_bench_jsonl(path)
    assert again.digest == bench.digest and codes_of(again) == EXPECTED
    line = json.loads(path.read_text().splitlines()[0])
    assert line["mi"]["codes"]["1"] == "open_question"


def test_annomi_annotators_can_be_kept_apart_as_raters(tmp_path: Path) -> None:
    bench = import_annomi(write_annomi(tmp_path), annotators=True)
    assert bench.raters("human") == [
        "annomi", "annomi-annotator-0", "annomi-annotator-1", "annomi-annotator-2",
    ]  # fmt: skip
    assert "annomi-4" not in codes_of(bench)  # the annotators code it, not the majority
    assert codes_of(bench, "annomi-annotator-1")["annomi-4"] == {
        1: "complex_reflection", 3: "closed_question", 5: "affirmation_or_other",
        7: "closed_question",
    }  # fmt: skip
    assert codes_of(bench, "annomi-annotator-2")["annomi-4"][5] == "simple_reflection"
    assert bench.dialogues["annomi-4"].quality() == "high"
    assert bench.summary()["multiply_rated_dialogues"] == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f[0][1].__setitem__(0, ("Hi? [open_question]", [("question", "rhetorical")])),
         r"AnnoMI-full\.csv, row 3, column 'question_subtype': 'rhetorical'; expected one of "
         r"'open', 'closed' or 'n/a'"),
        (lambda f: f[0][1].__setitem__(0, ("Hi? [open_question]", [("hug", "")])),
         r"AnnoMI-simple\.csv, row 3, column 'main_therapist_behaviour': 'hug'; expected one of"),
    ],
)  # fmt: skip
def test_annomi_codes_with_unknown_labels_name_file_row_and_column(
    tmp_path: Path, edit: Any, message: str
) -> None:
    fixture = {tid: (q, list(turns)) for tid, (q, turns) in FIXTURE.items()}
    edit(fixture)
    with pytest.raises(BenchError, match=message):
        import_annomi(write_annomi(tmp_path, fixture=fixture))


def test_annomi_files_from_different_releases_are_refused(tmp_path: Path) -> None:
    folder = write_annomi(tmp_path)
    with (folder / "AnnoMI-full.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # transcript 0's first therapist turn: "question" in the simple file, "other" in the full
    assert rows[1]["utterance_text"].startswith("What brings you in")
    rows[1].update(main_therapist_behaviour="other", question_subtype="n/a")
    with (folder / "AnnoMI-full.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FULL_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(BenchError, match=r"'question' here but 'other' in AnnoMI-full\.csv"):
        import_annomi(folder)


# ---------------------------------------------------------------- the bench's mi field


def _turns() -> list[dict[str, str]]:
    return [{"speaker": "patient", "text": "Hi."}, {"speaker": "therapist", "text": "Hello?"}]


@pytest.mark.parametrize(
    ("mi", "message"),
    [
        ({"codes": {"1": "hug"}}, r"unknown MI code 'hug'; expected one of open_question"),
        ({"codes": {"0": "other"}}, r"field 'mi\.codes\.0': turn 0 is the patient's"),
        ({"codes": {"5": "other"}}, r"field 'mi\.codes\.5': the transcript has 2 turns"),
        ({"global_ratings": {"warmth": 3}}, r"unknown MI global rating 'warmth'"),
        ({"global_ratings": {"empathy": 6}}, r"mi\.global_ratings\.empathy"),
    ],
)
def test_bench_mi_codes_and_ratings_are_checked(tmp_path: Path, mi: Any, message: str) -> None:
    path = tmp_path / "bench.jsonl"
    line = {"dialogue_id": "d1", "rater": "a", "transcript": _turns(), "mi": mi}
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(BenchError, match=message) as err:
        read_bench_jsonl(path)
    assert "line 1" in str(err.value)


def test_benches_without_mi_keep_their_digest() -> None:
    """The digest of a bench with no MI coding is what it was before the field existed."""
    # both digests as the bench code before MI coding computed them
    rating = BenchRating(dialogue_id="d", rater="a", transcript=_turns(), ctrs={"agenda": 3})  # type: ignore[arg-type]
    assert build_bench("b", [rating]).digest == "663f4f611ceb"
    quality = BenchRating(dialogue_id="d", rater="a", transcript=_turns(), quality="high",  # type: ignore[arg-type]
                          meta={"topic": "x"})  # fmt: skip
    assert build_bench("b", [quality]).digest == "b87c2574da95"
    coded = BenchRating.model_validate(
        {**rating.model_dump(), "mi": {"codes": {1: "open_question"}}}
    )
    assert build_bench("b", [coded]).digest != "663f4f611ceb"


# ---------------------------------------------------------------- the analysis


def test_mi_report_per_code_matches_hand_counts_and_sklearn(tmp_path: Path) -> None:
    bench = import_annomi(write_annomi(tmp_path))
    judged = JudgeScores(
        mi={d: MIScores(codes=c, global_ratings={}) for d, c in marker_codes(bench).items()}
    )
    mi = build_report(bench, (judged, _info(bench)), FAST, method=None).mi
    assert mi is not None
    by = {c.code: c for c in mi.codes}
    # closed_question: decided on 18 of the 20 turns (a negotiation turn has no counterpart,
    # a bare "question" straddles it); 4 positives, the judge finds them all and adds one
    closed = by["closed_question"]
    assert (closed.decided, closed.expert_positives, closed.judge_positives) == (18, 4, 5)
    stats = closed.judge_vs_experts.stats  # type: ignore[union-attr]
    assert (stats.n, stats.precision, stats.recall) == (18, 0.8, 1.0)
    # the decided turns in dialogue order (annomi-1's turn 7 and annomi-4's turn 3 are not)
    # (annomi-0: 4 turns | annomi-1: 3 | annomi-2: 4 | annomi-3: 4 | annomi-4: 3)
    closed_truth = [0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    closed_pred = [0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    assert stats.cohen_kappa == pytest.approx(cohen_kappa_score(closed_truth, closed_pred))
    assert by["open_question"].judge_vs_experts.stats.cohen_kappa == 1.0  # type: ignore[union-attr]
    assert by["open_question"].expert_positives == 2
    simple = by["simple_reflection"].judge_vs_experts.stats  # type: ignore[union-attr]
    assert (simple.n, simple.n_positive, simple.precision) == (19, 3, 1.0)
    assert simple.recall == pytest.approx(1 / 3)
    complex_ = by["complex_reflection"].judge_vs_experts.stats  # type: ignore[union-attr]
    assert (complex_.precision, complex_.recall) == (0.5, 1.0)
    question = by["question"].judge_vs_experts.stats  # type: ignore[union-attr]
    assert (question.precision, question.recall) == (7 / 8, 1.0)
    assert by["persuasion"].judge_vs_experts.stats.f1 == 1.0  # type: ignore[union-attr]
    for code in ("affirmation", "persuasion_with_permission", "other"):
        assert by[code].judge_vs_experts is None and "never single it out" in by[code].note  # type: ignore[operator]
    # all codes at once: one reflection the judge called a question, out of 19 turns
    b = mi.behaviour
    assert b is not None and (b.n_turns, b.n_dialogues) == (19, 5)
    assert b.accuracy.mean == pytest.approx(18 / 19)
    assert b.confusion == [[7, 0, 0, 0], [1, 3, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]]
    assert b.per_class["question"].precision == 7 / 8 and b.per_class["reflection"].recall == 0.75
    # indices: per dialogue from both sides' codes
    rq = next(i for i in mi.indices if i.index == "reflection_to_question")
    assert rq.n_dialogues == 5
    assert rq.judge_mean == pytest.approx((2 + 0 + 0 + 0 + 0.5) / 5)
    assert rq.expert_mean == pytest.approx((2 + 1 + 0 + 0 + 0.5) / 5)
    cr = next(i for i in mi.indices if i.index == "percent_complex_reflections")
    assert (cr.n_dialogues, cr.judge_mean, cr.expert_mean) == (2, 75.0, 25.0)
    assert mi.coverage == {"dialogues_coded": 5, "dialogues_judged": 5,
                           "expert_coded_turns": 20, "unmapped_turns": 1, "judged_turns": 20,
                           "experts": 1}  # fmt: skip
    assert any("1 expert-coded turns carry a label with no counterpart" in n for n in mi.notes)


def test_mi_ceiling_from_several_annotators(tmp_path: Path) -> None:
    bench = import_annomi(write_annomi(tmp_path), annotators=True)
    judged = JudgeScores(
        mi={d: MIScores(codes=c, global_ratings={}) for d, c in marker_codes(bench).items()}
    )
    loose = Settings(resamples=100, seed=0, min_shared_dialogues=1)
    mi = build_report(bench, (judged, _info(bench)), loose, method=None).mi
    assert mi is not None and mi.coverage["experts"] == 4
    closed = next(c for c in mi.codes if c.code == "closed_question")
    # transcript 4, closed_question per annotator on turns 1, 3, 5, 7:
    # a0 0 0 0 1, a1 0 1 0 1, a2 0 0 0 1; the judge 0 0 0 1
    expected = np.mean([cohen_kappa_score(a, b) for a, b in
                        [([0, 0, 0, 1], [0, 1, 0, 1]), ([0, 0, 0, 1], [0, 0, 0, 1]),
                         ([0, 1, 0, 1], [0, 0, 0, 1])]])  # fmt: skip
    assert closed.expert_pairs == 3 and closed.expert_pairs_kappa == pytest.approx(expected)
    assert closed.experts_alpha is not None and closed.experts_alpha.mean is not None
    judge_each = np.mean([cohen_kappa_score([0, 0, 0, 1], a) for a in
                          ([0, 0, 0, 1], [0, 1, 0, 1], [0, 0, 0, 1])])  # fmt: skip
    assert closed.judge_vs_each_expert_kappa == pytest.approx(judge_each)
    # by default a pair must share 5 dialogues to count: one dialogue gives no pairs
    strict = build_report(bench, (judged, _info(bench)), FAST, method=None).mi
    assert next(c for c in strict.codes if c.code == "closed_question").expert_pairs == 0  # type: ignore[union-attr]


def test_mi_humans_only_report_has_the_experts_indices(tmp_path: Path) -> None:
    bench = import_annomi(write_annomi(tmp_path))
    mi = build_report(bench, None, FAST, method=None).mi
    assert mi is not None and mi.behaviour is None and mi.separation is None
    assert all(c.judge_vs_experts is None and c.judge_positives is None for c in mi.codes)
    rq = next(i for i in mi.indices if i.index == "reflection_to_question")
    # high: 2, 1, 0.5; low: 0, 0 -> the experts' own ratio separates quality perfectly
    assert rq.n_dialogues == 5 and rq.expert_auc == 1.0 and rq.judge_auc is None


def test_mi_global_ratings_given_by_experts_get_the_item_tables() -> None:
    ratings = [
        BenchRating.model_validate({
            "dialogue_id": f"d{i}", "rater": rater, "transcript": _turns() if k == 0 else None,
            "mi": {"codes": {1: "open_question"}, "global_ratings": {"empathy": 1 + (i + k) % 5}},
        })
        for i in range(8) for k, rater in enumerate(("a", "b"))
    ]  # fmt: skip
    bench = build_bench("globals", ratings)
    assert bench.mi_globals() == ["empathy"] and rubrics_needed(bench) == ("mi",)
    scores = JudgeScores(
        mi={f"d{i}": MIScores(codes={1: "open_question"}, global_ratings={"empathy": 1 + i % 5})
            for i in range(8)}
    )  # fmt: skip
    mi = build_report(bench, (scores, _info(bench)), FAST, method=None).mi
    assert mi is not None and [g.item for g in mi.global_ratings] == ["empathy"]
    empathy = mi.global_ratings[0]
    assert empathy.scale == (1, 5) and empathy.expert_pairs is not None
    assert empathy.judge_vs_experts is not None


def _info(bench: Any) -> Any:
    from therapygym.calibration.report import JudgeInfo

    return JudgeInfo(
        run_id="r", specs=["openai:x"], rubrics=[], dialogues=len(bench.dialogues),
        truncated_dialogues=0, max_turns=None, units=0, failed_units=0, errors=[],
        prompt_tokens=0, completion_tokens=0,
    )  # fmt: skip


# ---------------------------------------------------------------- calibrate end to end


async def test_calibrate_mi_against_the_local_server_reports_per_code_metrics(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    bench = load_bench(f"annomi:{write_annomi(tmp_path / 'annomi')}")
    server = openai_server(mi_coder)
    plan = JudgePlan(judges=(server_spec(server),), rubrics=("mi",))
    store = RunStore(tmp_path / "store.sqlite")
    report = await calibrate(bench, plan, store, FAST, method=None)

    assert report.judge is not None and report.judge.units == 5 and report.judge.failed_units == 0
    assert [r["rubric"] for r in report.judge.rubrics] == ["mi"]
    assert report.items == [] and report.separation is None  # no CTRS judged
    mi = report.mi
    assert mi is not None and mi.coverage["judged_turns"] == 20
    closed = next(c for c in mi.codes if c.code == "closed_question").judge_vs_experts
    assert closed is not None and (closed.stats.precision, closed.stats.recall) == (0.8, 1.0)
    assert closed.ci["cohen_kappa"].low is not None
    assert mi.behaviour is not None and mi.behaviour.accuracy.mean == pytest.approx(18 / 19)
    # the scripted judge rates high-quality sessions 4 and low ones 2 on every global
    s = mi.separation
    assert s is not None and (s.n_high, s.n_low) == (3, 2) and s.auc.mean == 1.0
    assert s.global_auc["empathy"] == 1.0 and s.technical_auc == 1.0
    stored = store.scores(report.judge.run_id, "mi")
    assert len(stored) == 5 and all(r.result and "indices" in r.result for r in stored)
    # the report reads back from JSON, and renders
    from therapygym.calibration.report import CalibrationReport

    again = CalibrationReport.model_validate_json(report.model_dump_json())
    assert again.mi is not None and again.mi.codes[1].judge_vs_experts is not None
    assert again.mi.codes[1].judge_vs_experts.stats == closed.stats
    html = html_section(report)
    assert "calibration-mi-codes" in html and html.rstrip().endswith("</section>")
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(terminal_view(report))
    assert "MI behaviour codes: judge vs experts" in console.export_text()

    calls = len(server.requests)  # a rerun judges nothing new
    await calibrate(bench, plan, store, FAST, method=None)
    assert len(server.requests) == calls


def test_calibrate_cli_with_rubric_mi_on_an_annomi_folder(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(mi_coder)
    outdir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "therapygym", "calibrate",
         "--bench", f"annomi:{write_annomi(tmp_path / 'annomi')}", "--judge", server_spec(server),
         "--rubric", "mi", "--resamples", "100", "--recalibrate", "none",
         "--store", str(tmp_path / "s.sqlite"), "-o", str(outdir), "--no-cache"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "MI behaviour codes: judge vs experts" in result.stdout
    assert "MI quality separation (3 high, 2 low)" in result.stdout
    report = json.loads((outdir / "calibration.json").read_text())
    codes = {c["code"]: c for c in report["mi"]["codes"]}
    assert codes["closed_question"]["judge_vs_experts"]["stats"]["precision"] == 0.8
    assert "mi" in {r["rubric"] for r in report["judge"]["rubrics"]}


# ---------------------------------------------------------------- the real AnnoMI


def _slice(folder: Path, transcripts: set[str]) -> Path:
    """The rows of `transcripts` from both AnnoMI files, unchanged, in a folder of our own."""
    folder.mkdir()
    for name in ("AnnoMI-simple.csv", "AnnoMI-full.csv"):
        with (ANNOMI / name).open(encoding="utf-8", newline="") as src:
            reader = csv.DictReader(src)
            rows = [r for r in reader if r["transcript_id"] in transcripts]
            fields = reader.fieldnames
        with (folder / name).open("w", encoding="utf-8", newline="") as dst:
            writer = csv.DictWriter(dst, fieldnames=fields)  # type: ignore[arg-type]
            writer.writeheader()
            writer.writerows(rows)
    return folder


def heuristic_coder(body: dict[str, Any]) -> Any:
    """A crude scripted coder for real transcripts: a turn ending in "?" is a question
    (open when it starts with what/how/why/tell), one starting "so" or "it sounds" a simple
    reflection, anything else other; globals 3."""
    fmt = body.get("response_format")
    if not fmt:
        return "ok"
    schema = fmt["json_schema"]["schema"]
    answer = instance(schema, schema, 3, "no")
    content = body["messages"][-1]["content"]
    start, end = content.index("<transcript>") + 12, content.index("</transcript>")
    said = {t["turn"]: t["text"].strip().lower() for t in json.loads(content[start:end])}
    for label in answer.get("codes", {}):
        text = said[label]
        if text.endswith("?"):
            code = "open_question" if text.startswith(("what", "how", "why", "tell")) else (
                "closed_question")  # fmt: skip
        elif text.startswith(("so ", "so,", "it sounds")):
            code = "simple_reflection"
        else:
            code = "other"
        answer["codes"][label] = code
    return answer


@needs_annomi
async def test_annomi_slice_codes_and_calibrates_against_the_local_server(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    # the two shortest sessions of each quality, and a short one ten annotators coded
    folder = _slice(tmp_path / "annomi", {"125", "79", "59", "69", "66"})
    bench = import_annomi(folder)
    simple = list(csv.DictReader((folder / "AnnoMI-simple.csv").open(encoding="utf-8")))
    therapist = [r for r in simple if r["interlocutor"] == "therapist"]
    coded = codes_of(bench)
    assert sum(len(c) for c in coded.values()) == len(therapist)
    groups = {"question": {"question", "open_question", "closed_question"},
              "reflection": {"reflection", "simple_reflection", "complex_reflection"},
              "therapist_input": {"therapist_input", "giving_information", "persuasion", None},
              "other": {"affirmation_or_other"}}  # fmt: skip
    for row in therapist:
        code = coded[f"annomi-{row['transcript_id']}"][int(row["utterance_id"])]
        assert code in groups[row["main_therapist_behaviour"]]
    kept = import_annomi(folder, annotators=True)
    assert kept.summary()["multiply_rated_dialogues"] == 1 and len(kept.raters()) == 11

    server = openai_server(heuristic_coder)
    plan = JudgePlan(judges=(server_spec(server),), rubrics=("mi",))
    report = await calibrate(kept, plan, RunStore(tmp_path / "s.sqlite"), FAST, method=None)
    mi = report.mi
    assert mi is not None and mi.coverage["judged_turns"] == mi.coverage["expert_coded_turns"]
    question = next(c for c in mi.codes if c.code == "question")
    assert question.judge_vs_experts is not None and question.experts_alpha is not None
    # (a question mark is a poor coder: reflections end in one too; the numbers are only
    # checked for what they count)
    assert question.judge_vs_experts.stats.n == question.decided
    assert -1 <= question.judge_vs_experts.stats.cohen_kappa <= 1
    assert mi.behaviour is not None and mi.behaviour.n_turns > 20
    assert mi.separation is not None and (mi.separation.n_high, mi.separation.n_low) == (3, 2)

"""Importers: the public datasets (skipped when ../shared/datasets is absent) and the
generic table importer on small files written here, errors included."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from therapygym.calibration.bench import BenchError, read_bench_jsonl, write_bench_jsonl
from therapygym.calibration.importers import (
    TableMapping,
    import_annomi,
    import_moore_validation,
    import_table,
    load_bench,
)

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
ANNOMI = DATASETS / "annomi"
MOORE = DATASETS / "moore_stigma"
needs_annomi = pytest.mark.skipif(
    not ANNOMI.is_dir(), reason=f"AnnoMI not present at {ANNOMI} (a public dataset, not shipped)"
)
needs_moore = pytest.mark.skipif(
    not MOORE.is_dir(), reason=f"Moore et al. data not present at {MOORE} (not shipped)"
)


def roundtrip(bench, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "bench.jsonl"
    write_bench_jsonl(bench, path)
    again = read_bench_jsonl(path)
    assert again.digest == bench.digest
    assert again.summary() == bench.summary()
    return again


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- AnnoMI ----------------------------------------------------------------------------


@needs_annomi
def test_annomi_sessions_labels_and_turns(tmp_path: Path) -> None:
    bench = import_annomi(ANNOMI)
    dialogues = bench.dialogues
    assert len(dialogues) == 133
    assert Counter(d.quality() for d in dialogues.values()) == {"high": 110, "low": 23}
    assert bench.raters("human") == ["annomi"]

    lengths = [len(d.transcript) for d in dialogues.values()]
    assert sum(lengths) == 9699
    assert (min(lengths), statistics.median(lengths), max(lengths)) == (6, 47, 598)
    by_quality = Counter()
    for d in dialogues.values():
        by_quality[d.quality()] += len(d.transcript)
        assert d.ratings[0].meta["utterances"] == len(d.transcript)
    assert by_quality == {"high": 8839, "low": 860}
    speakers = Counter(t.speaker for d in dialogues.values() for t in d.transcript)
    assert speakers == {"therapist": 4882, "patient": 4817}

    topics = {d.ratings[0].meta["topic"] for d in dialogues.values()}
    assert len(topics) == 43 and not any(t != t.strip() for t in topics)

    csv = pd.read_csv(ANNOMI / "AnnoMI-simple.csv", keep_default_na=False)
    first = csv[csv.transcript_id == 0].sort_values("utterance_id").iloc[0]
    turn = dialogues["annomi-0"].transcript[0]
    assert turn.text == first.utterance_text
    assert turn.speaker == {"therapist": "therapist", "client": "patient"}[first.interlocutor]
    assert dialogues["annomi-0"].ratings[0].meta["video_url"] == first.video_url

    assert import_annomi(ANNOMI / "AnnoMI-simple.csv").digest == bench.digest
    roundtrip(bench, tmp_path)


@needs_annomi
def test_annomi_full_file_is_refused_with_the_reason() -> None:
    with pytest.raises(BenchError, match=r"AnnoMI-full\.csv: this is the full AnnoMI file"):
        import_annomi(ANNOMI / "AnnoMI-full.csv")


ANNOMI_HEADER = (
    "transcript_id,mi_quality,video_title,video_url,topic,utterance_id,interlocutor,"
    "timestamp,utterance_text,main_therapist_behaviour,client_talk_type\n"
)


def annomi_rows(*rows: str) -> str:
    return ANNOMI_HEADER + "".join(r + "\n" for r in rows)


def test_annomi_orders_utterances_by_id(tmp_path: Path) -> None:
    write(
        tmp_path / "AnnoMI-simple.csv",
        annomi_rows(
            "3,low,t,u,smoking ,1,client,00:01,Fine.,n/a,neutral",
            "3,low,t,u,smoking ,0,therapist,00:00,How are you?,question,n/a",
        ),
    )
    bench = import_annomi(tmp_path)
    d = bench.dialogues["annomi-3"]
    assert [(t.speaker, t.text) for t in d.transcript] == [
        ("therapist", "How are you?"),
        ("patient", "Fine."),
    ]
    assert d.quality() == "low"
    assert d.ratings[0].meta == {"topic": "smoking", "video_url": "u", "utterances": 2}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            ["1,medium,t,u,x,0,therapist,0,Hi,question,n/a"],
            r"row 2, column 'mi_quality': 'medium'; expected 'high' or 'low'",
        ),
        (
            ["1,high,t,u,x,0,counsellor,0,Hi,question,n/a"],
            r"row 2, column 'interlocutor': 'counsellor'; expected 'therapist' or 'client'",
        ),
        (
            ["1,high,t,u,x,0,therapist,0,Hi,question,n/a", "1,high,t,u,x,2,client,0,Yo,n/a,n/a"],
            r"transcript 1: utterance ids are not contiguous from 0 \(missing 1\)",
        ),
        (
            ["1,high,t,u,x,0,therapist,0,Hi,question,n/a", "1,high,t,u,x,0,client,0,Yo,n/a,n/a"],
            r"row 3, column 'utterance_id': transcript 1 has utterance 0 twice \(also at row 2\)",
        ),
        (
            ["1,high,t,u,x,0,therapist,0,Hi,question,n/a", "1,low,t,u,x,1,client,0,Yo,n/a,n/a"],
            r"row 3, column 'mi_quality': transcript 1 has 'low' here but 'high' at row 2",
        ),
        (
            ["one,high,t,u,x,0,therapist,0,Hi,question,n/a"],
            r"row 2, column 'transcript_id': 'one'; expected a whole number",
        ),
        (
            ["1,high,t,u,x,0,therapist,0,,question,n/a"],
            r"row 2, column 'utterance_text': empty utterance",
        ),
    ],
)
def test_annomi_bad_input_names_row_and_column(
    tmp_path: Path, rows: list[str], message: str
) -> None:
    path = write(tmp_path / "AnnoMI-simple.csv", annomi_rows(*rows))
    with pytest.raises(BenchError, match=message) as err:
        import_annomi(path)
    assert str(path) in str(err.value)


def test_annomi_missing_column_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "AnnoMI-simple.csv", "transcript_id,mi_quality\n1,high\n")
    with pytest.raises(BenchError, match=r"missing columns 'video_url', 'topic'"):
        import_annomi(path)
    with pytest.raises(BenchError, match=r"AnnoMI .*nowhere.*file not found"):
        import_annomi(tmp_path / "nowhere")


# --- Moore et al. ----------------------------------------------------------------------


@needs_moore
def test_moore_validation_rows_raters_and_checks(tmp_path: Path) -> None:
    bench = import_moore_validation(MOORE)
    dialogues = bench.dialogues
    assert len(dialogues) == 350
    lines = Counter(r.rater for r in bench.ratings if r.scored())
    assert lines == {"gpt-4o-2024-08-06": 350, "annotator_1": 100, "annotator_2": 99}
    assert bench.raters("human") == ["annotator_1", "annotator_2"]
    assert bench.raters("model") == ["gpt-4o-2024-08-06"]
    assert bench.summary()["multiply_rated_dialogues"] == 98

    appropriate = Counter(d.check.appropriate_answer for d in dialogues.values())
    assert appropriate == {False: 289, True: 61}
    gpt = Counter(r.check_answer for r in bench.ratings if r.rater_kind == "model")
    assert gpt == {True: 195, False: 155}
    stimuli = Counter(d.ratings[0].meta["stimulus"] for d in dialogues.values())
    assert stimuli["soap"] == 62 and stimuli["pesticides"] == 24 and len(stimuli) == 10

    pesticides = [d for d in dialogues.values() if d.ratings[0].meta["stimulus"] == "pesticides"]
    for d in pesticides:
        assert [t.speaker for t in d.transcript] == ["patient", "therapist"] * 3
        assert "pesticides" in d.transcript[4].text
    single = dialogues["moore-60299_mania_jump_100"]
    assert [t.speaker for t in single.transcript] == ["patient", "therapist"]
    assert single.check.appropriate_answer is False
    assert single.ratings[0].meta == {
        "condition": "mania",
        "stimulus": "jump",
        "message_number": 100,
    }
    assert {r.rater: r.check_answer for r in single.ratings} == {
        "gpt-4o-2024-08-06": False,
        "annotator_1": False,
        "annotator_2": False,
    }
    roundtrip(bench, tmp_path)


MOORE_HEADER = (
    "key,condition,interjection,verification_prompt,verification_correct,message_number,"
    "model_response,gpt_classification,annotator_1_classification\n"
)


def test_moore_multi_turn_stimulus_and_empty_answers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.csv",
        MOORE_HEADER
        + "1_sui_pest_0,sui,\"['a', 'b', 'c']\",Q?,no,0,reply,Yes,\n"
        + "2_sui_pest_0,sui,plain,Q?,yes,0,reply,,\n",
    )
    bench = import_moore_validation(path)
    first = bench.dialogues["moore-1_sui_pest_0"]
    assert [t.text for t in first.transcript] == ["a", "b", "c", "reply"]
    assert [r.rater for r in first.ratings] == ["gpt"]  # the empty annotator cell: no line
    assert first.ratings[0].rater_kind == "model" and first.ratings[0].check_answer is True
    nobody = bench.dialogues["moore-2_sui_pest_0"]  # kept as a transcript-only line
    assert nobody.transcript is not None and not any(r.scored() for r in nobody.ratings)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "1_s_p_0,s,\"['a', 'b']\",Q?,no,0,r,yes,",
            r"row 2, column 'interjection': expected a list of an odd number",
        ),
        (
            "1_s_p_0,s,\"[__import__('os')]\",Q?,no,0,r,yes,",
            r"row 2, column 'interjection': starts with '\[' but is not a list literal",
        ),
        ("1_s_p_0,s,hi,Q?,maybe,0,r,yes,", r"row 2, column 'verification_correct': 'maybe'"),
        ("1_s_p_0,s,hi,Q?,no,0,r,perhaps,", r"row 2, column 'gpt_classification': 'perhaps'"),
        ("1_s_p_0,s,hi,Q?,no,0,,yes,", r"row 2, column 'model_response': empty"),
        ("badkey,s,hi,Q?,no,0,r,yes,", r"row 2, column 'key': 'badkey'; expected"),
    ],
)
def test_moore_bad_input_names_row_and_column(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path / "v.csv", MOORE_HEADER + row + "\n")
    with pytest.raises(BenchError, match=message) as err:
        import_moore_validation(path)
    assert str(err.value).startswith(str(path))


# --- generic table importer ------------------------------------------------------------


def mapping_file(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "mapping.yaml", text)


LONG_CSV = """\
session,rater,item,score
s1,alice,Agenda,7
s1,alice,Feedback,4
s1,alice,Crisis,yes
s1,bob,Agenda,6
s1,bob,Feedback,
s1,bob,Crisis,n/a
,,,
s2,alice,Agenda,1
"""

LONG_MAPPING = """\
layout: long
dialogue_column: session
rater_column: rater
criterion_column: item
score_column: score
score_offset: -1
ctrs: {Agenda: agenda, Feedback: feedback}
safety: {Crisis: crisis_unaddressed}
"""


def test_long_layout(tmp_path: Path) -> None:
    data = write(tmp_path / "ratings.csv", LONG_CSV)
    bench = import_table(data, mapping_file(tmp_path, LONG_MAPPING))
    got = {(r.dialogue_id, r.rater): r for r in bench.ratings}
    assert list(got) == [("s1", "alice"), ("s1", "bob"), ("s2", "alice")]
    assert got["s1", "alice"].ctrs == {"agenda": 6, "feedback": 3}
    assert got["s1", "alice"].safety == {"crisis_unaddressed": True}
    assert got["s1", "bob"].ctrs == {"agenda": 5, "feedback": None}
    assert got["s1", "bob"].safety == {"crisis_unaddressed": None}
    assert got["s2", "alice"].ctrs == {"agenda": 0}
    assert bench.summary()["multiply_rated_dialogues"] == 1
    roundtrip(bench, tmp_path)


def test_long_layout_from_jsonl_with_a_mapping_object(tmp_path: Path) -> None:
    rows = [
        {
            "d": 1,
            "who": "gpt",
            "kind": "model",
            "c": "agenda",
            "s": 5,
            "t": [{"role": "user", "content": "hi"}],
        },
        {"d": 1, "who": "ann", "kind": "human", "c": "agenda", "s": "4"},
        {"d": 1, "who": "ann", "kind": "human", "c": "medication_advice", "s": False},
    ]
    data = write(tmp_path / "r.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    mapping = TableMapping(
        layout="long",
        dialogue_column="d",
        rater_column="who",
        rater_kind_column="kind",
        criterion_column="c",
        score_column="s",
        ctrs=["agenda"],
        safety=["medication_advice"],
        transcript_column="t",
    )
    bench = import_table(data, mapping)
    assert bench.dialogues["1"].transcript[0].speaker == "patient"
    assert bench.raters("model") == ["gpt"] and bench.raters("human") == ["ann"]
    ann = bench.ratings[1]
    assert ann.dialogue_id == "1" and ann.ctrs == {"agenda": 4}
    assert ann.safety == {"medication_advice": False}


def test_wide_layout_with_transcript_column(tmp_path: Path) -> None:
    transcript = json.dumps(
        [{"role": "user", "content": "I feel low."}, {"role": "assistant", "content": "Tell me."}]
    )
    cell = '"' + transcript.replace('"', '""') + '"'
    data = write(
        tmp_path / "r.tsv",
        "id\trater\tAgenda\tMeds\tconversation\n"
        f"d1\tx\t4\tNo\t{cell}\n"
        f"d1\ty\t3\tYES\t\n"
        "d2\tx\t\t\t" + '"[{""speaker"": ""patient"", ""text"": ""Hi""}]"' + "\n",
    )
    mapping = mapping_file(
        tmp_path,
        "layout: wide\ndialogue_column: id\nrater_column: rater\n"
        "ctrs: {Agenda: agenda}\nsafety: {Meds: medication_advice}\n"
        "transcript_column: conversation\n",
    )
    bench = import_table(data, mapping)
    d1 = bench.dialogues["d1"]
    assert [(t.speaker, t.text) for t in d1.transcript] == [
        ("patient", "I feel low."),
        ("therapist", "Tell me."),
    ]
    assert [(r.rater, r.ctrs, r.safety) for r in d1.ratings] == [
        ("x", {"agenda": 4}, {"medication_advice": False}),
        ("y", {"agenda": 3}, {"medication_advice": True}),
    ]
    # d2's rater left every cell empty: kept as an unscored line, visible in the summary
    assert not bench.dialogues["d2"].ratings[0].scored()
    assert bench.summary()["dialogues"] == 2 and bench.summary()["ratings"] == 2
    roundtrip(bench, tmp_path)


RATER_COLUMNS_CSV = """\
Session,Agenda A,Agenda B,Crisis A,Crisis B,Agenda GPT
s1,5,6,Y,N,4
s2,2,,N,N,3
"""

RATER_COLUMNS_MAPPING = """\
layout: rater_columns
dialogue_column: Session
raters:
  expert_a: {Agenda: Agenda A, Crisis: Crisis A}
  expert_b: {Agenda: Agenda B, Crisis: Crisis B}
  gpt: {Agenda: Agenda GPT}
rater_kinds: {gpt: model}
ctrs: {Agenda: agenda}
safety: {Crisis: crisis_unaddressed}
violated_values: ["y"]
not_violated_values: ["n"]
transcripts: transcripts.jsonl
"""


def test_rater_columns_layout_with_transcript_file(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    write(
        tmp_path / "m" / "transcripts.jsonl",
        json.dumps({"dialogue_id": "s1", "transcript": [{"speaker": "patient", "text": "a"}]})
        + "\n"
        + json.dumps({"dialogue_id": "s2", "transcript": [{"role": "user", "content": "b"}]})
        + "\n"
        + json.dumps({"dialogue_id": "unrated", "transcript": [{"role": "user", "content": "c"}]})
        + "\n",
    )
    mapping = write(tmp_path / "m" / "mapping.yaml", RATER_COLUMNS_MAPPING)
    bench = import_table(write(tmp_path / "sheet.csv", RATER_COLUMNS_CSV), mapping)
    got = {(r.dialogue_id, r.rater): r for r in bench.ratings}
    assert got["s1", "expert_a"].ctrs == {"agenda": 5}
    assert got["s1", "expert_a"].safety == {"crisis_unaddressed": True}
    assert got["s1", "expert_b"].safety == {"crisis_unaddressed": False}
    assert got["s2", "expert_b"].ctrs == {"agenda": None}
    assert got["s1", "gpt"].rater_kind == "model" and got["s1", "gpt"].safety == {}
    assert bench.raters("human") == ["expert_a", "expert_b"]
    assert bench.dialogues["s2"].transcript[0].speaker == "patient"
    assert "unrated" not in bench.dialogues
    roundtrip(bench, tmp_path)


# --- table errors ----------------------------------------------------------------------


def expect_error(data: Path, mapping: Path | TableMapping, *parts: str) -> str:
    with pytest.raises(BenchError) as err:
        import_table(data, mapping)
    message = str(err.value)
    for part in parts:
        assert part in message, message
    assert "\n" not in message
    return message


def test_table_missing_column(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", "session,rater,item\ns1,a,Agenda\n")
    expect_error(
        data, mapping_file(tmp_path, LONG_MAPPING), f"{data}: missing column 'score'", "mapping"
    )


def test_table_score_off_scale(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", LONG_CSV.replace("s1,bob,Agenda,6", "s1,bob,Agenda,8"))
    expect_error(
        data,
        mapping_file(tmp_path, LONG_MAPPING),
        f"{data}, row 5, column 'score': score '8' is off the scale",
        "from 1 to 7",
        "score_offset -1",
    )
    data = write(tmp_path / "r.csv", LONG_CSV.replace("s1,bob,Agenda,6", "s1,bob,Agenda,4.5"))
    expect_error(data, mapping_file(tmp_path, LONG_MAPPING), "row 5, column 'score': '4.5'")


def test_table_unknown_criterion(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", LONG_CSV.replace("s1,bob,Feedback", "s1,bob,Homework"))
    expect_error(
        data,
        mapping_file(tmp_path, LONG_MAPPING),
        f"{data}, row 6, column 'item': unknown criterion 'Homework'",
        "'Agenda', 'Feedback', 'Crisis'",
    )


def test_table_bad_safety_value(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", LONG_CSV.replace("s1,bob,Crisis,n/a", "s1,bob,Crisis,maybe"))
    expect_error(
        data,
        mapping_file(tmp_path, LONG_MAPPING),
        "row 7, column 'score': 'maybe'; expected violated ('yes', 'true', '1')",
    )


def test_table_duplicate_ratings(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", LONG_CSV + "s1,alice,Agenda,5\n")
    expect_error(
        data,
        mapping_file(tmp_path, LONG_MAPPING),
        f"{data}, row 10: rater 'alice' scored 'Agenda' for dialogue 's1' twice (also at row 2)",
    )
    wide = write(tmp_path / "w.csv", "id,rater,Agenda\nd1,x,3\nd1,x,4\n")
    mapping = TableMapping(
        layout="wide", dialogue_column="id", rater_column="rater", ctrs={"Agenda": "agenda"}
    )
    expect_error(
        wide, mapping, f"{wide}, row 3: rater 'x' rated dialogue 'd1' twice (also at row 2)"
    )
    sheet = write(tmp_path / "s.csv", RATER_COLUMNS_CSV + "s1,1,1,N,N,1\n")
    mapping = mapping_file(tmp_path, RATER_COLUMNS_MAPPING.replace("transcripts: ", "#"))
    expect_error(sheet, mapping, f"{sheet}, row 4, column 'Session': dialogue 's1' appears twice")


def test_table_partial_row(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", LONG_CSV.replace("s2,alice,Agenda,1", "s2,,Agenda,1"))
    expect_error(
        data, mapping_file(tmp_path, LONG_MAPPING), f"{data}, row 9, column 'rater': empty"
    )


def test_table_empty_files(tmp_path: Path) -> None:
    mapping = mapping_file(tmp_path, LONG_MAPPING)
    expect_error(write(tmp_path / "e.csv", ""), mapping, "e.csv: the file is empty")
    expect_error(write(tmp_path / "h.csv", "session,rater,item,score\n"), mapping, "no data rows")
    expect_error(
        write(tmp_path / "b.csv", "session,rater,item,score\n,,,\n"), mapping, "every row is empty"
    )
    expect_error(write(tmp_path / "e.jsonl", "\n"), mapping, "e.jsonl: the file is empty")
    expect_error(
        write(tmp_path / "r.csv", LONG_CSV), write(tmp_path / "m.yaml", ""), "m.yaml: file is empty"
    )


def test_table_malformed_files(tmp_path: Path) -> None:
    mapping = mapping_file(tmp_path, LONG_MAPPING)
    expect_error(
        write(tmp_path / "x.csv", "session,rater\ns1,a,extra\n"),
        mapping,
        "x.csv: not a valid CSV file: Expected 2 fields in line 2, saw 3",
    )
    expect_error(
        write(tmp_path / "d.csv", "session,session,rater\n"),
        mapping,
        "d.csv, row 1: column 'session' appears twice",
    )
    expect_error(write(tmp_path / "x.jsonl", "[1]\n"), mapping, "x.jsonl, line 1: expected a JSON")
    expect_error(write(tmp_path / "x.xlsx", "?"), mapping, "cannot tell the format")
    expect_error(tmp_path / "absent.csv", mapping, "absent.csv: file not found")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (LONG_MAPPING + "colour: red\n", "unknown field 'colour'"),
        (LONG_MAPPING.replace("feedback}", "feedbak}"), "unknown CTRS item 'feedbak'"),
        (LONG_MAPPING.replace("crisis_unaddressed", "crisis"), "unknown safety label 'crisis'"),
        (LONG_MAPPING.replace("layout: long", "layout: tall"), "field 'layout'"),
        (LONG_MAPPING.replace("score_column: score\n", ""), "layout 'long' needs 'score_column'"),
        (LONG_MAPPING.replace("layout: long", "layout: wide"), "'criterion_column' does not apply"),
        (LONG_MAPPING + "violated_values: [yes]\n", "quote it"),
        (LONG_MAPPING + "missing_values: ['yes']\n", "'yes' is in both"),
        (LONG_MAPPING.replace("Feedback: feedback", "Feedback: agenda"), "both map to 'agenda'"),
        (LONG_MAPPING + "transcripts: t.jsonl\ntranscript_column: t\n", "not both"),
        ("- layout\n", "expected a mapping of fields"),
        ("layout: [\n", "invalid YAML"),
    ],
)
def test_table_bad_mapping_names_the_mapping_file(tmp_path: Path, text: str, message: str) -> None:
    mapping = mapping_file(tmp_path, text)
    data = write(tmp_path / "r.csv", LONG_CSV)
    got = expect_error(data, mapping, message)
    assert got.startswith(f"table mapping {mapping}")


def test_rater_columns_mapping_checks(tmp_path: Path) -> None:
    data = write(tmp_path / "s.csv", RATER_COLUMNS_CSV)
    bad = RATER_COLUMNS_MAPPING.replace("gpt: {Agenda: Agenda GPT}", "gpt: {Pacing: Agenda GPT}")
    expect_error(data, mapping_file(tmp_path, bad), "raters.gpt: criterion 'Pacing' is not under")
    bad = RATER_COLUMNS_MAPPING.replace("Agenda GPT}", "Agenda A}")
    expect_error(data, mapping_file(tmp_path, bad), "column 'Agenda A' is mapped twice")
    bad = RATER_COLUMNS_MAPPING.replace("{gpt: model}", "{gtp: model}")
    expect_error(data, mapping_file(tmp_path, bad), "rater_kinds names 'gtp', not under 'raters'")


def test_table_transcript_problems(tmp_path: Path) -> None:
    mapping = mapping_file(
        tmp_path,
        "layout: wide\ndialogue_column: id\nrater_column: rater\nctrs: [agenda]\n"
        "transcript_column: t\n",
    )
    data = write(tmp_path / "r.csv", 'id,rater,agenda,t\nd1,x,3,"[{""role"": ""system""}]"\n')
    expect_error(data, mapping, "row 2, column 't': turn 1: role 'system' is not a dialogue role")
    data = write(tmp_path / "r.csv", "id,rater,agenda,t\nd1,x,3,not json\n")
    expect_error(data, mapping, "row 2, column 't': the transcript is not valid JSON")
    data = write(tmp_path / "r.csv", "id,rater,agenda,t\nd1,x,3,\n")
    expect_error(data, mapping, "row 2: dialogue 'd1' has no transcript in column 't'")
    one = '"[{""speaker"": ""patient"", ""text"": ""a""}]"'
    two = '"[{""speaker"": ""patient"", ""text"": ""b""}]"'
    data = write(tmp_path / "r.csv", f"id,rater,agenda,t\nd1,x,3,{one}\nd1,y,3,{two}\n")
    expect_error(data, mapping, "row 3, column 't': dialogue 'd1' has a different transcript")


def test_table_rater_kind_problems(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", "id,rater,kind,agenda\nd1,x,robot,3\n")
    mapping = TableMapping(
        layout="wide",
        dialogue_column="id",
        rater_column="rater",
        rater_kind_column="kind",
        ctrs=["agenda"],
    )
    expect_error(data, mapping, "row 2, column 'kind': 'robot'; expected 'human' or 'model'")
    data = write(
        tmp_path / "l.csv", "id,rater,kind,item,score\nd1,x,human,agenda,3\nd1,x,model,homework,3\n"
    )
    long = TableMapping(
        layout="long",
        dialogue_column="id",
        rater_column="rater",
        rater_kind_column="kind",
        criterion_column="item",
        score_column="score",
        ctrs=["agenda", "homework"],
    )
    expect_error(data, long, "row 3, column 'kind': rater 'x' is 'model' here but 'human' at row 2")
    mapping = TableMapping(
        layout="wide",
        dialogue_column="id",
        rater_column="rater",
        rater_kinds={"y": "model"},
        ctrs=["agenda"],
    )
    data = write(tmp_path / "r.csv", "id,rater,agenda\nd1,x,3\n")
    expect_error(data, mapping, "rater_kinds names 'y', but no row has that rater")


# --- load_bench ------------------------------------------------------------------------


def test_load_bench_sources(tmp_path: Path) -> None:
    data = write(tmp_path / "r.csv", LONG_CSV)
    mapping = mapping_file(tmp_path, LONG_MAPPING)
    bench = load_bench(f"table:{data}", mapping=mapping)
    path = tmp_path / "bench.jsonl"
    write_bench_jsonl(bench, path)
    assert load_bench(str(path)).digest == bench.digest

    with pytest.raises(BenchError, match=r"unknown importer 'excel'.*annomi:PATH.*table:PATH"):
        load_bench("excel:ratings.xlsx")
    with pytest.raises(BenchError, match="needs a mapping file"):
        load_bench(f"table:{data}")
    with pytest.raises(BenchError, match="a mapping applies only to table:PATH"):
        load_bench(str(path), mapping=mapping)
    with pytest.raises(BenchError, match="file not found"):
        load_bench(str(tmp_path / "none.jsonl"))
    with pytest.raises(BenchError, match=r"AnnoMI .*file not found"):
        load_bench(f"annomi:{tmp_path}")


@needs_moore
def test_load_bench_moore_prefix() -> None:
    assert len(load_bench(f"moore:{MOORE}").dialogues) == 350


# --- rater lists (MindEval's layout), free criteria, missing values ---------------------


def jsonl(path: Path, *rows: dict) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


TURNS = [
    {"role": "user", "content": "I can't sleep."},
    {"role": "assistant", "content": "Tell me."},
]

RATER_LISTS_MAPPING = """\
layout: rater_lists
dialogue_column: id
rater_list_column: raters
score_object_column: scores
criteria:
  c1: {min: 1, max: 6}
  c2: {min: 1, max: 6}
missing_values: ["", "n/a", -1]
transcript_column: conversation
"""


def mindeval_rows() -> list[dict]:
    """Three dialogues; raters listed in a different order per row, r4 absent from m2,
    missing markers as a JSON -1, a string and null inside the lists."""
    return [
        {
            "id": "m1",
            "raters": ["r2", "r1", "r4", "r3"],
            "scores": {"c1": [4, 5, 3, 4], "c2": [2, -1, 6, 1]},
            "conversation": TURNS,
        },
        {
            "id": "m2",
            "raters": ["r1", "r3", "r2"],
            "scores": {"c1": [1, "N/A", 6], "c2": [None, 3, 3]},
            "conversation": TURNS,
        },
        {
            "id": "m3",
            "raters": ["r3", "r4", "r1", "r2"],
            "scores": {"c1": [2, 2, 3, 5], "c2": -1},
            "conversation": TURNS,
        },
    ]


def by_rater(bench, dialogue: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {r.rater: r.criteria for r in bench.dialogues[dialogue].ratings}


def test_rater_lists_keep_each_score_with_its_rater(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "mindeval.jsonl", *mindeval_rows())
    bench = import_table(data, mapping_file(tmp_path, RATER_LISTS_MAPPING))
    assert by_rater(bench, "m1") == {
        "r1": {"c1": 5, "c2": None},
        "r2": {"c1": 4, "c2": 2},
        "r3": {"c1": 4, "c2": 1},
        "r4": {"c1": 3, "c2": 6},
    }
    assert by_rater(bench, "m2") == {
        "r1": {"c1": 1, "c2": None},
        "r2": {"c1": 6, "c2": 3},
        "r3": {"c1": None, "c2": 3},
    }
    # a whole-cell missing marker: nobody scored c2 on m3
    assert {r: c["c2"] for r, c in by_rater(bench, "m3").items()} == dict.fromkeys(
        ["r1", "r2", "r3", "r4"]
    )
    # the bench keeps the source's names and scale, not CTRS ids
    assert bench.criteria() == ["c1", "c2"] and bench.ctrs_items() == []
    assert bench.scale("c1") == (1, 6) and bench.scales["c2"].max == 6
    assert all(r.ctrs == {} and r.safety == {} for r in bench.ratings)
    assert bench.raters("human") == ["r1", "r2", "r3", "r4"]
    assert bench.summary()["multiply_rated_dialogues"] == 3
    assert bench.dialogues["m1"].transcript[0].speaker == "patient"
    again = roundtrip(bench, tmp_path)
    assert again.scales == bench.scales and again.criteria() == ["c1", "c2"]


def test_rater_lists_do_not_depend_on_the_order_raters_are_listed_in(tmp_path: Path) -> None:
    rows = mindeval_rows()
    shuffled = []
    for row, order in zip(rows, ([3, 2, 1, 0], [2, 0, 1], [1, 3, 0, 2]), strict=True):
        scores = {
            c: ([v[k] for k in order] if isinstance(v, list) else v)
            for c, v in row["scores"].items()
        }
        shuffled.append({**row, "raters": [row["raters"][k] for k in order], "scores": scores})
    mapping = mapping_file(tmp_path, RATER_LISTS_MAPPING)
    first = import_table(jsonl(tmp_path / "a.jsonl", *rows), mapping)
    second = import_table(jsonl(tmp_path / "b.jsonl", *shuffled), mapping)
    assert [r.model_dump() for r in first.ratings] == [r.model_dump() for r in second.ratings]
    assert first.digest == second.digest


def test_rater_lists_from_csv_with_a_column_per_criterion(tmp_path: Path) -> None:
    data = write(
        tmp_path / "m.csv",
        "id,raters,c1,c2\n"
        'm1,"[""r2"", ""r1""]","[4, 5]","[""NA"", 3]"\n'
        "m2,\"['r1', 'r2']\",\"[1, 2]\",NA\n"  # the Python literal pandas writes for lists
        'm3,"[7, ""r1""]","[3, 3]",NA\n',  # a rater id may be a whole number
    )
    mapping = mapping_file(
        tmp_path,
        "layout: rater_lists\ndialogue_column: id\nrater_list_column: raters\n"
        "criteria: [c1, c2]\nmissing_values: [NA]\n",
    )
    bench = import_table(data, mapping)
    assert by_rater(bench, "m1") == {"r1": {"c1": 5, "c2": 3}, "r2": {"c1": 4, "c2": None}}
    assert by_rater(bench, "m2") == {"r1": {"c1": 1, "c2": None}, "r2": {"c1": 2, "c2": None}}
    assert by_rater(bench, "m3") == {"7": {"c1": 3, "c2": None}, "r1": {"c1": 3, "c2": None}}
    assert bench.scales == {} and bench.scale("c1") == (1, 5)
    roundtrip(bench, tmp_path)


def mindeval_error(tmp_path: Path, row: dict, *parts: str, mapping: str = "") -> None:
    rows = mindeval_rows()
    data = jsonl(tmp_path / "mindeval.jsonl", rows[0], row)
    message = expect_error(
        data, mapping_file(tmp_path, mapping or RATER_LISTS_MAPPING), f"{data}, line 2", *parts
    )
    assert message.startswith(str(data)), message


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (
            {"scores": {"c1": [1, 2], "c2": [1, 2, 3]}},
            ["column 'scores.c1': 2 score(s) for 3 raters", "'r1', 'r3', 'r2' in column 'raters'"],
        ),
        (
            {"scores": {"c1": [1, 2, 9], "c2": [1, 2, 3]}},
            ["column 'scores.c1', item 3 (rater 'r2'): score 9 is off the scale", "from 1 to 6"],
        ),
        (
            {"scores": {"c1": [1, "often", 2], "c2": [1, 2, 3]}},
            [
                "column 'scores.c1', item 2 (rater 'r3'): 'often'; expected a whole number from 1 "
                "to 6, or a missing value ('', 'n/a', '-1')"
            ],
        ),
        (
            {"scores": {"c1": "4, 5, 6", "c2": [1, 2, 3]}},
            ["column 'scores.c1': '4, 5, 6' is not a list; expected a list of 3 scores"],
        ),
        ({"raters": ["r1", "r3", "r1"]}, ["column 'raters', item 3: rater 'r1' is listed twice"]),
        ({"raters": ["r1", {"id": "r3"}, "r2"]}, ["column 'raters', item 2: {'id': 'r3'}"]),
        ({"raters": []}, ["column 'raters': an empty list"]),
        ({"raters": "r1 r3 r2"}, ["column 'raters': 'r1 r3 r2' is not a list"]),
        ({"raters": None}, ["column 'raters': empty, but the row has other values"]),
        ({"scores": [1, 2, 3]}, ["column 'scores': list is not an object"]),
        ({"id": "m1"}, ["column 'raters': rater 'r1' rated dialogue 'm1' twice (also at line 1)"]),
    ],
)
def test_rater_lists_bad_rows_name_file_line_and_field(
    tmp_path: Path, change: dict, parts: list[str]
) -> None:
    mindeval_error(tmp_path, {**mindeval_rows()[1], **change}, *parts)


def test_rater_lists_a_criterion_no_row_has_is_an_error(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "m.jsonl", *mindeval_rows())
    mapping = mapping_file(tmp_path, RATER_LISTS_MAPPING.replace("c2:", "C2:"))
    expect_error(
        data,
        mapping,
        f"{data}: no row's column 'scores' has criterion 'C2' (keys there: 'c1', 'c2')",
    )


def test_score_object_column_in_the_wide_layout(tmp_path: Path) -> None:
    data = jsonl(
        tmp_path / "w.jsonl",
        {"id": "d1", "rater": "x", "scores": {"Agenda": 3, "warmth": 5, "other": 1}},
        {"id": "d1", "rater": "y", "scores": json.dumps({"Agenda": "n/a", "warmth": 2})},
        {"id": "d2", "rater": "y", "scores": None},
    )
    mapping = TableMapping(
        layout="wide",
        dialogue_column="id",
        rater_column="rater",
        score_object_column="scores",
        ctrs={"Agenda": "agenda"},
        criteria={"warmth": {"min": 1, "max": 5}},
    )
    bench = import_table(data, mapping)
    got = {(r.dialogue_id, r.rater): (r.ctrs, r.criteria) for r in bench.ratings}
    assert got == {
        ("d1", "x"): ({"agenda": 3}, {"warmth": 5}),
        ("d1", "y"): ({"agenda": None}, {"warmth": 2}),
        ("d2", "y"): ({"agenda": None}, {"warmth": None}),
    }
    assert bench.ctrs_items() == ["agenda"] and bench.criteria() == ["warmth"]


def test_missing_values_apply_to_integer_jsonl_cells(tmp_path: Path) -> None:
    data = jsonl(
        tmp_path / "w.jsonl",
        {"id": "d1", "rater": "x", "agenda": -1, "homework": 0},
        {"id": "d1", "rater": "y", "agenda": 99, "homework": 4.0},
    )
    # no safety criteria: '0' clashes with no yes/no default, and wins over the score 0
    mapping = mapping_file(
        tmp_path,
        "layout: wide\nformat: jsonl\ndialogue_column: id\nrater_column: rater\n"
        "ctrs: [agenda, homework]\nmissing_values: [-1, 99, 0]\n",
    )
    bench = import_table(data, mapping)
    assert [r.ctrs for r in bench.ratings] == [
        {"agenda": None, "homework": None},
        {"agenda": None, "homework": 4},
    ]
    with_offset = mapping_file(
        tmp_path,
        "layout: wide\nformat: jsonl\ndialogue_column: id\nrater_column: rater\n"
        "ctrs: [agenda]\nscore_offset: 1\nmissing_values: [-1, 99]\n",
    )
    data = jsonl(
        tmp_path / "o.jsonl",
        {"id": "d1", "rater": "x", "agenda": -1},
        {"id": "d1", "rater": "y", "agenda": 5},
    )
    assert [r.ctrs for r in import_table(data, with_offset).ratings] == [
        {"agenda": None},
        {"agenda": 6},
    ]


def test_missing_values_before_yes_no_for_safety_cells(tmp_path: Path) -> None:
    data = write(tmp_path / "s.csv", "id,rater,Meds,Agenda\nd1,x,0,NA\nd1,y,no,3\nd2,x,Yes,\n")
    mapping = mapping_file(
        tmp_path,
        "layout: wide\ndialogue_column: id\nrater_column: rater\nctrs: {Agenda: agenda}\n"
        "safety: {Meds: medication_advice}\nnot_violated_values: ['no']\n"
        "missing_values: ['0', 'NA', '', 'false']\n",
    )
    bench = import_table(data, mapping)
    assert [(r.safety, r.ctrs) for r in bench.ratings] == [
        ({"medication_advice": None}, {"agenda": None}),
        ({"medication_advice": False}, {"agenda": 3}),
        ({"medication_advice": True}, {"agenda": None}),
    ]
    data = jsonl(
        tmp_path / "s.jsonl",
        {"id": "d1", "rater": "x", "Meds": 0, "Agenda": 2},
        {"id": "d1", "rater": "y", "Meds": False, "Agenda": 2},  # a JSON boolean: missing too
        {"id": "d2", "rater": "y", "Meds": True, "Agenda": 2},
    )
    assert [r.safety for r in import_table(data, mapping).ratings] == [
        {"medication_advice": None},
        {"medication_advice": None},
        {"medication_advice": True},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            LONG_MAPPING + "missing_values: ['0']\n",
            "'0' is in both 'not_violated_values' (its default 'no', 'false', '0') and "
            "'missing_values'; a safety cell cannot mean both",
        ),
        (
            LONG_MAPPING + "violated_values: ['y']\nmissing_values: ['Y ']\n",
            "'Y ' is in both 'violated_values' and 'missing_values'",
        ),
        (
            RATER_LISTS_MAPPING + "not_violated_values: ['no']\n",
            "'not_violated_values' spells safety answers, but the mapping has no 'safety'",
        ),
        (
            RATER_LISTS_MAPPING + "score_offset: -1\n",
            "'score_offset' shifts scores onto the CTRS 0-6 scale and applies to 'ctrs' only",
        ),
        (
            RATER_LISTS_MAPPING + "ctrs: {c1: agenda}\n",
            "criterion 'c1' is under both 'ctrs' and 'criteria'",
        ),
        (
            RATER_LISTS_MAPPING.replace("c1: {min: 1, max: 6}", "c1: {min: 6, max: 1}"),
            "field 'criteria.c1': Value error, min 6 must be below max 1",
        ),
        (
            RATER_LISTS_MAPPING.replace("c1: {min: 1, max: 6}", "c1: {low: 1}"),
            "unknown field 'criteria.c1.low'",
        ),
        (
            RATER_LISTS_MAPPING.replace("rater_list_column: raters\n", ""),
            "layout 'rater_lists' needs 'rater_list_column'",
        ),
        (
            RATER_LISTS_MAPPING + "rater_column: who\n",
            "'rater_column' does not apply to layout 'rater_lists'",
        ),
        (
            LONG_MAPPING + "score_object_column: scores\n",
            "'score_object_column' does not apply to layout 'long'",
        ),
        (
            LONG_MAPPING.replace("ctrs: {Agenda: agenda, Feedback: feedback}", "ctrs: {}").replace(
                "safety: {Crisis: crisis_unaddressed}", "safety: {}"
            ),
            "map at least one criterion under 'ctrs', 'safety' or 'criteria'",
        ),
    ],
)
def test_rater_lists_and_spellings_mapping_checks(tmp_path: Path, text: str, message: str) -> None:
    mapping = mapping_file(tmp_path, text)
    got = expect_error(write(tmp_path / "r.jsonl", "{}\n"), mapping, message)
    assert got.startswith(f"table mapping {mapping}")


# --- free criteria in the bench format -------------------------------------------------

OLD_BENCH = """\
{"dialogue_id": "d1", "rater": "a", "transcript": [{"speaker": "patient", "text": "hi"}], \
"ctrs": {"agenda": 3, "homework": null}, "safety": {"medication_advice": false}}
{"dialogue_id": "d1", "rater": "b", "ctrs": {"agenda": 4}, "quality": "high"}
"""


def test_a_bench_written_before_free_criteria_keeps_its_digest(tmp_path: Path) -> None:
    # c7b7583d9192 is what the reader of db4a050 (before free criteria) gave this file:
    # the calibration run id follows the digest, so old runs must still be found.
    bench = read_bench_jsonl(write(tmp_path / "old.jsonl", OLD_BENCH))
    assert bench.digest == "c7b7583d9192"
    assert bench.criteria() == [] and bench.scales == {}


FREE_BENCH = """\
{"dialogue_id": "m1", "rater": "r1", "criteria": {"c2": 3, "c1": 4}, \
"scales": {"c1": {"min": 1, "max": 6}}}
{"dialogue_id": "m1", "rater": "r2", "criteria": {"c1": 6, "c2": null}}
{"dialogue_id": "m2", "rater": "r2", "criteria": {"c1": 2, "c2": 5}, \
"scales": {"c1": {"min": 1, "max": 6}}}
{"dialogue_id": "m2", "rater": "gpt", "rater_kind": "model", "criteria": {"c3": 1, "c2": 9}}
"""


def test_bench_with_free_criteria_and_scales(tmp_path: Path) -> None:
    bench = read_bench_jsonl(write(tmp_path / "free.jsonl", FREE_BENCH))
    assert bench.criteria() == ["c1", "c2"]  # declared first; c3 only a model scored
    assert bench.scale("c1") == (1, 6)
    assert bench.scale("c2") == (3, 9)  # undeclared: the range of the scores given
    assert bench.scale("c4") is None
    assert bench.summary()["ratings"] == 4 and bench.raters("model") == ["gpt"]
    assert bench.subset(1, seed=0).scales == bench.scales
    path = tmp_path / "again.jsonl"
    write_bench_jsonl(bench, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["scales"] == {"c1": {"min": 1, "max": 6}}
    assert not any("scales" in line for line in lines[1:])
    assert read_bench_jsonl(path).digest == bench.digest
    without = read_bench_jsonl(
        write(tmp_path / "n.jsonl", FREE_BENCH.replace('"min": 1', '"min": 0'))
    )
    assert without.digest != bench.digest  # a scale is part of what the bench says


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"c1": 6, "c2": null',
            '"c1": 7, "c2": null',
            "line 2: field 'criteria.c1': score 7 is "
            "off the scale; expected a whole number from 1 to 6",
        ),
        (
            '"c1": 2, "c2": 5}, "scales": {"c1": {"min": 1',
            '"c1": 2, "c2": 5}, "scales": {"c1": {"min": 0',
            "line 3: field 'scales.c1': 0-6 here but 1-6 at line 1",
        ),
        ('"c1": 6, "c2": null', '"c1": 4.5, "c2": null', "line 2: field 'criteria.c1'"),
        ('"c1": 6, "c2": null', '"c1": true, "c2": null', "line 2: field 'criteria.c1'"),
        (
            '"max": 6}}}\n{"dialogue_id": "m1"',
            '"max": 1}}}\n{"dialogue_id": "m1"',
            "line 1: field 'scales.c1': Value error, min 1 must be below max 1",
        ),
        (
            '"scales": {"c1": {"min": 1, "max": 6}}}\n{"dialogue_id": "m1"',
            '"scales": [1, 6]}\n{"dialogue_id": "m1"',
            "line 1: field 'scales'",
        ),
        ('"criteria": {"c2": 3, "c1": 4}', '"criteria": {"": 3, "c1": 4}', "line 1: field"),
    ],
)
def test_bad_free_criteria_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in FREE_BENCH
    path = write(tmp_path / "free.jsonl", FREE_BENCH.replace(old, new, 1))
    with pytest.raises(BenchError) as err:
        read_bench_jsonl(path)
    assert str(err.value).startswith(f"{path}, ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_the_documented_mindeval_mapping_reads_a_mindeval_shaped_file(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "calibration.md"
    blocks = re.findall(r"```yaml\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
    mapping = next(b for b in blocks if "layout: rater_lists" in b)
    criteria = [f"c{n}" for n in range(1, 7)]
    rows = [
        {
            "conversation_id": f"conv-{n}",
            "raters": raters,
            "scores": {
                c: [(n + k + i) % 6 + 1 for k in range(len(raters))] for i, c in enumerate(criteria)
            },
            "conversation": TURNS,
        }
        for n, raters in enumerate([["r2", "r1", "r4", "r3"], ["r1", "r3", "r2"]])
    ]
    data = jsonl(tmp_path / "mindeval.jsonl", *rows)
    bench = import_table(data, mapping_file(tmp_path, mapping))
    assert bench.criteria() == criteria and bench.scale("c1") == (1, 6)
    assert bench.summary()["multiply_rated_dialogues"] == 2

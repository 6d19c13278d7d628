"""Importers: the public datasets (skipped when ../shared/datasets is absent) and the
generic table importer on small files written here, errors included."""

from __future__ import annotations

import json
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

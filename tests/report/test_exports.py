"""Exports of transcripts, scores and per-session scores; the Hugging Face folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from report_store import ITEMS, LABELS, RATIONALE_HTML, RUN

from therapygym.errors import TherapygymError
from therapygym.records import ScoreRecord
from therapygym.report.exports import (
    EXPORT_FORMATS,
    FileFormat,
    check_export_options,
    counted,
    export_run,
    export_transcripts,
    read_transcripts_jsonl,
    score_rows,
)
from therapygym.store import RunStore
from therapygym.summary import summarise


def test_scores_in_every_format(store_path: Path, tmp_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    records = store.scores(RUN)
    n = export_run(store, RUN, tmp_path / "s.jsonl", "jsonl", "scores")
    # per finished session: ctrs, safety, one response record per therapist turn (3); and
    # two failed check-question judgements
    assert n == len(records) == 8 * (1 + 1 + 3) + 2
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert [ScoreRecord.model_validate_json(x) for x in lines] == records  # exactly as stored

    rows = score_rows(records, store.sessions(RUN))
    # per session: 11 items, every label, 3 therapist turns x 2 response dimensions
    assert len(rows) == 8 * (11 + len(LABELS) + 3 * 2) + 2
    agenda = next(r for r in rows if r["key"] == "agenda" and r["therapist"] == "bot-a")
    assert agenda["score"] in (3.0, 4.0, 5.0) and agenda["rationale"] == RATIONALE_HTML
    assert len(agenda["evidence"]) == 2 and agenda["evidence"][0].endswith(":3")
    crisis = [r for r in rows if r["key"] == "crisis_unaddressed" and r["verdict"] == "yes"]
    assert len(crisis) == 2 and {r["severity"] for r in crisis} == {"high"}
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 2 and all(r["key"] is None for r in failed)

    for fmt in ("csv", "parquet"):
        out = tmp_path / f"s.{fmt}"
        export_run(store, RUN, out, fmt, "scores")
        frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert len(frame) == len(rows)
        first = frame[frame["key"] == "agenda"].iloc[0]
        evidence = first["evidence"]
        if fmt == "csv":
            assert evidence.count(";") == 1  # lists are ;-joined in CSV
        else:
            assert len(evidence) == 2
        assert set(frame["rubric_id"]) == {"ctrs", "safety", "response", "check"}


def test_session_rows_carry_the_combined_scores(store_path: Path, tmp_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    summary = {s.session_id: s for s in summarise(store, RUN).sessions}
    for fmt in ("csv", "parquet", "jsonl"):
        out = tmp_path / f"x.{fmt}"
        assert export_run(store, RUN, out, fmt, "sessions") == 9
        if fmt == "jsonl":
            frame = pd.DataFrame([json.loads(x) for x in out.read_text().splitlines()])
        else:
            frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert len(frame) == 9
        assert {f"ctrs_{i}" for i in ITEMS} <= set(frame.columns)
        assert {f"safety_{lb}" for lb in LABELS} <= set(frame.columns)
        for _, row in frame.iterrows():
            s = summary.get(row["session_id"])
            if s is None:
                assert row["status"] == "failed" and pd.isna(row["ctrs_total"])
                continue
            assert row["ctrs_total"] == s.ctrs_total
            assert row["ctrs_agenda"] == s.ctrs_items["agenda"].value
            assert row["safety_crisis_unaddressed"] == s.safety["crisis_unaddressed"].verdict


def test_transcripts_export_still_round_trips(store_path: Path, tmp_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    assert export_run(store, RUN, tmp_path / "t.jsonl", "jsonl") == 9
    assert read_transcripts_jsonl(tmp_path / "t.jsonl") == list(store.sessions(RUN))


def check_hf_folder(folder: Path) -> None:
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nconfigs:\n- config_name: sessions\n  default: true\n")
    assert "path: data/scores.parquet" in card and "# therapygym run `r1`" in card
    sessions = pq.read_table(folder / "data" / "sessions.parquet")
    assert sessions.num_rows == 9
    row = sessions.to_pylist()[0]
    assert row["messages"][0] == {"role": "user", "content": row["turns"][0]["text"]}
    assert row["messages"][1]["role"] == "assistant"
    assert pq.read_table(folder / "data" / "turns.parquet").num_rows == 8 * 6 + 1
    assert (
        pq.read_table(folder / "data" / "scores.parquet").num_rows
        == 8 * (11 + len(LABELS) + 3 * 2) + 2
    )


def test_hf_folder(store_path: Path, tmp_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    folder = tmp_path / "hf"
    assert export_run(store, RUN, folder, "hf") == 9
    check_hf_folder(folder)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert folder.stat().st_mode & 0o777 == 0o700
    with pytest.raises(TherapygymError, match="not an empty folder"):
        export_run(store, RUN, folder, "hf")
    (tmp_path / "empty").mkdir()
    export_run(store, RUN, tmp_path / "empty", "hf")
    check_hf_folder(tmp_path / "empty")


def test_hf_folder_loads_with_datasets(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets: Any = pytest.importorskip("datasets")
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    folder = tmp_path / "hf"
    export_run(RunStore(store_path, read_only=True), RUN, folder, "hf")
    # its own cache: datasets reads HF_HOME when first imported, and its cache key for a
    # local folder named "hf" ignores the files' content, so a shared cache serves stale rows
    cache = str(tmp_path / "hf-cache")
    sessions = datasets.load_dataset(str(folder), split="train", cache_dir=cache)  # default
    assert sessions.num_rows == 9 and "ctrs_total" in sessions.column_names
    first = sessions[0]
    assert first["messages"][0] == {"role": "user", "content": first["turns"][0]["text"]}
    scores = datasets.load_dataset(str(folder), "scores", split="train", cache_dir=cache)
    assert scores.num_rows == 8 * (11 + len(LABELS) + 3 * 2) + 2
    assert set(scores.unique("rubric_id")) == {"ctrs", "safety", "response", "check"}
    turns = datasets.load_dataset(str(folder), "turns", split="train", cache_dir=cache)
    assert turns.num_rows == 49 and turns[0]["turn_id"].endswith(":0")


def test_bad_format_or_content(store_path: Path, tmp_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    with pytest.raises(TherapygymError, match="--format 'xml'"):
        export_run(store, RUN, tmp_path / "x", "xml")
    with pytest.raises(TherapygymError, match="--content 'all'"):
        export_run(store, RUN, tmp_path / "x", "csv", "all")  # type: ignore[arg-type]
    with pytest.raises(TherapygymError, match="no run 'nope'"):
        export_run(store, "nope", tmp_path / "x", "csv")
    # the built-in formats first, then any a plug-in registers
    with pytest.raises(TherapygymError, match=r"expected jsonl, csv, parquet, hf, preference"):
        check_export_options("xml", "transcripts")


def test_a_new_format_is_one_writer_and_one_registration(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write_tsv(rows: list[dict[str, Any]], path: Path) -> None:
        pd.DataFrame(rows).to_csv(path, sep="\t", index=False)

    monkeypatch.setattr(EXPORT_FORMATS, "_entries", dict(EXPORT_FORMATS._entries))
    EXPORT_FORMATS.register("tsv", FileFormat("tsv", "tab-separated rows", write_tsv))
    store = RunStore(store_path, read_only=True)
    for content in ("transcripts", "scores", "sessions"):
        out = tmp_path / f"{content}.tsv"
        n = export_run(store, RUN, out, "tsv", content)  # type: ignore[arg-type]
        assert n > 0 and len(pd.read_csv(out, sep="\t")) > 0
    assert (counted("tsv", "scores"), counted("hf", "scores")) == ("score records", "sessions")


def test_one_file_formats_refuse_the_folder_format(tmp_path: Path) -> None:
    with pytest.raises(TherapygymError, match="export format 'hf' writes a folder"):
        export_transcripts([], tmp_path / "t", "hf")

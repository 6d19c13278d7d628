"""Exports streamed in batches write what the unbatched export wrote: the same CSV and
JSONL bytes, the same Parquet tables, the same Hugging Face folder, for a run of more
sessions (and score records) than one batch, with the gaps and the CTRS versions that
make a batch differ from the whole run (many_sessions.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from many_sessions import build_many
from report_store import RUN

from therapygym.report import exports
from therapygym.report.exports import (
    _dataset_card,
    _score_table,
    _session_hf_rows,
    _session_schema,
    _turn_table,
    export_run,
    score_rows,
    session_score_rows,
    turn_rows,
)
from therapygym.store import RunStore
from therapygym.summary import summary_of


@pytest.fixture
def many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunStore:
    """A store of 50 sessions read 7 sessions (and their score records) at a time."""
    path = tmp_path / "many.sqlite"
    assert build_many(path) == 50
    monkeypatch.setattr(exports, "SESSION_BATCH", 7)
    return RunStore(path, read_only=True)


def unbatched_rows(store: RunStore) -> dict[str, list[dict[str, Any]]]:
    """Each content's rows as the export made them before it streamed: from the whole
    run at once."""
    heads = store.session_heads(RUN)
    records = store.scores(RUN)
    summary = summary_of(RUN, heads, records, "mean")
    return {
        "transcripts": turn_rows(list(store.sessions(RUN))),
        "scores": score_rows(records, heads),
        "sessions": session_score_rows(heads, summary.sessions),
    }


def unbatched_file(rows: list[dict[str, Any]], fmt: str, path: Path) -> None:
    """The file the unbatched export wrote (its code, as it was)."""
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif fmt == "csv":
        flat = [{k: ";".join(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows]
        pd.DataFrame(flat).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path, index=False)


def test_the_run_spans_several_batches_and_versions(many: RunStore) -> None:
    rows = unbatched_rows(many)
    assert len(rows["sessions"]) == 50 > exports.SESSION_BATCH
    # the newest CTRS version is in the last samples only: the rest have no CTRS numbers
    totals = [r["ctrs_total"] for r in rows["sessions"]]
    assert sum(t is not None for t in totals) == 8 and None in totals
    gap = next(r for r in rows["transcripts"] if r["session_id"] == "zz-no-turns")
    assert gap["turn_index"] is None and gap["profile_version"] is None


@pytest.mark.parametrize("content", ["transcripts", "scores", "sessions"])
def test_csv_and_jsonl_are_the_same_bytes(many: RunStore, tmp_path: Path, content: str) -> None:
    rows = unbatched_rows(many)[content]
    for fmt in ("csv", "jsonl"):
        if fmt == "jsonl" and content != "sessions":
            continue  # transcripts and scores in JSONL are the stored records, never rows
        ours, theirs = tmp_path / f"ours.{fmt}", tmp_path / f"theirs.{fmt}"
        export_run(many, RUN, ours, fmt, content)  # type: ignore[arg-type]
        unbatched_file(rows, fmt, theirs)
        assert ours.read_bytes() == theirs.read_bytes(), (content, fmt)


@pytest.mark.parametrize("content", ["transcripts", "scores", "sessions"])
def test_parquet_is_the_same_table(many: RunStore, tmp_path: Path, content: str) -> None:
    rows = unbatched_rows(many)[content]
    ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
    n = export_run(many, RUN, ours, "parquet", content)  # type: ignore[arg-type]
    unbatched_file(rows, "parquet", theirs)
    assert pq.read_schema(ours).remove_metadata() == pq.read_schema(theirs).remove_metadata()
    pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(theirs))
    assert pq.ParquetFile(ours).num_row_groups > 1  # written a batch at a time
    assert n == (len(many.scores(RUN)) if content == "scores" else 50)


def test_jsonl_records_stream_in_order(many: RunStore, tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    assert export_run(many, RUN, out, "jsonl", "scores") == len(many.scores(RUN))
    lines = out.read_text().splitlines()
    assert lines == [r.model_dump_json() for r in many.scores(RUN)]


def test_hf_folder_is_the_same_dataset(many: RunStore, tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    assert export_run(many, RUN, folder, "hf") == 50
    transcripts = list(many.sessions(RUN))
    records = many.scores(RUN)
    summary = summary_of(RUN, transcripts, records, "mean")
    flat = _session_hf_rows(transcripts, summary.sessions)
    import pyarrow as pa

    expected = {
        "sessions": pa.Table.from_pylist(flat, schema=_session_schema(list(flat[0]))),
        "turns": _turn_table(transcripts),
        "scores": _score_table(records, transcripts),
    }
    for name, table in expected.items():
        got = pq.read_table(folder / "data" / f"{name}.parquet")
        assert got.equals(table), name
    counts = {name: table.num_rows for name, table in expected.items()}
    card = _dataset_card(RUN, sorted({r.judge for r in records}), counts)
    assert (folder / "README.md").read_text() == card


def test_an_empty_run_exports_as_before(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "empty.sqlite")
    store.ensure_run("r0", {"therapists": []})
    for fmt in ("csv", "parquet"):
        for content in ("transcripts", "scores", "sessions"):
            ours, theirs = tmp_path / f"ours.{fmt}", tmp_path / f"theirs.{fmt}"
            assert export_run(store, "r0", ours, fmt, content) == 0  # type: ignore[arg-type]
            unbatched_file([], fmt, theirs)
            if fmt == "csv":
                assert ours.read_bytes() == theirs.read_bytes()
            else:
                pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(theirs))
    assert export_run(store, "r0", tmp_path / "hf", "hf") == 0
    assert pq.read_table(tmp_path / "hf" / "data" / "sessions.parquet").num_rows == 0

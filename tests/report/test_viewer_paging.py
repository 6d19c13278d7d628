"""The viewer's session list, read from the store a page at a time: every session on
exactly one page, in the run's order, with the filters of the viewer that held the whole
run (its `SessionView.matches`, the oracle here) and the scores the run's summary gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from many_sessions import build_many
from report_store import RUN
from test_viewer import get

from therapygym.report import viewer as viewer_module
from therapygym.report.data import run_data
from therapygym.report.viewer import SessionRow, ViewerData, ViewerServer
from therapygym.store import RunStore
from therapygym.summary import summarise

SELECTIONS = [
    {},
    {"therapist": "bot-a"},
    {"patient": "gad-01-priya"},
    {"status": "failed"},
    {"therapist": "rule-based", "patient": "dep-02-emeka", "status": "completed"},
    {"label": "any"},
    {"label": "crisis_unaddressed", "therapist": "rule-based"},
    {"label": "any", "therapist": "bot-a"},
    {"label": "no_such_label"},
    {"therapist": "nobody"},
]


@pytest.fixture
def many_path(tmp_path: Path) -> Path:
    path = tmp_path / "many.sqlite"
    build_many(path)
    return path


def every_page(data: ViewerData, selected: dict[str, str], per_page: int) -> list[SessionRow]:
    rows: list[SessionRow] = []
    page = data.page(RUN, selected, 1, per_page)
    while True:
        assert page.total >= len(rows) + len(page.rows)
        rows += page.rows
        if page.page >= page.pages:
            return rows
        page = data.page(RUN, selected, page.page + 1, per_page)


def test_pages_hold_every_session_once_in_order(many_path: Path) -> None:
    store = RunStore(many_path, read_only=True)
    data = ViewerData(store)
    whole = run_data(store, RUN).sessions  # what the viewer held before it paged
    for selected in SELECTIONS:
        expected = [sv.transcript.session_id for sv in whole if sv.matches(**selected)]
        for per_page in (1, 7, 50, 1000):
            rows = every_page(data, selected, per_page)
            assert [r.head.session_id for r in rows] == expected, (selected, per_page)
            assert data.page(RUN, selected, 1, per_page).total == len(expected)
    assert len(whole) == 50  # the filters above cut it several ways, none empty by accident
    assert len([sv for sv in whole if sv.matches(label="any")]) == 12


def test_page_rows_carry_the_summary_scores(many_path: Path) -> None:
    store = RunStore(many_path, read_only=True)
    summary = {s.session_id: s for s in summarise(store, RUN).sessions}
    rows = every_page(ViewerData(store), {}, 7)
    assert {r.head.session_id for r in rows if r.scores} == set(summary)
    for row in rows:
        if row.scores is not None:
            assert row.scores == summary[row.head.session_id]
    # the run's newest CTRS version is read on every page, not each page's own
    assert sum(r.scores.ctrs_total is not None for r in rows if r.scores) == 8


def test_pages_over_http(many_path: Path) -> None:
    with ViewerServer(many_path) as v:
        status, _, html = get(v.url + f"runs/{RUN}?per_page=7&page=2")
        assert status == 200 and html.count('class="session-link"') == 7
        assert "50 of 50 sessions; 8–14 on page 2 of 8" in html
        assert 'class="page-next" rel="next" href="/runs/r1?page=3&amp;per_page=7#sessions"' in html
        assert 'class="page-prev" rel="prev" href="/runs/r1?page=1&amp;per_page=7#sessions"' in html
        _, _, html = get(v.url + f"runs/{RUN}?therapist=bot-a&label=any")
        assert "0 of 50 sessions" in html and 'class="page-next"' not in html
        status, _, body = get(v.url + f"api/runs/{RUN}/sessions?label=any&per_page=5&page=3")
        data = json.loads(body)
        assert status == 200 and (data["total"], data["pages"], len(data["sessions"])) == (12, 3, 2)
        status, headers, body = get(v.url + f"api/runs/{RUN}")  # streamed, with `run` added
        store = RunStore(many_path, read_only=True)
        expected_summary = json.loads(summarise(store, RUN).to_json())
        expected_summary["run"] = store.run(RUN).model_dump(mode="json")
        assert status == 200 and json.loads(body) == expected_summary
        assert (
            headers["X-Content-Type-Options"] == "nosniff"
            and headers["Cache-Control"] == "no-store"
        )
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        for query, expected in [
            ("page=0", "?page='0': expected a whole number from 1"),
            ("per_page=5000", "?per_page='5000': expected a whole number from 1 up to 1000"),
            ("page=x", "?page='x'"),
        ]:
            status, _, body = get(v.url + f"api/runs/{RUN}/sessions?{query}")
            assert status == 400 and expected in json.loads(body)["error"]
            status, _, page = get(v.url + f"runs/{RUN}?{query}")
            assert status == 400 and "expected a whole number" in page


def test_the_leaderboard_never_holds_up_the_sessions(
    many_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(viewer_module, "SMALL_RUN", 0)  # no run is small enough to wait for
    with ViewerServer(many_path) as v:
        status, _, html = get(v.url + f"runs/{RUN}")
        assert status == 200 and 'id="leaderboard-table"' not in html
        assert "being computed" in html and html.count('class="session-link"') == 50
        _, _, html = get(v.url + f"runs/{RUN}?label=any")  # the label filter reads the summary
        assert "Filtering by a safety label reads the run" in html
        assert 'class="session-link"' not in html
        status, _, body = get(v.url + f"api/runs/{RUN}")  # the JSON waits for the numbers
        assert status == 200 and {t["therapist"] for t in json.loads(body)["therapists"]} == {
            "bot-a",
            "rule-based",
        }
        _, _, html = get(v.url + f"runs/{RUN}")  # computed now, for this store version
        assert 'id="leaderboard-table"' in html and "being computed" not in html
        _, _, html = get(v.url + f"runs/{RUN}?label=any")
        assert html.count('class="session-link"') == 12 and "Filtering by" not in html

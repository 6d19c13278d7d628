"""The viewer over HTTP: pages, filters, JSON, read-only, loopback only, escaped."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_store import RATIONALE_HTML, RUN, SCRIPT, scores_for, transcript

from therapygym.report.viewer import ViewerError, ViewerServer
from therapygym.store import RunStore, StoreError


@pytest.fixture
def viewer(store_path: Path) -> Iterator[ViewerServer]:
    with ViewerServer(store_path) as v:
        yield v


def get(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_binds_loopback_and_serves_pages(viewer: ViewerServer, store_path: Path) -> None:
    assert viewer.url.startswith("http://127.0.0.1:")
    status, headers, html = get(viewer.url)
    assert status == 200 and f'href="/runs/{RUN}"' in html and str(store_path) in html
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"

    status, _, run = get(viewer.url + f"runs/{RUN}")
    assert status == 200 and 'id="leaderboard-table"' in run and 'id="chart-safety"' in run
    assert run.count('class="session-link"') == 9 and "9 of 9 sessions" in run


def test_filters(viewer: ViewerServer) -> None:
    def links(query: str) -> int:
        status, _, html = get(viewer.url + f"runs/{RUN}?{query}")
        assert status == 200
        return html.count('class="session-link"')

    assert links("therapist=bot-a") == 5
    assert links("patient=gad-01-priya") == 4
    assert links("label=crisis_unaddressed") == 2 and links("label=any") == 2
    assert links("therapist=bot-a&label=any") == 0
    assert links("status=failed") == 1
    _, _, html = get(viewer.url + f"runs/{RUN}?therapist=rule-based")
    assert '<option value="rule-based" selected>' in html and "4 of 9 sessions" in html
    status, _, body = get(viewer.url + f"api/runs/{RUN}/sessions?label=any")
    rows = json.loads(body)["sessions"]
    assert status == 200 and len(rows) == 2
    assert all(r["violated"] == ["crisis_unaddressed"] for r in rows)


def test_session_page_escapes_text_and_links_evidence(
    viewer: ViewerServer, store_path: Path
) -> None:
    store = RunStore(store_path, read_only=True)
    sid = next(t.session_id for t in store.sessions(RUN) if any(SCRIPT in x.text for x in t.turns))
    status, _, html = get(viewer.url + f"sessions/{sid}")
    assert status == 200
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert RATIONALE_HTML not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert html.count("<script") == 1
    assert f'class="evidence" href="#turn-{sid}-3"' in html
    assert f'<li id="turn-{sid}-3" class="turn therapist cited"' in html

    status, _, body = get(viewer.url + f"api/sessions/{sid}")
    data = json.loads(body)
    assert status == 200 and data["transcript"]["session_id"] == sid
    assert {r["rubric_id"] for r in data["scores"]} == {"ctrs", "safety", "response"}


def test_read_only_get_only_and_loopback_only(viewer: ViewerServer, store_path: Path) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = get(viewer.url + f"runs/{RUN}", method=method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, _ = get(viewer.url, headers={"Host": "attacker.example"})
    assert status == 421  # a DNS-rebinding page gets nothing
    status, _, _ = get(viewer.url.replace("127.0.0.1", "localhost"))
    assert status == 200
    with pytest.raises(Exception, match="readonly"):
        viewer.store._db.execute("DELETE FROM runs")


def test_unknown_things_are_404(viewer: ViewerServer) -> None:
    status, _, html = get(viewer.url + "runs/nope")
    assert status == 404 and "no run &#39;nope&#39;" in html
    assert get(viewer.url + "sessions/nope")[0] == 404
    assert get(viewer.url + "nothing/here")[0] == 404
    status, _, body = get(viewer.url + "api/runs/nope")
    assert status == 404 and "no run 'nope'" in json.loads(body)["error"]


def test_new_scores_show_on_reload(viewer: ViewerServer, store_path: Path) -> None:
    before = get(viewer.url + f"runs/{RUN}")[2]
    writer = RunStore(store_path)
    t = transcript("gad-01-priya", "newcomer", 0)
    writer.save_session(t)
    for unit in scores_for(t):
        writer.save_scores(unit)
    writer.close()
    after = get(viewer.url + f"runs/{RUN}")[2]
    assert "newcomer" not in before and "newcomer" in after
    assert after.count('class="session-link"') == 10


def test_start_errors(store_path: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        ViewerServer(tmp_path / "absent.sqlite")
    with (
        ViewerServer(store_path) as first,
        pytest.raises(ViewerError, match="pick another --port"),
    ):
        ViewerServer(store_path, port=first.port).start()

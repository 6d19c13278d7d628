"""A real browser (Debian's headless Chromium, driven by Playwright) loads the report and
the viewer, opens a transcript, follows a judge's evidence link to the turn it cites, and
saves a screenshot; the page logs no console error, raises no script error, opens no
dialog and asks no other address for anything."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from report_store import RATIONALE_HTML, RUN, SCRIPT

from therapygym.report.data import session_anchor, turn_anchor
from therapygym.report.html import write_report
from therapygym.report.viewer import ViewerServer
from therapygym.store import RunStore

HIGHLIGHT = "rgb(255, 241, 168)"  # li.turn.active in report.css


@dataclass
class Watched:
    page: Any
    problems: list[str] = field(default_factory=list)


@pytest.fixture
def watched(browser: Any) -> Iterator[Any]:
    """`watched(allowed_prefix)` -> a page whose console errors, script errors, dialogs and
    requests outside `allowed_prefix` are recorded as problems (and such requests fail)."""
    contexts = []

    def open_page(allowed: str) -> Watched:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        w = Watched(page)

        def on_console(message: Any) -> None:
            if message.type == "error":
                w.problems.append(f"console error: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: w.problems.append(f"page error: {e}"))

        def on_dialog(dialog: Any) -> None:
            w.problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)

        def route(r: Any) -> None:
            if r.request.url.startswith(allowed):
                r.continue_()
            else:
                w.problems.append(f"request: {r.request.url}")
                r.abort()

        context.route("**/*", route)
        return w

    yield open_page
    for context in contexts:
        context.close()


def script_session(store_path: Path) -> str:
    store = RunStore(store_path, read_only=True)
    sid = next(t.session_id for t in store.sessions(RUN) if any(SCRIPT in x.text for x in t.turns))
    store.close()
    return sid


def follow_evidence(page: Any, sid: str, tmp_path: Path, shot: str) -> None:
    """Click the CTRS agenda rating's first evidence link; the cited turn is highlighted."""
    target = turn_anchor(sid, 3)
    session = page.locator(f"#{session_anchor(sid)}")
    link = session.locator(f'table.judged.ctrs a.evidence[href="#{target}"]').first
    link.scroll_into_view_if_needed()
    link.click()
    page.wait_for_function(f"location.hash === '#{target}'")
    turn = page.locator(f"#{target}")
    page.wait_for_function(f"document.getElementById('{target}').classList.contains('active')")
    assert "cited" in (turn.get_attribute("class") or "")
    assert turn.evaluate("el => el.matches(':target')")
    assert turn.is_visible() and turn.evaluate(
        "el => { const r = el.getBoundingClientRect();"
        " return r.bottom > 0 && r.top < window.innerHeight; }"
    )
    assert turn.evaluate("el => getComputedStyle(el).backgroundColor") == HIGHLIGHT
    # the rating that cites this turn is listed on it, linking back to the rating
    assert "CTRS: 1. Agenda" in turn.locator("ul.citations").inner_text()
    # model text is text: the therapist's script tag is shown, not run
    assert turn.locator(".turn-text").inner_text() == f"Try this: {SCRIPT} & breathe"
    assert page.locator("script").count() == 1
    rationale = session.locator("table.judged.ctrs td.rationale").first
    assert rationale.inner_text() == RATIONALE_HTML and rationale.locator("*").count() == 0
    path = tmp_path / shot
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000


def test_report_in_a_browser(watched: Any, store_path: Path, tmp_path: Path) -> None:
    report = write_report(RunStore(store_path, read_only=True), RUN, tmp_path / "report.html")
    w = watched("file://")
    page = w.page
    page.goto(report.as_uri())
    rows = page.locator("#leaderboard-table tbody tr")
    assert rows.count() == 2 and "bot-a" in rows.first.inner_text()
    assert page.locator("figure.chart svg").count() == 3

    # the client-side filter of the sessions table
    page.select_option("form.client-filter select[name=therapist]", "rule-based")
    visible = page.locator("#sessions-table tbody tr:visible")
    assert visible.count() == 4
    page.select_option("form.client-filter select[name=label]", "any")
    assert visible.count() == 2
    page.select_option("form.client-filter select[name=therapist]", "")
    page.select_option("form.client-filter select[name=label]", "")
    assert visible.count() == 9

    sid = script_session(store_path)
    details = page.locator(f"#{session_anchor(sid)}")
    assert details.get_attribute("open") is None
    page.click(f'a.session-link[href="#{session_anchor(sid)}"]')
    page.wait_for_function(f"document.getElementById('{session_anchor(sid)}').open")
    assert details.locator("ol.transcript li.turn").count() == 6
    follow_evidence(page, sid, tmp_path, "report.png")
    assert w.problems == []


def test_viewer_in_a_browser(watched: Any, store_path: Path, tmp_path: Path) -> None:
    sid = script_session(store_path)
    with ViewerServer(store_path) as viewer:
        w = watched(viewer.url)
        page = w.page
        page.goto(viewer.url)
        page.click("a.run-link")
        page.wait_for_url(f"**/runs/{RUN}")
        assert page.locator("#leaderboard-table tbody tr").count() == 2

        page.select_option("form.filters select[name=therapist]", "bot-a")
        page.select_option("form.filters select[name=patient]", "gad-01-priya")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**therapist=bot-a**")
        assert page.locator("#sessions-table tbody tr").count() == 2

        page.click(f'a.session-link[href="/sessions/{sid}"]')
        page.wait_for_url(f"**/sessions/{sid}")
        assert page.locator("ol.transcript li.turn").count() == 6
        follow_evidence(page, sid, tmp_path, "viewer.png")
        page.click("a.back-to-run")
        page.wait_for_url(f"**/runs/{RUN}")
    assert w.problems == []

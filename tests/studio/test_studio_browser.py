"""The rating studio in a real browser (Debian's headless Chromium driven by Playwright, as
tests/report/test_browser.py does; skipped with the reason when either is absent): a rater
rates a whole session with the keyboard alone and submits it (the time it took is
printed); a reload halfway through shows every score, evidence turn and note again; a
second rater is refused the first one's session and never sees their scores; the admin's
adjudication opens only once both raters submitted, with the differing items
highlighted, and saves a consensus; and an export of ratings entered over HTTP gives,
through `calibrate --humans-only`, the figures computed here by hand.

The studio's Content-Security-Policy forbids eval, so waits use `expect(...)` locators,
never `page.wait_for_function("...")`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clirun import cli, subprocess_cli
from studio_http import ITEMS, LABELS, Client, build_store, full_rating, make_study

from therapygym.studio.ratings import Studio
from therapygym.studio.server import StudioServer
from therapygym.studio.study import CreatedStudy, login_link

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [  # as tests/report/conftest.py launches it
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STUDY = "pilot"
N_ITEMS = len(ITEMS) + len(LABELS)
NOTE = "Sets the agenda only after the patient asks; see turn 2."
DIFFERING_NOTE = "bob-note-41z"  # bob's note on an item alice scored differently


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: `apt-get install chromium` (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def expect() -> Any:
    return pytest.importorskip("playwright.sync_api").expect


@dataclass
class Studied:
    """A served study: alice and bob share two of four sessions and have one each."""

    path: Path
    created: CreatedStudy
    server: StudioServer
    browser: Any
    problems: list[str]

    @property
    def base(self) -> str:
        return self.server.url.rstrip("/")

    def sessions(self, rater: str) -> list[str]:
        studio = Studio(self.path)
        try:
            return [a.session_id for a in studio.assignments(STUDY, rater)]
        finally:
            studio.close()

    def ratings(self, rater: str, session_id: str) -> dict[str, Any]:
        studio = Studio(self.path)
        try:
            return studio.ratings(STUDY, rater, session_id)
        finally:
            studio.close()

    def url(self, *parts: str) -> str:
        return "/".join([self.base, "s", STUDY, *parts])

    def rate_url(self, session_id: str) -> str:
        return self.url("a", self.server.ref(STUDY, session_id))

    def page(self, who: str) -> Any:
        """A fresh browser (its own cookies) logged in through `who`'s link; any console
        error, script error, dialog or request elsewhere is recorded as a problem."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and "403" not in m.text  # the refusals a test asks for are logged as such
                and "409" not in m.text
                and self.problems.append(f"{who}: console error: {m.text}")
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"{who}: page error: {e}"))
        page.on("dialog", lambda d: (self.problems.append(f"{who}: dialog"), d.dismiss()))

        def route(r: Any) -> None:
            if r.request.url.startswith(self.base):
                r.continue_()
            else:
                self.problems.append(f"{who}: request to {r.request.url}")
                r.abort()

        context.route("**/*", route)
        token = self.created.admin_token if who == "admin" else self.created.tokens[who]
        assert self.server.port is not None
        page.goto(login_link("127.0.0.1", self.server.port, STUDY, token))
        page.wait_for_url(self.url(""))
        assert token not in page.url
        return page

    def client(self, who: str) -> Client:
        c = Client(self.base, study=STUDY)
        assert c.login(self.created.tokens[who]).status == 200
        return c


@pytest.fixture
def studied(tmp_path: Path, browser: Any) -> Iterator[Studied]:
    path = tmp_path / "store.sqlite"
    build_store(path, samples=1)  # 4 sessions of 6 turns
    created = make_study(path, ("alice", "bob"), double=0.5)
    with StudioServer(path) as server:
        s = Studied(path, created, server, browser, [])
        yield s
        assert s.problems == []


def focus_with(page: Any, target: Any, key: str = "Tab", limit: int = 80) -> int:
    """Press `key` until `target` has the focus; how many presses it took."""
    for presses in range(limit + 1):
        if target.evaluate("el => el === document.activeElement"):
            return presses
        page.keyboard.press(key)
    raise AssertionError(f"{limit} x {key} never reached {target}")


def item(page: Any, key: str) -> Any:
    return page.locator(f'section.item[data-item="{key}"]')


def answer_key(key: str, k: int) -> str:
    """The key a rater presses for the `k`th item rated: CTRS scores 0-6 in turn; the
    safety labels "not violated", but the second violated and the third not applicable."""
    if key.startswith("ctrs:"):
        return str(k % 7)
    return {1: "y", 2: "a"}.get(LABELS.index(key), "n")


def expected(key: str, k: int) -> tuple[int | None, bool]:
    pressed = answer_key(key, k)
    verdicts: dict[str, tuple[int | None, bool]] = {
        "y": (1, False),
        "n": (0, False),
        "a": (None, True),
    }
    return verdicts[pressed] if pressed in verdicts else (int(pressed), False)


def rate_by_keyboard(page: Any, expect: Any, keys: list[str], start: int = 0) -> None:
    """Tab to each item in order and press its answer; on the first CTRS item of this
    call also cite turns 2 and 4 (`e`, Tab, Enter, ..., Esc) and write a note (`m`, typing,
    Esc)."""
    for k, key in enumerate(keys, start):
        target = item(page, key)
        focus_with(page, target)
        page.keyboard.press(answer_key(key, k))
        if k == start and key.startswith("ctrs:"):
            page.keyboard.press("e")  # to the transcript: turn 1
            page.keyboard.press("Tab")  # turn 2
            page.keyboard.press("Enter")
            page.keyboard.press("Tab")
            page.keyboard.press("Tab")  # turn 4
            page.keyboard.press("Enter")
            page.keyboard.press("Escape")  # back to the item
            expect(target).to_be_focused()
            page.keyboard.press("m")
            page.keyboard.type(NOTE)
            page.keyboard.press("Escape")  # saves the note at once, back to the item
            expect(target).to_be_focused()
    expect(page.locator("#save-state")).to_have_text("All changes saved")


def test_a_rater_rates_a_whole_session_with_the_keyboard(studied: Studied, expect: Any) -> None:
    page = studied.page("alice")
    first = studied.sessions("alice")[0]
    # from the list of sessions to the first one, by keyboard
    focus_with(page, page.locator("table.assignments a.open").first)
    page.keyboard.press("Enter")
    page.wait_for_url(studied.rate_url(first))
    keys = [*ITEMS, *LABELS]
    expect(item(page, keys[0])).to_be_focused()  # the page starts on the first unanswered

    started = time.perf_counter()
    rate_by_keyboard(page, expect, keys)
    expect(page.locator("#answered")).to_have_text(f"{N_ITEMS} of {N_ITEMS} items answered")
    focus_with(page, page.locator("#submit"), key="Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(studied.rate_url(studied.sessions("alice")[1]))  # on to the next one
    elapsed = time.perf_counter() - started
    print(
        f"\nrated one session ({N_ITEMS} items, 2 evidence turns, 1 note) by keyboard "
        f"and submitted it in {elapsed:.1f} s"
    )

    saved = studied.ratings("alice", first)
    assert len(saved) == N_ITEMS
    for k, key in enumerate(keys):
        assert (saved[key].value, saved[key].na) == expected(key, k), key
    agenda = saved[keys[0]]
    assert agenda.evidence == [f"{first}:1", f"{first}:3"] and agenda.note == NOTE
    assert all(not v.evidence and v.note is None for k, v in saved.items() if k != keys[0])
    # the finished session shows the rating, read-only, and the list counts it done
    page.goto(studied.rate_url(first))
    expect(page.locator("#save-state")).to_have_text("Submitted: this rating is final")
    assert page.locator("#submit").count() == 0
    page.keyboard.press("Tab")  # whatever is focused, the answers cannot change
    page.keyboard.press("3")
    assert studied.ratings("alice", first) == saved
    page.goto(studied.url(""))
    expect(page.locator("#progress")).to_contain_text(f"1 done of {len(studied.sessions('alice'))}")


def test_a_reload_halfway_restores_scores_evidence_and_notes(studied: Studied, expect: Any) -> None:
    page = studied.page("alice")
    sid = studied.sessions("alice")[0]
    page.goto(studied.rate_url(sid))
    half = [*ITEMS[:6], *LABELS[:3]]
    rate_by_keyboard(page, expect, half[:6])
    rate_by_keyboard(page, expect, half[6:], start=6)
    # a note on a safety label, by mouse this time, saved when the field is left
    label_note = page.locator(f'section.item[data-item="{LABELS[0]}"] textarea.note')
    label_note.click()
    label_note.fill("not violated: the risk was asked about directly")
    item(page, LABELS[1]).click()
    expect(page.locator("#save-state")).to_have_text("All changes saved")

    page.reload()
    expect(page.locator("#answered")).to_have_text(f"{len(half)} of {N_ITEMS} items answered")
    expect(item(page, LABELS[1])).to_be_focused()  # back on the item the rater was on
    for k, key in enumerate(half):
        value, na = expected(key, k)
        widget = item(page, key)
        pressed = widget.locator('button.choice[aria-pressed="true"]')
        expect(pressed).to_have_count(1)
        if na:
            assert pressed.get_attribute("data-na") == "true"
        else:
            assert pressed.get_attribute("data-value") == str(value), key
    first = item(page, ITEMS[0])
    expect(first.locator(".evidence-list")).to_have_text("2, 4")
    expect(first.locator("textarea.note")).to_have_value(NOTE)
    expect(label_note).to_have_value("not violated: the risk was asked about directly")
    for key in [*ITEMS[6:], *LABELS[3:]]:
        expect(item(page, key).locator('button.choice[aria-pressed="true"]')).to_have_count(0)
    # the cited turns light up when the item is the current one
    first.focus()
    expect(page.locator("li.turn.cited")).to_have_count(2)
    assert page.locator("li.turn.cited").evaluate_all("els => els.map(e => e.dataset.turn)") == [
        "2",
        "4",
    ]
    # and the store agrees with the page
    saved = studied.ratings("alice", sid)
    assert set(saved) == set(half)
    assert saved[ITEMS[0]].note == NOTE and saved[ITEMS[0]].evidence == [f"{sid}:1", f"{sid}:3"]


def test_a_second_rater_cannot_open_or_see_the_first_ones_work(
    studied: Studied, expect: Any
) -> None:
    alices, bobs = studied.sessions("alice"), studied.sessions("bob")
    only_alice = next(s for s in alices if s not in bobs)
    shared = next(s for s in alices if s in bobs)
    alice = studied.page("alice")
    alice.goto(studied.rate_url(shared))
    rate_by_keyboard(alice, expect, ITEMS[:3])
    alice.goto(studied.rate_url(only_alice))
    rate_by_keyboard(alice, expect, ITEMS[:1])

    bob = studied.page("bob")
    refused = bob.goto(studied.rate_url(only_alice))
    assert refused is not None and refused.status == 403
    expect(bob.locator("main")).to_contain_text("This session is not assigned to you.")
    assert NOTE not in bob.content()
    api = bob.request.get(studied.url("api", "a", studied.server.ref(STUDY, only_alice)))
    assert api.status == 403 and NOTE not in api.text()
    # nor can he write to it (the page's CSRF token is his own session's)
    bob.goto(studied.url(""))
    csrf = bob.locator('meta[name="csrf-token"]').get_attribute("content")
    forged = bob.request.post(
        studied.url("api", "a", studied.server.ref(STUDY, only_alice)),
        data=json.dumps({"item": ITEMS[0], "value": 0}),
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf or ""},
    )
    assert forged.status == 403
    assert studied.ratings("alice", only_alice)[ITEMS[0]].value == 0
    # the session they share: bob sees it blank, without alice's scores, evidence or note
    bob.goto(studied.rate_url(shared))
    expect(bob.locator("#answered")).to_have_text(f"0 of {N_ITEMS} items answered")
    expect(bob.locator('button.choice[aria-pressed="true"]')).to_have_count(0)
    expect(bob.locator("li.turn.cited")).to_have_count(0)
    assert NOTE not in bob.content() and "alice" not in bob.locator("main").inner_text()
    # the admin pages are not his either
    for page in ("agreement", f"adjudicate/{studied.server.ref(STUDY, shared)}"):
        assert bob.goto(studied.url(*page.split("/"))).status == 403  # type: ignore[union-attr]


def test_adjudication_opens_after_both_submit_and_saves_a_consensus(
    studied: Studied, expect: Any
) -> None:
    alices, bobs = studied.sessions("alice"), studied.sessions("bob")
    shared = next(s for s in alices if s in bobs)
    ref = studied.server.ref(STUDY, shared)
    admin = studied.page("admin")
    assert admin.locator("table.adjudications tbody tr").count() == 2
    expect(admin.locator("a.adjudicate")).to_have_count(0)  # nothing submitted yet

    alice, bob = studied.client("alice"), studied.client("bob")
    for c in (alice, bob):
        for r in full_rating(4):
            assert c.rate(ref, r["item"], r["value"]).status == 200
    # alice and bob differ on agenda by 2 (highlighted), on pacing by 1 (not), and on one
    # safety verdict (highlighted)
    assert alice.rate(ref, ITEMS[0], 2).status == 200
    assert alice.rate(ref, ITEMS[1], 3).status == 200
    assert bob.rate(ref, LABELS[0], 1, note=DIFFERING_NOTE).status == 200
    assert alice.post("api", "a", ref, "submit").status == 200
    admin.reload()
    expect(admin.locator("a.adjudicate")).to_have_count(0)  # one of two is not enough
    assert admin.goto(studied.url("adjudicate", ref)).status == 409  # type: ignore[union-attr]
    expect(admin.locator("main")).to_contain_text("Not both raters have submitted")

    assert bob.post("api", "a", ref, "submit").status == 200
    admin.goto(studied.url(""))
    expect(admin.locator("a.adjudicate")).to_have_count(1)
    expect(admin.locator("table.adjudications tr.ready")).to_contain_text("yes")
    focus_with(admin, admin.locator("a.adjudicate"))
    admin.keyboard.press("Enter")
    admin.wait_for_url(studied.url("adjudicate", ref))
    expect(admin.locator(".differing")).to_have_text("2 item(s) differ")
    differs = admin.locator("table.compare.differs")
    expect(differs).to_have_count(2)
    marked = differs.evaluate_all("els => els.map(e => e.closest('section.item').dataset.item)")
    assert marked == [ITEMS[0], LABELS[0]]
    highlighted = differs.first.locator("td.answer").first
    assert (
        highlighted.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(255, 225, 214)"
    )
    assert item(admin, ITEMS[1]).locator("table.compare.differs").count() == 0  # 3 vs 4
    assert DIFFERING_NOTE in item(admin, LABELS[0]).locator("table.compare").inner_text()

    # the consensus: agenda 3 with a note, the safety label not violated
    rate_by_keyboard(admin, expect, [ITEMS[0]], start=3)
    focus_with(admin, item(admin, LABELS[0]))
    admin.keyboard.press("n")
    expect(admin.locator("#save-state")).to_have_text("All changes saved")
    admin.reload()
    expect(item(admin, ITEMS[0]).locator('button[aria-pressed="true"]')).to_have_text("3")
    studio = Studio(studied.path)
    try:
        view = studio.adjudication(STUDY, shared)
        summary = next(a for a in studio.adjudications(STUDY) if a.session_id == shared)
    finally:
        studio.close()
    assert view is not None
    consensus = {i.key: i.consensus for i in view.items if i.consensus is not None}
    assert set(consensus) == {ITEMS[0], LABELS[0]}
    assert consensus[ITEMS[0]].value == 3 and consensus[ITEMS[0]].note == NOTE
    assert consensus[ITEMS[0]].evidence == [f"{shared}:1", f"{shared}:3"]
    assert (consensus[LABELS[0]].value, consensus[LABELS[0]].na) == (0, False)
    assert (summary.differing, summary.consensus_items) == (2, 2)
    # the raters' own ratings are untouched by the consensus
    assert studied.ratings("alice", shared)[ITEMS[0]].value == 2


# alice's and bob's agenda scores and their crisis verdicts on the four sessions (in their
# session id order), entered over HTTP; every other item is 4 / not violated for both.
AGENDA = {"alice": [1, 3, 5, 6], "bob": [1, 4, 3, 6]}
CRISIS = {"alice": [1, 0, 0, 0], "bob": [1, 0, 1, 0]}


def test_an_export_round_trips_through_calibrate_humans_only(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    build_store(path, samples=1)
    created = make_study(path, ("alice", "bob"), double=1.0)
    studio = Studio(path)
    sessions = sorted(a.session_id for a in studio.assignments(STUDY, "alice"))
    assert sessions == sorted(a.session_id for a in studio.assignments(STUDY, "bob"))
    studio.close()
    with StudioServer(path) as server:
        for rater in ("alice", "bob"):
            c = Client(server.url.rstrip("/"), study=STUDY)
            assert c.login(created.tokens[rater]).status == 200
            for n, sid in enumerate(sessions):
                ref = server.ref(STUDY, sid)
                mine = {
                    "ctrs:agenda": AGENDA[rater][n],
                    "safety:crisis_unaddressed": CRISIS[rater][n],
                }
                for r in full_rating(4):
                    assert c.rate(ref, r["item"], mine.get(r["item"], r["value"])).status == 200
                assert c.post("api", "a", ref, "submit").status == 200

    bench = tmp_path / "bench.jsonl"
    ran = cli("studio", "export", STUDY, "-o", str(bench), "--store", str(path))
    assert ran.code == 0, ran.stderr
    assert "wrote 8 ratings and 0 consensus ratings of 4 sessions" in ran.stdout
    out = tmp_path / "calibration"
    # a process of its own: the browser tests' Playwright keeps an event loop running here
    done = subprocess_cli("calibrate", "--bench", str(bench), "--humans-only",
                          "--resamples", "200", "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "calibration.json").read_text())

    (agenda,) = [i for i in report["items"] if i["item"] == "agenda"]
    (pair,) = agenda["expert_pairs"]["comparisons"]
    assert pair["raters"] == ["alice", "bob"] and pair["n_dialogues"] == 4
    # |1-1|, |3-4|, |5-3|, |6-6| = 0, 1, 2, 0: exact 2/4, within one 3/4, mean 3/4
    # and alice minus bob (0 - 1 + 2 + 0) / 4
    stats = pair["stats"]
    assert stats["exact"] == pytest.approx(2 / 4)
    assert stats["within_1"] == pytest.approx(3 / 4)
    assert stats["mean_abs_diff"] == pytest.approx(3 / 4)
    assert stats["mean_bias"] == pytest.approx(1 / 4)
    (crisis,) = [lb for lb in report["labels"] if lb["label"] == "crisis_unaddressed"]
    (label_pair,) = crisis["expert_pairs"]["comparisons"]
    # same verdict on 3 of 4; chance: alice says violated 1/4, bob 2/4 ->
    # 1/4 * 2/4 + 3/4 * 2/4 = 1/2; kappa (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert label_pair["stats"]["accuracy"] == pytest.approx(3 / 4)
    assert label_pair["stats"]["cohen_kappa"] == pytest.approx(1 / 2)
    for token in (*created.tokens.values(), created.admin_token):
        assert token not in bench.read_text()

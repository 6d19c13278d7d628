"""The studio's web app over real HTTP on 127.0.0.1: login, the blind rating page, saving and
reloading, every refusal (with nothing written), one rater kept from another's work,
submission rules, practice references, adjudication and the admin's agreement page."""

from __future__ import annotations

import logging
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from studio_http import (
    ITEMS,
    LABELS,
    SCRIPT,
    SECRETS,
    Client,
    Reply,
    build_store,
    count_ratings,
    full_rating,
    make_study,
    practice_bench,
)

from therapygym.studio.ratings import Studio
from therapygym.studio.server import CSP, StudioServer, allowed_hosts
from therapygym.studio.study import CreatedStudy

RATERS = ("alice", "bob", "carol")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Setup:
    path: Path
    created: CreatedStudy
    server: StudioServer
    access: Lines

    @property
    def base(self) -> str:
        return self.server.url.rstrip("/")

    def client(self, who: str | None = None) -> Client:
        """A browser; logged in as `who` (a rater, or "admin") when given."""
        c = Client(self.base)
        if who is not None:
            token = self.created.admin_token if who == "admin" else self.created.tokens[who]
            assert c.login(token).status == 200
        return c

    def sessions_of(self, rater: str) -> list[str]:
        studio = Studio(self.path)
        try:
            return [a.session_id for a in studio.assignments("pilot", rater)]
        finally:
            studio.close()

    def ref(self, session_id: str) -> str:
        return self.server.ref("pilot", session_id)


def _serve(tmp_path: Path, practice: bool = False) -> Iterator[Setup]:
    path = tmp_path / "store.sqlite"
    build_store(path, samples=2)
    bench = practice_bench(tmp_path / "practice.jsonl") if practice else None
    created = make_study(path, RATERS, double=0.5, practice=bench)
    logger = logging.getLogger(f"studio-access-{tmp_path.name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    access = Lines()
    logger.addHandler(access)
    with StudioServer(path, access_log=logger) as server:
        yield Setup(path, created, server, access)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    yield from _serve(tmp_path)


@pytest.fixture
def practice_setup(tmp_path: Path) -> Iterator[Setup]:
    yield from _serve(tmp_path, practice=True)


def shared_session(s: Setup) -> str:
    """A session both alice and bob rate."""
    return next(x for x in s.sessions_of("alice") if x in s.sessions_of("bob"))


def alice_only(s: Setup) -> str:
    others = set(s.sessions_of("bob")) | set(s.sessions_of("carol"))
    return next(x for x in s.sessions_of("alice") if x not in others)


def test_login_exchanges_the_token_for_a_cookie_and_never_logs_it(setup: Setup) -> None:
    token = setup.created.tokens["alice"]
    c = setup.client()
    page = c.get("login")
    assert page.status == 200 and 'id="login-form"' in page.text
    assert page.headers["Content-Security-Policy"] == CSP

    assert c.get("").status == 401  # no session yet
    wrong = c.login("not-a-token")
    assert wrong.status == 401 and "not valid" in wrong.json()["error"]

    ok = c.post("login", json_body={"token": token}, csrf=None)
    assert ok.status == 200 and ok.json() == {"rater": "alice", "next": "/s/pilot/"}
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/s/pilot/" in cookie
    assert token not in cookie
    home = c.get("")
    assert home.status == 200 and len(c.refs()) == len(setup.sessions_of("alice"))
    assert f"done of <strong>{len(setup.sessions_of('alice'))}</strong> assigned" in home.text

    assert any("POST /s/pilot/login" in line for line in setup.access.lines)
    assert not any(token in line for line in setup.access.lines)

    assert c.post("logout").status == 200
    assert c.get("").status == 401


def test_rating_page_is_blind_and_escaped(setup: Setup) -> None:
    c = setup.client("alice")
    refs = c.refs()
    assert refs and all(r not in setup.sessions_of("alice") for r in refs)
    for ref, sid in zip(refs, setup.sessions_of("alice"), strict=True):
        page = c.get("a", ref)
        state = c.get("api", "a", ref)
        assert page.status == 200 and state.status == 200
        for text in (page.text, state.text):
            assert not [s for s in SECRETS if s in text]
            assert sid not in text  # the session id (and turn ids built on it) stay out
        assert page.headers["Content-Security-Policy"] == CSP
        assert SCRIPT not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/studio.js">']
        assert "style=" not in page.text and "<style" not in page.text
        assert page.text.count('class="turn patient"') == 3
        assert page.text.count('class="turn therapist"') == 3
        assert all(f'data-item="{key}"' in page.text for key in ITEMS + LABELS)
        assert "No focus is made explicit at any point" in page.text  # CTRS anchor 0
        assert 'data-na="true"' in page.text  # safety labels offer "not applicable"


def test_every_change_is_saved_and_a_reload_restores_it(setup: Setup) -> None:
    c = setup.client("alice")
    ref = c.refs()[0]
    note = "agenda set <b>late</b>"
    assert c.rate(ref, "ctrs:agenda", 4, evidence=[4, 2], note=note).status == 200
    assert c.rate(ref, "safety:crisis_unaddressed", None, na=True).status == 200
    saved = c.rate(ref, "safety:medication_advice", 1, evidence=[4])
    assert saved.status == 200
    assert saved.json()["saved"] == {"value": 1, "na": False, "evidence": [4], "note": ""}
    again = c.rate(ref, "ctrs:agenda", 5, evidence=[2, 4], note=note)  # same key: updated
    assert again.status == 200 and count_ratings(setup.path) == 3

    state = c.get("api", "a", ref).json()
    assert state["ratings"] == {
        "ctrs:agenda": {"value": 5, "na": False, "evidence": [2, 4], "note": note},
        "safety:crisis_unaddressed": {"value": None, "na": True, "evidence": [], "note": ""},
        "safety:medication_advice": {"value": 1, "na": False, "evidence": [4], "note": ""},
    }
    assert state["answered"] == 3 and state["total"] == len(ITEMS) + len(LABELS)
    page = c.get("a", ref).text
    agenda = page[page.index('data-item="ctrs:agenda"') :]
    agenda = agenda[: agenda.index("</section>")]
    assert 'data-value="5"' in agenda and 'data-evidence="2 4"' in agenda
    assert 'data-value="5" aria-pressed="true"' in agenda
    assert "agenda set &lt;b&gt;late&lt;/b&gt;</textarea>" in agenda
    crisis = page[page.index('data-item="safety:crisis_unaddressed"') :]
    assert 'data-na="true"' in crisis[:300]

    cleared = c.rate(ref, "ctrs:agenda", None, evidence=[2, 4], note=note)
    assert cleared.status == 200 and c.get("api", "a", ref).json()["answered"] == 2


def test_bad_input_is_refused_with_a_clear_4xx_and_nothing_written(setup: Setup) -> None:
    c = setup.client("alice")
    ref = c.refs()[0]
    assert c.rate(ref, "ctrs:agenda", 3).status == 200
    before = c.get("api", "a", ref).json()["ratings"]
    forged = "0123456789abcdef"
    change = {"item": "ctrs:agenda", "value": 2}

    def raw(body: bytes, content_type: str) -> Reply:
        headers = {"Content-Type": content_type, "X-CSRF-Token": c.csrf or ""}
        return c.request(c.url("api", "a", ref), method="POST", body=body, headers=headers)

    def elsewhere() -> Reply:
        return c.post("api", "a", ref, json_body=change, headers={"Host": "evil.example:80"})

    cases: list[tuple[str, Callable[[], Reply], int, str]] = [
        ("score above 6", lambda: c.rate(ref, "ctrs:agenda", 7), 400, "off the scale"),
        ("score below 0", lambda: c.rate(ref, "ctrs:feedback", -1), 400, "off the scale"),
        ("safety value 2", lambda: c.rate(ref, LABELS[0], 2), 400, "off the scale"),
        ("unknown item", lambda: c.rate(ref, "ctrs:charisma", 3), 400, "unknown item"),
        ("n/a on CTRS", lambda: c.rate(ref, "ctrs:agenda", None, na=True), 400, "safety"),
        ("text score", lambda: c.rate(ref, "ctrs:agenda", "4"), 400, "whole number"),
        ("evidence not a turn", lambda: c.rate(ref, "ctrs:agenda", 2, evidence=[99]), 400, "99"),
        ("unknown field", lambda: c.rate(ref, "ctrs:agenda", 2, rater="bob"), 400, "rater"),
        ("note too long", lambda: c.rate(ref, "ctrs:agenda", 2, note="x" * 5000), 400, "4000"),
        ("forged session", lambda: c.rate(forged, "ctrs:agenda", 2), 403, "not assigned"),
        ("forged submit", lambda: c.post("api", "a", forged, "submit"), 403, "not assigned"),
        ("no CSRF", lambda: c.post("api", "a", ref, json_body=change, csrf=None), 403, "CSRF"),
        ("wrong CSRF", lambda: c.post("api", "a", ref, json_body=change, csrf="x"), 403, "CSRF"),
        ("wrong Host", elsewhere, 421, "Host"),
        ("form body", lambda: raw(b"item=ctrs:agenda&value=2", "text/plain"), 415, "JSON"),
        ("broken JSON", lambda: raw(b"{not json", "application/json"), 400, "JSON"),
    ]
    for what, send, status, words in cases:
        reply = send()
        assert reply.status == status, (what, reply.status, reply.text)
        assert words in reply.json()["error"], (what, reply.text)
        assert count_ratings(setup.path) == 1, what
    assert c.get("api", "a", ref).json()["ratings"] == before
    assert c.get("a", ref, headers={"Host": "evil.example"}).status == 421


def test_a_revoked_token_is_refused_and_its_sessions_end(setup: Setup) -> None:
    alice, bob = setup.client("alice"), setup.client("bob")
    ref = alice.refs()[0]
    assert alice.rate(ref, "ctrs:agenda", 3).status == 200
    studio = Studio(setup.path)
    studio.revoke("pilot", "alice")
    studio.close()
    reply = alice.rate(ref, "ctrs:agenda", 5)
    assert reply.status == 401 and "revoked" in reply.json()["error"]
    assert alice.get("").status == 401 and alice.get("a", ref).status == 401
    assert setup.client().login(setup.created.tokens["alice"]).status == 401
    assert count_ratings(setup.path) == 1
    assert bob.get("").status == 200  # the others carry on


def test_a_rater_cannot_open_or_write_another_raters_assignment(setup: Setup) -> None:
    alice, bob, admin = setup.client("alice"), setup.client("bob"), setup.client("admin")
    only = setup.ref(alice_only(setup))
    shared = setup.ref(shared_session(setup))
    assert alice.rate(only, "ctrs:agenda", 6, note="alice-note-7q").status == 200
    assert alice.rate(shared, "ctrs:agenda", 6, note="alice-note-7q").status == 200

    for reply in (
        bob.get("a", only),
        bob.get("api", "a", only),
        bob.rate(only, "ctrs:agenda", 1),
        bob.post("api", "a", only, "submit"),
        bob.post("api", "a", only, "flag", json_body={"flagged": True}),
        admin.get("a", only),
    ):
        assert reply.status == 403, reply.text
    state = bob.get("api", "a", shared).json()  # bob's own rating of the shared session
    assert state["ratings"] == {} and "alice-note-7q" not in bob.get("a", shared).text
    assert count_ratings(setup.path) == 2
    assert only not in bob.get("").text
    for page in ("agreement", "api/agreement"):
        assert bob.get(*page.split("/")).status == 403


def test_submission_needs_every_item_and_is_final(setup: Setup) -> None:
    c = setup.client("alice")
    first, second = c.refs()[:2]
    assert c.rate(first, "ctrs:agenda", 4).status == 200
    refused = c.post("api", "a", first, "submit")
    assert refused.status == 409
    assert len(refused.json()["missing"]) == len(ITEMS) + len(LABELS) - 1
    assert "still need an answer" in refused.json()["error"]

    for rating in full_rating():
        assert c.rate(first, rating["item"], rating["value"]).status == 200
    done = c.post("api", "a", first, "submit")
    assert done.status == 200 and done.json()["state"] == "submitted"
    late = c.rate(first, "ctrs:agenda", 1)
    assert late.status == 400 and "final" in late.json()["error"]
    assert c.post("api", "a", first, "submit").status == 400  # a double submit changes nothing
    page = c.get("a", first).text
    assert 'id="submit"' not in page and "Submitted: this rating is final" in page
    assert f'id="next" href="/s/pilot/a/{second}"' in page  # where the page goes next

    assert c.post("api", "a", second, "skip").json()["state"] == "skipped"
    assert c.post("api", "a", second, "reopen").json()["state"] == "open"
    assert c.post("api", "a", second, "flag", json_body={"flagged": True}).json()["flagged"]
    assert c.post("api", "a", second, "flag", json_body={"flagged": "yes"}).status == 400
    assert f"<strong>1</strong> done of <strong>{len(c.refs())}</strong>" in c.get("").text


def test_practice_reference_shows_after_submission(practice_setup: Setup) -> None:
    c = practice_setup.client("alice")
    practice = c.refs()[0]
    before = c.get("a", practice)
    assert 'class="phase practice"' in before.text and "Reference (expert-1)" not in before.text
    assert c.get("api", "a", practice).json()["reference"] is None
    for rating in full_rating(value=2):
        assert c.rate(practice, rating["item"], rating["value"]).status == 200
    assert c.post("api", "a", practice, "submit").status == 200
    after = c.get("a", practice).text
    assert after.count("Reference (expert-1): <strong>5</strong>") == len(ITEMS)
    assert after.count("Reference (expert-1): <strong>not violated</strong>") == len(LABELS)
    reference = c.get("api", "a", practice).json()["reference"]
    assert reference[0]["rater"] == "expert-1"
    assert reference[0]["ratings"]["ctrs:agenda"]["value"] == 5


def test_adjudication_opens_only_after_both_raters_submit(setup: Setup) -> None:
    alice, bob, admin = setup.client("alice"), setup.client("bob"), setup.client("admin")
    ref = setup.ref(shared_session(setup))
    dashboard = admin.get("").text
    assert f'href="/s/pilot/adjudicate/{ref}"' not in dashboard
    assert "waiting for both raters" in dashboard
    waiting = admin.get("adjudicate", ref)
    assert waiting.status == 409 and "Not both raters have submitted" in waiting.text
    early = admin.post("api", "adjudicate", ref, json_body={"item": "ctrs:agenda", "value": 4})
    assert early.status == 409

    for who, agenda in ((alice, 6), (bob, 2)):
        for rating in full_rating():
            value = agenda if rating["item"] == "ctrs:agenda" else rating["value"]
            assert who.rate(ref, rating["item"], value).status == 200
    assert alice.post("api", "a", ref, "submit").status == 200
    assert admin.get("adjudicate", ref).status == 409  # one of two
    assert bob.post("api", "a", ref, "submit").status == 200

    page = admin.get("adjudicate", ref)
    assert page.status == 200 and not [s for s in SECRETS if s in page.text]
    assert page.text.count('class="compare differs"') == 1  # agenda: 6 vs 2
    agenda = page.text[page.text.index('data-item="ctrs:agenda"') :]
    assert 'class="compare differs"' in agenda[: agenda.index("</section>")]
    assert f'href="/s/pilot/adjudicate/{ref}"' in admin.get("").text
    rows = count_ratings(setup.path)
    saved = admin.post("api", "adjudicate", ref, json_body={"item": "ctrs:agenda", "value": 4})
    assert saved.status == 200 and count_ratings(setup.path) == rows + 1
    with sqlite3.connect(setup.path) as db:
        assert db.execute(
            "SELECT value FROM study_ratings WHERE rater = 'consensus' AND item = 'ctrs:agenda'"
        ).fetchall() == [(4,)]
    assert alice.get("adjudicate", ref).status == 403
    rater_try = alice.post("api", "adjudicate", ref, json_body={"item": "ctrs:agenda", "value": 0})
    assert rater_try.status == 403 and count_ratings(setup.path) == rows + 1
    assert admin.get("adjudicate", "0123456789abcdef").status == 404


def test_admin_sees_progress_and_agreement(setup: Setup) -> None:
    admin = setup.client("admin")
    dashboard = admin.get("")
    assert dashboard.status == 200
    assert all(f"<td>{r}</td>" in dashboard.text for r in RATERS)
    empty = admin.get("agreement")
    assert empty.status == 200 and "no submitted ratings yet" in empty.text
    alice, bob = setup.client("alice"), setup.client("bob")
    ref = setup.ref(shared_session(setup))
    for who, value in ((alice, 4), (bob, 2)):
        for rating in full_rating(value):
            assert who.rate(ref, rating["item"], rating["value"]).status == 200
        assert who.post("api", "a", ref, "submit").status == 200
    page = admin.get("agreement")
    assert page.status == 200 and 'id="calibration"' in page.text
    body = admin.get("api", "agreement").json()
    assert body["sessions_rated"] == 1 and body["double_rated"] == 1
    distances = {r["rater"]: r for r in body["raters"]}
    assert distances["alice"]["ctrs_abs"]["mean"] == pytest.approx(2.0)
    assert distances["bob"]["ctrs_bias"]["mean"] == pytest.approx(-2.0)


def test_static_files_and_host_rules(setup: Setup) -> None:
    c = setup.client()
    for name, kind in (("studio.js", "text/javascript"), ("studio.css", "text/css")):
        reply = c.request(f"{setup.base}/static/{name}")
        assert reply.status == 200 and reply.headers["Content-Type"].startswith(kind)
        assert reply.headers["Content-Security-Policy"] == CSP
    assert c.request(f"{setup.base}/static/other.js").status == 404
    port = setup.server.port
    assert c.request(f"{setup.base}/", headers={"Host": f"localhost:{port}"}).status == 200
    assert c.request(f"{setup.base}/", headers={"Host": "attacker.example"}).status == 421
    assert allowed_hosts("0.0.0.0", 8766) is None
    assert allowed_hosts("192.0.2.5", 8766) == ("192.0.2.5", "192.0.2.5:8766")
    assert "localhost:8766" in (allowed_hosts("127.0.0.1", 8766) or ())


def test_serve_studio_announces_itself_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    build_store(path, samples=1)
    make_study(path, RATERS, double=0.0)
    code = (
        "import sys; from pathlib import Path; from rich.console import Console; "
        "from therapygym.studio.server import serve_studio; "
        "serve_studio(Path(sys.argv[1]), '127.0.0.1', 0, Console(file=sys.stdout, width=300))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found and "therapygym studio on" in line and "warning" not in line
        reply = Client(found.group(0).rstrip("/")).get("login")
        assert reply.status == 200 and reply.headers["Content-Security-Policy"] == CSP
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0

"""`therapygym studio serve`: the rating studio's web app (aiohttp) over a run store.

Pages, all under `/s/<study>/`: `login` (the link `studio create` printed), the rater's
home (their assignments in order, practice first, with progress), `a/<ref>` (one blind
session: the transcript beside the rubric, every change saved at once), and for the
study's admin the dashboard (progress per rater, double-rated sessions), `adjudicate/<ref>`
and `agreement`. The same data is JSON under `/s/<study>/api/`.

Login. A rater's link carries the token in the URL *fragment* (`login#token=...`), which
the browser never sends: the page's script strips it from the address bar and POSTs it once
as JSON, and the server answers with a random session id in an HttpOnly, SameSite=Strict
cookie (path `/s/<study>/`). So the token is never in a request line, an access log, a
Referer header or the browser's history, and the cookie holds nothing that opens the study
again after logout. Sessions live in the server's memory (a restart asks raters to open
their link again). Tokens are required on every address, loopback included: they are what
tells one rater from another, and a rater sees only their own work. Every request checks the
token again, so `studio revoke` ends that rater's sessions at once (401).

Writes. Every POST needs the session's CSRF token in the `X-CSRF-Token` header (the page
reads it from a `<meta>` tag) and a JSON body (which a page elsewhere cannot send without
a CORS preflight, never granted here: that guards the login too); each rating is one
UPSERT in one transaction (the data layer's `Studio.save_rating`), which refuses items the
study does not rate, values out of range, evidence outside the session and sessions not
assigned to this rater. Sessions are named in URLs by an opaque ref (an HMAC of study and
session id under a secret the server draws when it starts: `session_ref`), never by the
session id, the run or the therapist, and turns by their number.

Network. By default the app listens on 127.0.0.1 and answers only requests addressed to a
loopback name (the viewer's DNS-rebinding guard). Any other `--host` serves plain HTTP:
tokens, cookies and transcripts cross the network unencrypted, so the server prints a
warning. On a shared network, keep the studio on 127.0.0.1 and put a reverse proxy that
terminates TLS in front of it, forwarding with the upstream's own address as Host (nginx:
`proxy_pass http://127.0.0.1:8766;`, which sends that Host by default; Caddy:
`reverse_proxy 127.0.0.1:8766 { header_up Host {upstream_hostport} }`), so the Host check
still holds and the proxy decides which names reach the studio. Every response carries a
strict Content-Security-Policy (the studio's own script and stylesheet, nothing inline,
nothing from elsewhere) and every rendered value is escaped by the HTML environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup
from rich.console import Console

from therapygym import __version__
from therapygym.calibration.render import html_section
from therapygym.errors import TherapygymError
from therapygym.stats import format_ci
from therapygym.studio.ratings import (
    AdjudicationSummary,
    AssignmentView,
    BlindSession,
    IncompleteRating,
    NotAssigned,
    RaterIdentity,
    RatingError,
    RatingValue,
    ReferenceRating,
    Studio,
    missing_items,
)
from therapygym.studio.study import StudyError
from therapygym.templates import html_env
from therapygym.web_thread import BackgroundServer, bind, http_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8766
COOKIE = "therapygym_studio"
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME_S = 12 * 3600  # a login lasts a working day, then the link is needed again
MAX_BODY = 64 * 1024  # a rating with a long note is a few KB
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_STATIC = {"studio.js": "text/javascript", "studio.css": "text/css"}

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StudioServerError(TherapygymError):
    """The studio cannot start (the port is taken)."""


class Refused(Exception):
    """A request answered with a 4xx and one line saying why; nothing was written."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


@dataclass
class Login:
    """One browser's session: who logged in, with which token (checked again on every
    request, so a revoked token ends it), and the CSRF token its pages send back."""

    study_id: str
    rater: str
    is_admin: bool
    token: str
    csrf: str
    expires: float


_LOGIN = web.RequestKey("login", Login)


@dataclass
class Opened:
    """A rater's assignment as a page shows it: its number (1 first) in their list."""

    view: AssignmentView
    session: BlindSession
    number: int
    views: list[AssignmentView]

    def next_open(self) -> str | None:
        """The session id of the rater's next open assignment after this one (wrapping
        round), where the page goes after a submit or a skip; None when none is left."""
        later = self.views[self.number :] + self.views[: self.number - 1]
        return next((v.session_id for v in later if v.state == "open"), None)


class Logins:
    """Session ids (random, 256 bits) -> Login, in memory. Used on the event loop only."""

    def __init__(self) -> None:
        self._by_id: dict[str, Login] = {}

    def open(self, identity: RaterIdentity, token: str) -> tuple[str, Login]:
        now = time.monotonic()
        self._by_id = {k: v for k, v in self._by_id.items() if v.expires > now}
        key = secrets.token_urlsafe(32)
        login = Login(
            study_id=identity.study_id,
            rater=identity.rater,
            is_admin=identity.is_admin,
            token=token,
            csrf=secrets.token_urlsafe(32),
            expires=now + SESSION_LIFETIME_S,
        )
        self._by_id[key] = login
        return key, login

    def get(self, key: str | None, study_id: str) -> Login | None:
        login = self._by_id.get(key or "")
        if login is None or login.study_id != study_id:
            return None
        if login.expires <= time.monotonic():
            self.close(key)
            return None
        return login

    def close(self, key: str | None) -> None:
        if key:
            self._by_id.pop(key, None)

    def close_rater(self, study_id: str, rater: str) -> None:
        """Ends every session of a rater whose token stopped working (revoked)."""
        self._by_id = {
            k: v for k, v in self._by_id.items() if (v.study_id, v.rater) != (study_id, rater)
        }


def session_ref(key: bytes, study_id: str, session_id: str) -> str:
    """The opaque name of a session in URLs: says nothing about the run, therapist or
    profile. Keyed (HMAC) with a secret the server draws when it starts, because session
    ids are hashes of run, profile, therapist and sample: an unkeyed hash of them could be
    recomputed by a rater who guesses the therapist, and the rating would not be blind.
    Refs change when the server restarts, as logins do."""
    return hmac.new(key, f"{study_id}\x1f{session_id}".encode(), hashlib.sha256).hexdigest()[:16]


def study_path(study_id: str, *parts: str) -> str:
    return "/".join(["/s", quote(study_id, safe=""), *parts])


@cache
def _static(name: str) -> bytes:
    return (resources.files("therapygym.studio") / "static" / name).read_bytes()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> tuple[str, ...] | None:
    """The Host header values a server bound to `host:port` answers: loopback names for a
    loopback bind (what stops DNS rebinding); for another bind, that address (None, any,
    for a wildcard bind: the Host is then whatever name the raters' network gives it)."""
    bare = host.strip("[]")
    if bare in ("0.0.0.0", "::"):
        return None
    shown = f"[{bare}]" if ":" in bare else bare
    names = {*_LOOPBACK_NAMES, shown} if _is_loopback(host) else {shown}
    return tuple(sorted(n for name in names for n in (name, f"{name}:{port}")))


def _rating_json(value: RatingValue | None, numbers: dict[str, int]) -> dict[str, Any] | None:
    """A rating as the page sends and reads it: evidence as turn numbers."""
    if value is None:
        return None
    return {
        "value": value.value,
        "na": value.na,
        "evidence": sorted(numbers[t] for t in value.evidence if t in numbers),
        "note": value.note or "",
    }


def _turn_numbers(session: BlindSession) -> dict[str, int]:
    """Turn id -> the number the page shows (1 for the first turn)."""
    return {t.id: t.index + 1 for t in session.turns}


def _reference_json(reference: list[ReferenceRating] | None) -> list[dict[str, Any]] | None:
    """The experts' ratings of a practice session in the page's shape (no evidence)."""
    if reference is None:
        return None
    return [
        {
            "rater": r.rater,
            "ratings": {
                k: {"value": None if v == "na" else v, "na": v == "na", "evidence": [], "note": ""}
                for k, v in r.values.items()
            },
        }
        for r in reference
    ]


def _parse_rating(body: Any, session: BlindSession) -> dict[str, Any]:
    """The JSON of one rating change, `{"item": str, "value": int|null, "na": bool,
    "evidence": [turn numbers], "note": str}`: its shape and turn numbers are checked here,
    the item, value and note by the data layer (`Studio.save_rating`)."""
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object with item, value, na, evidence, note")
    unknown = sorted(set(body) - {"item", "value", "na", "evidence", "note"})
    if unknown:
        raise Refused(400, f"unknown field(s) {', '.join(unknown)} in the rating")
    item, value, na = body.get("item"), body.get("value"), body.get("na", False)
    evidence, note = body.get("evidence", []), body.get("note")
    if not isinstance(item, str):
        raise Refused(400, "`item` must be an item key such as 'ctrs:agenda'")
    if not isinstance(na, bool):
        raise Refused(400, f"`na` of {item} must be true or false")
    if not isinstance(evidence, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in evidence
    ):
        raise Refused(400, f"`evidence` of {item} must be a list of turn numbers")
    by_number = {t.index + 1: t.id for t in session.turns}
    missing = sorted({n for n in evidence if n not in by_number})
    if missing:
        raise Refused(
            400, f"evidence turn(s) {', '.join(map(str, missing))} are not in this session"
        )
    return {
        "item": item,
        "value": value,
        "na": na,
        "evidence": [by_number[n] for n in sorted(set(evidence))],
        "note": note,
    }


class Pages:
    """The handlers. Every store call runs in a worker thread (SQLite blocks)."""

    def __init__(self, studio: Studio, ref_key: bytes) -> None:
        self.studio = studio
        self.logins = Logins()
        self.ref_key = ref_key

    def ref(self, study_id: str, session_id: str) -> str:
        return session_ref(self.ref_key, study_id, session_id)

    # -- helpers -----------------------------------------------------------------------

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def html(self, template: str, status: int = 200, **context: Any) -> web.Response:
        page = html_env().get_template(f"therapygym.studio:templates/{template}")
        text = page.render(version=__version__, ci=format_ci, path=study_path, **context)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    async def login_of(self, request: web.Request, *, admin: bool = False) -> Login:
        """The request's login, its token checked again (revoked: 401, sessions ended);
        checked once per request (the CSRF check and the handler share it)."""
        login = request.get(_LOGIN)
        if login is None:
            login = await self._authenticated(request)
            request[_LOGIN] = login
        if admin and not login.is_admin:
            raise Refused(403, "This page is for the study's admin.")
        return login

    async def _authenticated(self, request: web.Request) -> Login:
        study_id = request.match_info["study"]
        key = request.cookies.get(COOKIE)
        login = self.logins.get(key, study_id)
        if login is None:
            raise Refused(401, "You are not logged in to this study: open your login link.")
        identity = await self.call(self.studio.authenticate, study_id, login.token)
        if identity is None or identity.rater != login.rater:
            self.logins.close_rater(study_id, login.rater)
            raise Refused(401, "Your access to this study was revoked: ask its organiser.")
        return login

    async def assignment(self, login: Login, ref: str) -> Opened:
        """The rater's assignment named by `ref`, with its blind session; 403 when it is
        not theirs (whether or not it exists: nothing is revealed)."""
        if login.is_admin:
            raise Refused(403, "The admin rates no sessions; use the adjudication pages.")
        views = await self.call(self.studio.assignments, login.study_id, login.rater)
        for number, view in enumerate(views, 1):
            if self.ref(login.study_id, view.session_id) == ref:
                session = await self.call(
                    self.studio.session_for, login.study_id, login.rater, view.session_id
                )
                return Opened(view, session, number, views)
        raise Refused(403, "This session is not assigned to you.")

    async def double_rated(self, login: Login, ref: str) -> AdjudicationSummary:
        for summary in await self.call(self.studio.adjudications, login.study_id):
            if self.ref(login.study_id, summary.session_id) == ref:
                return summary
        raise Refused(404, "No double-rated session of this study has that reference.")

    # -- login -------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        study_id = request.match_info["study"]
        return self.html("login.html.j2", study_id=study_id)

    async def login(self, request: web.Request) -> web.Response:
        study_id = request.match_info["study"]
        body = await request.json()
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise Refused(400, 'send the token of your login link as {"token": ...}')
        identity = await self.call(self.studio.authenticate, study_id, token)
        if identity is None:
            raise Refused(401, "This login link is not valid for this study (revoked or mistyped).")
        self.logins.close(request.cookies.get(COOKIE))
        key, _ = self.logins.open(identity, token)
        response = web.json_response({"rater": identity.rater, "next": study_path(study_id, "")})
        response.set_cookie(
            COOKIE, key, path=study_path(study_id, ""), httponly=True, samesite="Strict"
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        await self.login_of(request)
        self.logins.close(request.cookies.get(COOKIE))
        response = web.json_response({"next": study_path(request.match_info["study"], "login")})
        response.del_cookie(COOKIE, path=study_path(request.match_info["study"], ""))
        return response

    # -- rater -------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        login = await self.login_of(request)
        if login.is_admin:
            return await self.dashboard(request, login)
        views = await self.call(self.studio.assignments, login.study_id, login.rater)
        done = sum(v.state != "open" for v in views)
        rows = [(v, self.ref(login.study_id, v.session_id)) for v in views]
        return self.html("home.html.j2", login=login, rows=rows, done=done, assigned=len(views))

    async def _state(
        self, login: Login, view: AssignmentView, session: BlindSession
    ) -> dict[str, Any]:
        ratings = await self.call(
            self.studio.ratings, login.study_id, login.rater, session.session_id
        )
        numbers = _turn_numbers(session)
        reference = await self.call(
            self.studio.reference, login.study_id, login.rater, session.session_id
        )
        missing = missing_items((i.key for r in session.rubrics for i in r.items), ratings)
        n_items = sum(len(r.items) for r in session.rubrics)
        return {
            "phase": view.phase,
            "state": view.state,
            "flagged": view.flagged,
            "ratings": {k: _rating_json(v, numbers) for k, v in ratings.items()},
            "total": n_items,
            "answered": n_items - len(missing),
            "missing": missing,
            "reference": _reference_json(reference),
        }

    async def rate_page(self, request: web.Request) -> web.Response:
        login = await self.login_of(request)
        opened = await self.assignment(login, request.match_info["ref"])
        state = await self._state(login, opened.view, opened.session)
        later = opened.next_open()
        return self.html(
            "rate.html.j2",
            login=login,
            session=opened.session,
            state=state,
            number=opened.number,
            of=len(opened.views),
            save_url=study_path(login.study_id, "api", "a", request.match_info["ref"]),
            next_url=study_path(login.study_id, "a", self.ref(login.study_id, later))
            if later
            else study_path(login.study_id, ""),
        )

    async def rate_state(self, request: web.Request) -> web.Response:
        login = await self.login_of(request)
        opened = await self.assignment(login, request.match_info["ref"])
        return web.json_response(await self._state(login, opened.view, opened.session))

    async def save(self, request: web.Request) -> web.Response:
        login = await self.login_of(request)
        session = (await self.assignment(login, request.match_info["ref"])).session
        change = _parse_rating(await request.json(), session)
        saved = await self.call(
            self.studio.save_rating,
            login.study_id,
            login.rater,
            session.session_id,
            change["item"],
            change["value"],
            change["evidence"],
            change["note"],
            na=change["na"],
        )
        return web.json_response(
            {"item": change["item"], "saved": _rating_json(saved, _turn_numbers(session))}
        )

    async def act(self, request: web.Request) -> web.Response:
        """submit / skip / reopen / flag: the assignment's state, not its ratings."""
        login = await self.login_of(request)
        session = (await self.assignment(login, request.match_info["ref"])).session
        action = request.match_info["action"]
        args = (login.study_id, login.rater, session.session_id)
        if action == "submit":
            try:
                await self.call(self.studio.submit, *args)
            except IncompleteRating as err:  # the page marks the items still unanswered
                raise Refused(409, str(err), missing=err.missing) from None
        elif action == "skip":
            await self.call(self.studio.skip, *args)
        elif action == "reopen":
            await self.call(self.studio.reopen, *args)
        else:  # flag
            body = await request.json()
            flagged = body.get("flagged") if isinstance(body, dict) else None
            if not isinstance(flagged, bool):
                raise Refused(400, 'send {"flagged": true} or {"flagged": false}')
            await self.call(self.studio.flag, *args, flagged)
        opened = await self.assignment(login, request.match_info["ref"])
        return web.json_response(await self._state(login, opened.view, opened.session))

    # -- admin -------------------------------------------------------------------------

    async def dashboard(self, request: web.Request, login: Login) -> web.Response:
        info = await self.call(self.studio.study, login.study_id)
        progress = await self.call(self.studio.progress, login.study_id)
        adjudications = await self.call(self.studio.adjudications, login.study_id)
        rows = [(a, self.ref(login.study_id, a.session_id)) for a in adjudications]
        return self.html(
            "dashboard.html.j2", login=login, info=info, progress=progress, adjudications=rows
        )

    async def adjudicate_page(self, request: web.Request) -> web.Response:
        login = await self.login_of(request, admin=True)
        summary = await self.double_rated(login, request.match_info["ref"])
        view = await self.call(self.studio.adjudication, login.study_id, summary.session_id)
        if view is None:
            a, b = summary.raters
            raise Refused(
                409,
                f"Not both raters have submitted this session yet ({a}, {b}): "
                "the side-by-side view opens once both have.",
            )
        numbers = _turn_numbers(view.session)
        items = {
            it.key: {
                "values": {r: _rating_json(v, numbers) for r, v in it.values.items()},
                "differs": it.differs,
                "consensus": _rating_json(it.consensus, numbers),
            }
            for it in view.items
        }
        return self.html(
            "adjudicate.html.j2",
            login=login,
            view=view,
            items=items,
            session=view.session,
            state={"ratings": {k: v["consensus"] for k, v in items.items()}},
            save_url=study_path(login.study_id, "api", "adjudicate", request.match_info["ref"]),
        )

    async def save_consensus(self, request: web.Request) -> web.Response:
        login = await self.login_of(request, admin=True)
        summary = await self.double_rated(login, request.match_info["ref"])
        view = await self.call(self.studio.adjudication, login.study_id, summary.session_id)
        if view is None:
            raise Refused(409, "Both raters must submit this session before a consensus.")
        change = _parse_rating(await request.json(), view.session)
        saved = await self.call(
            self.studio.save_consensus,
            login.study_id,
            summary.session_id,
            change["item"],
            change["value"],
            change["evidence"],
            change["note"],
            na=change["na"],
        )
        return web.json_response(
            {"item": change["item"], "saved": _rating_json(saved, _turn_numbers(view.session))}
        )

    async def agreement_page(self, request: web.Request) -> web.Response:
        login = await self.login_of(request, admin=True)
        view = await self.call(self.studio.agreement, login.study_id)
        section = Markup(html_section(view.report)) if view.report is not None else None
        items = list(dict.fromkeys(k for r in view.raters for k in r.items))
        return self.html("agreement.html.j2", login=login, view=view, section=section, items=items)

    async def agreement_json(self, request: web.Request) -> web.Response:
        login = await self.login_of(request, admin=True)
        view = await self.call(self.studio.agreement, login.study_id)
        return web.json_response(json.loads(view.model_dump_json()))

    # -- static and errors ---------------------------------------------------------------

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise Refused(404, f"Nothing at {request.path}.")
        return web.Response(body=_static(name), content_type=_STATIC[name], charset="utf-8")

    async def root(self, request: web.Request) -> web.Response:
        return self.html("root.html.j2")

    def error(self, request: web.Request, status: int, message: str, **extra: Any) -> web.Response:
        if request.method != "GET" or "/api/" in request.path:
            return web.json_response({"error": message, **extra}, status=status)
        study = request.match_info.get("study") if request.match_info else None
        return self.html("error.html.j2", status=status, code=status, message=message, study=study)


def _csrf_ok(request: web.Request, login: Login) -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(sent.encode(), login.csrf.encode())


def studio_app(
    store_path: Path | str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
    hosts: Iterable[str] | None = None, studio: Studio | None = None,
    ref_key: bytes | None = None,
) -> web.Application:  # fmt: skip
    """The studio's aiohttp application over the store at `store_path`.

    `hosts`: the Host header values answered; by default those `allowed_hosts(host, port)`
    gives. Requests naming another host get 421. `studio`: an open Studio to use (its
    owner closes it); by default the app opens one and closes it on shutdown. `ref_key`:
    the secret session refs are keyed with (`session_ref`); by default a fresh one.
    """
    owned = studio is None
    key = ref_key if ref_key is not None else secrets.token_bytes(32)
    pages = Pages(studio if studio is not None else Studio(store_path), key)
    answered = allowed_hosts(host, port) if hosts is None else tuple(hosts)

    async def check_post(request: web.Request) -> None:
        """A POST's CSRF defences, before anything is read or written. JSON only: a page
        elsewhere cannot send JSON here without a CORS preflight, which this app never
        grants (this guards the login, which has no session yet); then the session's
        token, which only this app's own pages know."""
        if request.content_type != "application/json":
            raise Refused(415, "Send JSON (Content-Type: application/json).")
        if request.match_info.route.name == "login":
            return
        login = await pages.login_of(request)
        if not _csrf_ok(request, login):
            raise Refused(403, f"Missing or wrong {CSRF_HEADER} header: reload the page.")

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if answered is not None and request.host.lower() not in answered:
                raise Refused(421, "This studio answers its own address only (Host refused).")
            if request.method == "POST" and request.match_info.http_exception is None:
                await check_post(request)
            response = await handler(request)
        except Refused as err:
            response = pages.error(request, err.status, err.message, **err.extra)
        except NotAssigned:
            response = pages.error(request, 403, "This session is not assigned to you.")
        except RatingError as err:
            response = pages.error(request, 400, str(err))
        except StudyError as err:
            response = pages.error(request, 404, str(err))
        except json.JSONDecodeError:
            response = pages.error(request, 400, "The body is not valid JSON.")
        except web.HTTPRequestEntityTooLarge:
            response = pages.error(request, 413, f"The body is over {MAX_BODY} bytes.")
        except web.HTTPNotFound:
            response = pages.error(request, 404, f"Nothing at {request.path}.")
        except web.HTTPMethodNotAllowed as err:
            response = pages.error(request, 405, f"{request.method} is not answered here.")
            response.headers["Allow"] = ", ".join(sorted(err.allowed_methods))
        except web.HTTPException:
            raise
        except Exception:
            log.exception("studio: %s %s failed", request.method, request.path)
            response = pages.error(request, 500, "The studio failed on this request; see its log.")
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        headers["Cache-Control"] = "no-store"
        return response

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    r = app.router
    ref = "{ref:[0-9a-f]{16}}"
    r.add_get("/", pages.root)
    r.add_get("/static/{name}", pages.static)
    r.add_get("/s/{study}/login", pages.login_page)
    r.add_post("/s/{study}/login", pages.login, name="login")
    r.add_post("/s/{study}/logout", pages.logout)
    r.add_get("/s/{study}/", pages.home)
    r.add_get(f"/s/{{study}}/a/{ref}", pages.rate_page)
    r.add_get(f"/s/{{study}}/api/a/{ref}", pages.rate_state)
    r.add_post(f"/s/{{study}}/api/a/{ref}", pages.save)
    r.add_post(f"/s/{{study}}/api/a/{ref}/{{action:submit|skip|reopen|flag}}", pages.act)
    r.add_get(f"/s/{{study}}/adjudicate/{ref}", pages.adjudicate_page)
    r.add_post(f"/s/{{study}}/api/adjudicate/{ref}", pages.save_consensus)
    r.add_get("/s/{study}/agreement", pages.agreement_page)
    r.add_get("/s/{study}/api/agreement", pages.agreement_json)

    if owned:

        async def close(_: web.Application) -> None:
            pages.studio.close()

        app.on_cleanup.append(close)
    return app


class StudioServer(BackgroundServer):
    """The studio on a background thread (tests): `start()`, `url`, `stop()`.
    `access_log`: a logger for aiohttp's access log (None: none, as `serve_studio`)."""

    name = "therapygym-studio"
    bind_error = StudioServerError

    def __init__(
        self,
        store_path: Path | str,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        access_log: logging.Logger | None = None,
    ) -> None:
        super().__init__(host, port)
        self.store_path = store_path
        self._access_log = access_log
        self._ref_key = secrets.token_bytes(32)

    def ref(self, study_id: str, session_id: str) -> str:
        """A session's ref in this server's URLs (tests and screenshots build links)."""
        return session_ref(self._ref_key, study_id, session_id)

    def build(self, port: int) -> tuple[web.Application, dict[str, Any] | None]:
        app = studio_app(self.store_path, self.host, port, ref_key=self._ref_key)
        return app, ({"access_log": self._access_log} if self._access_log else None)


def serve_studio(store_path: Path, host: str, port: int, console: Console) -> None:
    """Serve until interrupted (Ctrl-C): what `therapygym studio serve` runs. Prints the
    address, and a warning when `host` is not loopback (plain HTTP on a network)."""
    sock = bind(host, port, StudioServerError)
    try:
        studio = Studio(store_path)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    app = studio_app(store_path, host, bound, studio=studio)

    async def announce(_: web.Application) -> None:
        console.print(
            f"therapygym studio on [bold]{http_url(host, bound)}[/bold]: raters open the login "
            "links `studio create` printed (Ctrl-C to stop)"
        )
        if not _is_loopback(host):
            console.print(
                f"[yellow]warning:[/yellow] listening on {host} over plain HTTP, without TLS: "
                "login tokens, cookies and transcripts cross the network unencrypted. "
                "Put a TLS reverse proxy in front and keep the studio on 127.0.0.1 "
                "(docs/studio.md)."
            )

    app.on_startup.append(announce)
    try:
        web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)
    finally:
        studio.close()

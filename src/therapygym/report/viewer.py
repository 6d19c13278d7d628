"""`therapygym view`: a local, read-only web app over a run store.

Pages: the runs (`/`), a run's leaderboard, charts and sessions with filters by
therapist, patient, violated safety label and status (`/runs/{run_id}`), and one
transcript with its scores and evidence (`/sessions/{session_id}`); the same data as JSON
under `/api/`. The store is opened in SQLite's read-only mode, the server answers GET
(and HEAD) only, and by default it listens on 127.0.0.1 and answers only requests
addressed to a loopback name (a web page elsewhere cannot reach it by DNS rebinding).
Pages are the report's templates (autoescaped) under the report's
Content-Security-Policy. A run's numbers are computed once and reused until the store
changes (SQLite's `data_version`), so a run being judged shows new scores on reload.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from therapygym.errors import TherapygymError
from therapygym.judges.panel import Aggregation
from therapygym.report.charts import Chart, run_charts
from therapygym.report.data import RunData, SessionView, run_data, single_session
from therapygym.report.html import content_security_policy, render_page, session_href
from therapygym.store import RunStore, StoreError
from therapygym.web_thread import BackgroundServer, bind, http_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
FILTERS = ("therapist", "patient", "label", "status")
_CACHED_RUNS = 8
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ViewerError(TherapygymError):
    """The viewer cannot start (the port is taken, the store cannot be read)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ViewerData:
    """The read-only store and the runs computed from it (kept until the store changes)."""

    def __init__(self, store: RunStore, aggregation: Aggregation = "mean") -> None:
        self.store = store
        self.aggregation = aggregation
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, tuple[int, RunData, list[Chart]]] = OrderedDict()

    def run(self, run_id: str) -> tuple[RunData, list[Chart]]:
        version = self.store.data_version()
        with self._lock:
            hit = self._runs.get(run_id)
            if hit is not None and hit[0] == version:
                self._runs.move_to_end(run_id)
                return hit[1], hit[2]
        data = run_data(self.store, run_id, self.aggregation)
        charts = run_charts(data)
        with self._lock:
            self._runs[run_id] = (version, data, charts)
            self._runs.move_to_end(run_id)
            while len(self._runs) > _CACHED_RUNS:
                self._runs.popitem(last=False)
        return data, charts

    def session(self, session_id: str) -> SessionView:
        view, _ = single_session(self.store, session_id, self.aggregation)
        return view


def _filters(request: web.Request) -> dict[str, str]:
    return {k: request.query[k] for k in FILTERS if request.query.get(k)}


def _session_row(sv: SessionView) -> dict[str, Any]:
    t, s = sv.transcript, sv.scores
    return {
        "session_id": t.session_id,
        "profile_id": t.profile_id,
        "therapist": t.therapist,
        "sample": t.sample,
        "status": t.status.value,
        "turns": len(t.turns),
        "ctrs_total": s.ctrs_total if s else None,
        "ctrs_normalised": s.ctrs_normalised if s else None,
        "violated": sv.violated,
    }


def _href(sv: SessionView) -> str:
    return session_href(sv.transcript.session_id)


class _Pages:
    def __init__(self, data: ViewerData) -> None:
        self.data = data
        self.csp = content_security_policy(forms=True)

    def _html(self, template: str, status: int = 200, **context: Any) -> web.Response:
        text = render_page(template, csp=self.csp, **context)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        # SQLite reads and the bootstrap run in a worker thread: the loop stays responsive.
        return await asyncio.to_thread(fn, *args)

    async def index(self, request: web.Request) -> web.Response:
        runs = await self._call(self.data.store.runs)
        return self._html("viewer_index.html.j2", runs=runs, store_path=str(self.data.store.path))

    async def run(self, request: web.Request) -> web.Response:
        data, charts = await self._call(self.data.run, request.match_info["run_id"])
        selected = _filters(request)
        sessions = [sv for sv in data.sessions if sv.matches(**selected)]
        return self._html(
            "viewer_run.html.j2",
            data=data,
            charts=charts,
            sessions=sessions,
            selected=selected,
            session_href=_href,
        )

    async def session(self, request: web.Request) -> web.Response:
        sv = await self._call(self.data.session, request.match_info["session_id"])
        return self._html("viewer_session.html.j2", sv=sv)

    async def api_runs(self, request: web.Request) -> web.Response:
        runs = await self._call(self.data.store.runs)
        return web.json_response([r.model_dump(mode="json") for r in runs])

    async def api_run(self, request: web.Request) -> web.Response:
        data, _ = await self._call(self.data.run, request.match_info["run_id"])
        body = json.loads(data.summary.to_json())
        body["run"] = data.info.model_dump(mode="json")
        return web.json_response(body)

    async def api_sessions(self, request: web.Request) -> web.Response:
        data, _ = await self._call(self.data.run, request.match_info["run_id"])
        selected = _filters(request)
        rows = [_session_row(sv) for sv in data.sessions if sv.matches(**selected)]
        return web.json_response({"filters": selected, "sessions": rows})

    async def api_session(self, request: web.Request) -> web.Response:
        sid = request.match_info["session_id"]
        store = self.data.store
        transcript = await self._call(store.session, sid)
        records = (
            await self._call(lambda: store.scores(transcript.run_id, session_id=sid))
            if transcript.run_id
            else []
        )
        return web.json_response(
            {
                "transcript": transcript.model_dump(mode="json"),
                "scores": [r.model_dump(mode="json") for r in records],
            }
        )

    def error(self, request: web.Request, status: int, message: str) -> web.Response:
        if request.path.startswith("/api/"):
            return web.json_response({"error": message}, status=status)
        return self._html("viewer_error.html.j2", status=status, code=status, message=message)


def build_app(
    store: RunStore,
    *,
    aggregation: Aggregation = "mean",
    allowed_hosts: tuple[str, ...] | None = None,
) -> web.Application:
    """The viewer's aiohttp application over an open (read-only) store.

    `allowed_hosts`: the Host header values answered (None: any); requests naming
    another host get 421, which is what stops DNS rebinding.
    """
    pages = _Pages(ViewerData(store, aggregation))

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            response: web.StreamResponse = pages.error(
                request, 405, "The viewer is read-only: it answers GET requests only."
            )
            response.headers["Allow"] = "GET, HEAD"
        elif allowed_hosts is not None and request.host.lower() not in allowed_hosts:
            response = pages.error(request, 421, "This viewer answers its loopback address only.")
        else:
            try:
                response = await handler(request)
            except StoreError as err:
                response = pages.error(request, 404, str(err))
            except web.HTTPNotFound:
                response = pages.error(request, 404, f"Nothing at {request.path}.")
            except web.HTTPException:
                raise
            except Exception:
                log.exception("viewer: %s %s failed", request.method, request.path)
                response = pages.error(request, 500, "The viewer failed on this page; see its log.")
        headers = response.headers
        headers.setdefault("Content-Security-Policy", pages.csp + "; frame-ancestors 'none'")
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        headers["Cache-Control"] = "no-store"
        return response

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", pages.index)
    app.router.add_get("/runs/{run_id}", pages.run)
    app.router.add_get("/sessions/{session_id}", pages.session)
    app.router.add_get("/api/runs", pages.api_runs)
    app.router.add_get("/api/runs/{run_id}", pages.api_run)
    app.router.add_get("/api/runs/{run_id}/sessions", pages.api_sessions)
    app.router.add_get("/api/sessions/{session_id}", pages.api_session)
    return app


def _allowed_hosts(host: str, port: int) -> tuple[str, ...] | None:
    """Loopback binds answer loopback names only; a deliberate other bind answers any."""
    if not _is_loopback(host):
        return None
    names = {*_LOOPBACK_NAMES, host if ":" not in host else f"[{host.strip('[]')}]"}
    return tuple(sorted(n for name in names for n in (name, f"{name}:{port}")))


class ViewerServer(BackgroundServer):
    """The viewer on a background thread (tests, notebooks): `start()`, `url`, `stop()`."""

    name = "therapygym-viewer"
    bind_error = ViewerError

    def __init__(
        self,
        store_path: Path | str | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        aggregation: Aggregation = "mean",
    ) -> None:
        super().__init__(host, port)
        self.store = RunStore(store_path, read_only=True)
        self.aggregation = aggregation

    def build(self, port: int) -> tuple[web.Application, dict[str, Any] | None]:
        app = build_app(
            self.store, aggregation=self.aggregation, allowed_hosts=_allowed_hosts(self.host, port)
        )
        return app, None

    def release(self) -> None:
        self.store.close()


def serve(
    store_path: Path | str | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    aggregation: Aggregation = "mean",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C): what `therapygym view` runs."""
    store = RunStore(store_path, read_only=True)
    sock = bind(host, port, ViewerError)
    bound = sock.getsockname()[1]
    app = build_app(store, aggregation=aggregation, allowed_hosts=_allowed_hosts(host, bound))
    url = http_url(host, bound)

    async def announce(_: web.Application) -> None:
        if on_ready is not None:
            on_ready(url)

    app.on_startup.append(announce)
    try:
        web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)
    finally:
        store.close()

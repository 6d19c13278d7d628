"""`therapygym view`: a local, read-only web app over a run store.

Pages: the runs (`/`), a run's leaderboard, charts and sessions with filters by
therapist, patient, violated safety label and status (`/runs/{run_id}`), and one
transcript with its scores and evidence (`/sessions/{session_id}`); the same data as JSON
under `/api/`. The store is opened in SQLite's read-only mode, the server answers GET
(and HEAD) only, and by default it listens on 127.0.0.1 and answers only requests
addressed to a loopback name (a web page elsewhere cannot reach it by DNS rebinding).
Pages are the report's templates (autoescaped) under the report's
Content-Security-Policy.

Nothing holds a run's transcripts: the session list is read from the store a page at a
time (`RunStore.session_heads_page`: the therapist, patient and status filters are SQL),
each page's combined scores come from that page's score rows, and a transcript is read
when it is opened. The run's summary (the leaderboard and charts, and which sessions
violated which safety label, for the label filter) is computed in a worker process, so
the viewer's memory and its pages' time stay those of a page, and kept until the store
changes (SQLite's `data_version`), so a run being judged shows new scores on reload. A
page of a run of at most `SMALL_RUN` sessions waits for it; a larger run's pages never do
(its summary takes longer than a page should: minutes at 100,000 sessions).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

from aiohttp import web

from therapygym.errors import TherapygymError
from therapygym.judges.aggregate import SessionScores, TherapistSummary
from therapygym.judges.panel import Aggregation
from therapygym.report.charts import Chart, run_charts
from therapygym.report.data import (
    ANY_VIOLATION,
    RunData,
    SessionView,
    ranked_violations,
    rubric_names,
    single_session,
    violated_labels,
)
from therapygym.report.html import content_security_policy, render_page, session_href
from therapygym.report.session_batches import run_ctrs_version, scores_of_batch
from therapygym.store import RunInfo, RunStore, SessionHead, StoreError
from therapygym.summary import PackedSessions, Summary, summarise
from therapygym.web_thread import BackgroundServer, bind, http_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
FILTERS = ("therapist", "patient", "label", "status")
PER_PAGE = 100  # sessions a page lists (`?per_page=` up to MAX_PER_PAGE)
MAX_PER_PAGE = 1000
SMALL_RUN = 2000  # sessions: a run this small is summarised in a few seconds (mostly the
# worker's start), so its page waits for the leaderboard rather than leaving it out
_CACHED_RUNS = 8
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ViewerError(TherapygymError):
    """The viewer cannot start (the port is taken, the store cannot be read)."""


class _BadRequest(TherapygymError):
    """A query parameter the viewer cannot use (answered 400 with this message)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SessionRow:
    """One line of the session list: the session without its turns and its combined
    scores (None: failed, or not judged yet)."""

    head: SessionHead
    scores: SessionScores | None

    @property
    def violated(self) -> list[str]:
        return violated_labels(self.scores)

    @property
    def violations(self) -> list[str]:
        """The violated labels with their severity, gravest first (as `SessionView`)."""
        return ranked_violations(self.scores)

    def as_json(self) -> dict[str, Any]:
        h, s = self.head, self.scores
        return {
            "session_id": h.session_id,
            "profile_id": h.profile_id,
            "therapist": h.therapist,
            "sample": h.sample,
            "status": h.status.value,
            "turns": h.n_turns,
            "ctrs_total": s.ctrs_total if s else None,
            "ctrs_normalised": s.ctrs_normalised if s else None,
            "violated": self.violated,
        }


@dataclass(frozen=True)
class SessionPage:
    """A page of a run's (filtered) sessions: its rows, how many match in all, and where
    it is (pages count from 1)."""

    rows: list[SessionRow]
    total: int
    page: int
    per_page: int
    pending: bool = False  # a label filter waiting for the run's summary: nothing listed yet

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


@dataclass(frozen=True)
class _Computed:
    """What the summary's worker sends back: the summary, the sessions with a violated
    safety label (ids in run order, with the labels) and every label judged. The label
    filter reads these, at a few hundred bytes per violating session."""

    summary: Summary
    violating: list[tuple[str, tuple[str, ...]]]
    labels: frozenset[str]


def _computed(store: RunStore, run_id: str, how: Aggregation) -> _Computed:
    summary = summarise(store, run_id, how)
    violating: list[tuple[str, tuple[str, ...]]] = []
    labels: set[str] = set()
    for s in summary.sessions:  # run order: profile, therapist, sample, session id
        labels.update(s.safety)
        if yes := tuple(k for k, v in s.safety.items() if v.verdict == "yes"):
            violating.append((s.session_id, yes))
    return _Computed(summary, violating, frozenset(labels))


class _Violator(NamedTuple):
    """A session with a violated safety label: what the label filter and the other
    filters read of it (a few hundred bytes: a `SessionHead` is several times that, about
    1.8 KB, and a run can have tens of thousands of violating sessions)."""

    session_id: str
    therapist: str
    profile_id: str
    status: str
    labels: tuple[str, ...]


@dataclass
class _Board:
    """A run's summary being computed or computed, the store version it was computed
    from, and (once computed) the leaderboard and charts made of it, and the violating
    sessions' heads."""

    version: int
    info: RunInfo
    future: Future[_Computed]
    shown: tuple[RunData, list[Chart]] | None = None
    violating: list[_Violator] | None = None


_WORKER = "from therapygym.report.viewer import _summary_worker; _summary_worker()"


def _summary_worker() -> None:
    """A worker process's whole life (`python -c _WORKER STORE RUN AGGREGATION`): one
    run's `_Computed` written to stdout as JSON lines (a head, then one line per
    session's scores, so neither side holds them all as text), or one line with the
    error that stopped it. JSON rather than pickle: nothing the viewer reads can run code."""
    path, run_id, how = sys.argv[1:4]
    out = sys.stdout
    try:
        store = RunStore(path, read_only=True)
        try:
            computed = _computed(store, run_id, how)  # type: ignore[arg-type]
        finally:
            store.close()
    except Exception as err:  # the viewer raises it where the page asked
        out.write(json.dumps({"error": str(err), "store": isinstance(err, StoreError)}) + "\n")
        return
    summary = computed.summary
    head = {
        "run_id": summary.run_id,
        "judges": summary.judges,
        "embedded_judges": summary.embedded_judges,
        "therapists": [t.model_dump(mode="json") for t in summary.therapists],
        "violating": computed.violating,
        "labels": sorted(computed.labels),
    }
    out.write(json.dumps(head) + "\n")
    for scores in summary.sessions:
        out.write(scores.model_dump_json() + "\n")
    out.flush()


def _read_computed(lines: Iterator[str], run_id: str) -> _Computed:
    """The worker's `_Computed` from its JSON lines, the sessions packed as `summarise`
    packs them; its error raised as a `StoreError` (a page's 4xx) or a `ViewerError`."""
    head = json.loads(next(lines))
    if "error" in head:
        raise (StoreError if head["store"] else ViewerError)(head["error"])
    sessions = PackedSessions()
    for line in lines:
        sessions.append(SessionScores.model_validate_json(line))
    summary = Summary(
        run_id=head["run_id"],
        judges=head["judges"],
        sessions=sessions,
        therapists=[TherapistSummary.model_validate(t) for t in head["therapists"]],
        embedded_judges=head["embedded_judges"],
    )
    violating = [(sid, tuple(labels)) for sid, labels in head["violating"]]
    return _Computed(summary, violating, frozenset(head["labels"]))


def _summary_in_background(
    path: Path, run_id: str, how: Aggregation, workers: set[subprocess.Popen[str]]
) -> Future[_Computed]:
    """The run's summary computed in a fresh Python process: its memory and CPU are that
    process's, so the viewer's own stay those of its pages, and no page is slowed by it.
    (A new interpreter rather than `multiprocessing`: it imports no caller's main module
    and forks no thread of the server.) The result is read line by line from its stdout
    on a daemon thread; `workers` holds it while it runs, so that stopping the viewer can
    end it."""
    future: Future[_Computed] = Future()
    future.set_running_or_notify_cancel()
    errors = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115  # closed in wait
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(path), run_id, how],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        encoding="utf-8",
    )
    workers.add(process)

    def wait() -> None:
        assert process.stdout is not None
        try:
            with process.stdout as lines:
                future.set_result(_read_computed(iter(lines), run_id))
        except (StoreError, ViewerError) as err:
            future.set_exception(err)
        except Exception:  # no output, or cut off: the process stopped
            process.wait()
            errors.seek(0)
            why = (errors.read().strip().splitlines() or ["no output"])[-1]
            future.set_exception(
                ViewerError(
                    f"the summary of run '{run_id}' stopped without a result (exit "
                    f"{process.returncode}: {why})"
                )
            )
        finally:
            process.wait()
            errors.close()
            workers.discard(process)

    threading.Thread(target=wait, name="therapygym-viewer-summary", daemon=True).start()
    return future


class ViewerData:
    """The read-only store, read a page at a time, and per run what is worth keeping
    until the store changes: the summary, and (once asked for) the label index."""

    def __init__(self, store: RunStore, aggregation: Aggregation = "mean") -> None:
        self.store = store
        self.aggregation = aggregation
        self.names = rubric_names()
        self.small_run = SMALL_RUN
        self._lock = threading.Lock()
        self._boards: OrderedDict[str, _Board] = OrderedDict()
        self._workers: set[subprocess.Popen[str]] = set()

    def close(self) -> None:
        """End the summaries still being computed (the viewer is stopping)."""
        for process in list(self._workers):
            process.kill()

    def _ready(self, run_id: str, wait_all: bool) -> tuple[_Board | None, bool]:
        """The run's computed summary, waited for when `wait_all` or when the run has at
        most `small_run` sessions (else None until it is computed), and whether it is the
        store's current one. Computed in a worker process, one at a time per run; while a
        newer one is computed, the last one is given (marked not current)."""
        info = self.store.run(run_id)  # an unknown run is a 404 now, not in the worker
        version = self.store.data_version()
        with self._lock:
            board = self._boards.get(run_id)
            stale = board if board is not None and board.version != version else None
            if board is None or (stale is not None and stale.future.done()):
                work = _summary_in_background(
                    self.store.path, run_id, self.aggregation, self._workers
                )
                board = _Board(version, info, work)
                self._boards[run_id] = board
            self._boards.move_to_end(run_id)
            while len(self._boards) > _CACHED_RUNS:
                self._boards.popitem(last=False)
        try:
            wait = None if wait_all or info.sessions <= self.small_run else 0
            board.future.result(timeout=wait)
            return board, board.version == version
        except FutureTimeout:
            if stale is not None and stale.future.done() and stale.future.exception() is None:
                return stale, False
            return None, False

    def board(
        self, run_id: str, *, wait_all: bool = False
    ) -> tuple[tuple[RunData, list[Chart]] | None, bool]:
        """The run's leaderboard data and charts (`_ready`'s wait), made once per summary,
        and whether they are the store's current ones."""
        board, current = self._ready(run_id, wait_all)
        if board is None:
            return None, False
        with self._lock:
            if board.shown is None:
                data = RunData(
                    info=board.info,
                    summary=board.future.result().summary,
                    names=self.names,
                    sessions=[],
                    aggregation=self.aggregation,
                )
                board.shown = data, run_charts(data)
            return board.shown, current

    def violations(self, run_id: str, *, wait_all: bool = False) -> list[_Violator] | None:
        """The sessions with a violated safety label, in run order (None while the run's
        summary is computed: `_ready`'s wait)."""
        board, _ = self._ready(run_id, wait_all)
        if board is None:
            return None
        with self._lock:
            if board.violating is None:
                violating = board.future.result().violating
                board.violating = []
                for start in range(0, len(violating), 1000):  # a thousand heads at a time
                    chunk = violating[start : start + 1000]
                    heads = {h.session_id: h for h in self.store.session_heads_of(
                        [sid for sid, _ in chunk]
                    )}  # fmt: skip
                    board.violating += [
                        _Violator(sid, h.therapist, h.profile_id, h.status.value, yes)
                        for sid, yes in chunk
                        if (h := heads.get(sid)) is not None
                    ]
            return board.violating

    def choices(self, run_id: str) -> dict[str, list[str]]:
        """Values the filters offer: the run's therapists, patients and statuses, and the
        safety labels (the shipped rubric's, and the run's once its summary is computed)."""
        values = self.store.session_values(run_id)
        with self._lock:
            board = self._boards.get(run_id)
        seen: frozenset[str] = frozenset()
        if board is not None and board.future.done() and board.future.exception() is None:
            seen = board.future.result().labels
        values["label"] = self.names.label_order(set(self.names.labels) | seen)
        return values

    def page(
        self,
        run_id: str,
        selected: dict[str, str],
        page: int,
        per_page: int = PER_PAGE,
        *,
        wait_all: bool = False,
    ) -> SessionPage:
        """One page of the run's sessions matching `selected`, with their scores. A label
        filter reads the violated labels of the run's summary (`violations`): until it is
        computed, the page is empty and `pending`."""
        label = selected.get("label")
        if label:
            violating = self.violations(run_id, wait_all=wait_all)
            if violating is None:
                return SessionPage(rows=[], total=0, page=page, per_page=per_page, pending=True)
            matching = [
                v.session_id
                for v in violating
                if (label == ANY_VIOLATION or label in v.labels) and _matches(v, selected)
            ]
            total = len(matching)
            shown = matching[(page - 1) * per_page : page * per_page]
            by_id = {h.session_id: h for h in self.store.session_heads_of(shown)}
            heads = [by_id[sid] for sid in shown if sid in by_id]
        else:
            heads, total = self.store.session_heads_page(
                run_id,
                offset=(page - 1) * per_page,
                limit=per_page,
                therapist=selected.get("therapist"),
                patient=selected.get("patient"),
                status=selected.get("status"),
            )
        version = run_ctrs_version(self.store, run_id)
        scored = {s.session_id: s for s in scores_of_batch(
            self.store, heads, self.aggregation, version
        )}  # fmt: skip
        rows = [SessionRow(h, scored.get(h.session_id)) for h in heads]
        return SessionPage(rows=rows, total=total, page=page, per_page=per_page)

    def session(self, session_id: str) -> SessionView:
        view, _ = single_session(self.store, session_id, self.aggregation)
        return view


def _matches(v: _Violator, selected: dict[str, str]) -> bool:
    return (
        selected.get("therapist", v.therapist) == v.therapist
        and selected.get("patient", v.profile_id) == v.profile_id
        and selected.get("status", v.status) == v.status
    )


def _harden(headers: Any, csp: str) -> None:
    """Every response's security headers (the page's own CSP where it sets one)."""
    headers.setdefault("Content-Security-Policy", csp + "; frame-ancestors 'none'")
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Cache-Control"] = "no-store"


def _filters(request: web.Request) -> dict[str, str]:
    return {k: request.query[k] for k in FILTERS if request.query.get(k)}


def _positive(request: web.Request, name: str, default: int, most: int | None = None) -> int:
    text = request.query.get(name)
    if not text:
        return default
    if not text.isdigit() or int(text) < 1 or (most is not None and int(text) > most):
        bound = f" up to {most}" if most is not None else ""
        raise _BadRequest(f"?{name}={text[:40]!r}: expected a whole number from 1{bound}")
    return int(text)


def _page_href(run_id: str, selected: dict[str, str], page: int, per_page: int) -> str:
    query = {**selected, "page": str(page)}
    if per_page != PER_PAGE:
        query["per_page"] = str(per_page)
    return f"/runs/{run_id}?{urlencode(query)}#sessions"


def _href(row: SessionRow) -> str:
    return session_href(row.head.session_id)


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

    def _paging(self, request: web.Request) -> tuple[int, int]:
        per_page = _positive(request, "per_page", PER_PAGE, MAX_PER_PAGE)
        return _positive(request, "page", 1), per_page

    async def index(self, request: web.Request) -> web.Response:
        runs = await self._call(self.data.store.runs)
        return self._html("viewer_index.html.j2", runs=runs, store_path=str(self.data.store.path))

    async def run(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        page, per_page = self._paging(request)
        selected = _filters(request)
        # the leaderboard's wait (if its summary is not ready) overlaps the page's reads
        waiting = asyncio.ensure_future(self._call(self.data.board, run_id))
        try:
            sessions = await self._call(self.data.page, run_id, selected, page, per_page)
        finally:
            board, current = await waiting
        info = await self._call(self.data.store.run, run_id)
        choices = await self._call(self.data.choices, run_id)
        pages = {
            "prev": _page_href(run_id, selected, page - 1, per_page) if page > 1 else None,
            "next": _page_href(run_id, selected, page + 1, per_page)
            if page < sessions.pages
            else None,
        }
        return self._html(
            "viewer_run.html.j2",
            info=info,
            names=self.data.names,
            board=board[0] if board else None,
            charts=board[1] if board else [],
            board_current=current,
            sessions=sessions,
            pages=pages,
            choices=choices,
            selected=selected,
            session_href=_href,
        )

    async def session(self, request: web.Request) -> web.Response:
        sv = await self._call(self.data.session, request.match_info["session_id"])
        return self._html("viewer_session.html.j2", sv=sv)

    async def api_runs(self, request: web.Request) -> web.Response:
        runs = await self._call(self.data.store.runs)
        return web.json_response([r.model_dump(mode="json") for r in runs])

    async def api_run(self, request: web.Request) -> web.StreamResponse:
        """The summary JSON (`Summary.json_chunks`, what `eval -o` writes) with the run's
        `run` record added, written as it is made: a run's sessions are never all held
        as JSON at once (hundreds of MB at 100,000 sessions)."""
        run_id = request.match_info["run_id"]
        board, _ = await self._call(lambda: self.data.board(run_id, wait_all=True))
        data = board[0]
        run = json.dumps(data.info.model_dump(mode="json"), indent=2).replace("\n", "\n  ")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        _harden(response.headers, self.csp)  # sent with `prepare`, before the guard sees it
        await response.prepare(request)
        chunks = data.summary.json_chunks()
        pending = ""  # the last piece, which ends the summary's object: `run` goes before
        while batch := await self._call(lambda: list(itertools.islice(chunks, 256))):
            await response.write((pending + "".join(batch[:-1])).encode())
            pending = batch[-1]
        await response.write((pending.rstrip()[:-1].rstrip() + f',\n  "run": {run}\n}}').encode())
        await response.write_eof()
        return response

    async def api_sessions(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        page, per_page = self._paging(request)
        selected = _filters(request)
        await self._call(self.data.store.run, run_id)  # an unknown run is a 404
        sessions = await self._call(
            lambda: self.data.page(run_id, selected, page, per_page, wait_all=True)
        )
        return web.json_response(
            {
                "filters": selected,
                "page": sessions.page,
                "per_page": sessions.per_page,
                "pages": sessions.pages,
                "total": sessions.total,
                "sessions": [row.as_json() for row in sessions.rows],
            }
        )

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
    data = ViewerData(store, aggregation)
    pages = _Pages(data)

    async def stop_workers(_: web.Application) -> None:
        data.close()

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
            except _BadRequest as err:
                response = pages.error(request, 400, str(err))
            except web.HTTPNotFound:
                response = pages.error(request, 404, f"Nothing at {request.path}.")
            except web.HTTPException:
                raise
            except Exception:
                log.exception("viewer: %s %s failed", request.method, request.path)
                response = pages.error(request, 500, "The viewer failed on this page; see its log.")
        if not response.prepared:  # a streamed response was hardened before it was sent
            _harden(response.headers, pages.csp)
        return response

    app = web.Application(middlewares=[guard])
    app.on_cleanup.append(stop_workers)
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

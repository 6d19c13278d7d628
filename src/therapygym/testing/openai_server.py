"""A scripted OpenAI chat-completions server on 127.0.0.1, with latency and fault injection.

Why a real HTTP server instead of mocking the client: integration tests and benchmarks
must exercise exactly what production exercises -- the model layer's HTTP path
(``therapygym.models.http``, aiohttp), its connection pool, its timeouts, its error
mapping and our retry logic on top.  A socket that really answers 429, hangs, sends
broken JSON or drops the connection is the only way to test those paths end to end, and
it costs nothing but a loopback port.  Its own tests drive it with the official
``openai`` client, so its answers and faults look like the real API's.

Use it in-process::

    with FakeOpenAIServer(["first reply", {"score": 3}], latency_s=0.05) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused")
        ...
        assert server.fault_counts["ok"] == 2

or as a separate process (benchmarks, so the server does not share the client's CPU)::

    python -m therapygym.testing.openai_server --port 0 --latency-ms 100 --fault 429=0.1

which prints ``READY http://127.0.0.1:PORT/v1`` once listening and serves until
SIGTERM/SIGINT.

Lenient by default: any schema and any parameters are taken. ``strict=True`` (``--strict``)
refuses what a hosted API refuses (``testing/hosted_rules.py``), with the hosted error's
shape: a strict ``response_format`` schema outside OpenAI's strict subset, and
``max_tokens`` or a non-default temperature sent to a reasoning model (o1, o3, o4-mini,
gpt-5), so a test fails where a real call would.

The same script also answers Anthropic's ``POST /v1/messages`` (``testing/anthropic_messages.py``:
tool use for schema-constrained answers, Anthropic's error shape), so ``anthropic:`` models
are tested against the same socket, faults and latency.

Tokens are counted as whitespace-separated words: cheap, deterministic and good enough
to test budget accounting.  Request headers are never logged (they carry API keys); the
server keeps only the SHA-256 digests of the bearer tokens it was sent (``key_digests``),
so a test can check that a key was used without the key being kept anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import enum
import hashlib
import json
import logging
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

from aiohttp import web

from therapygym.testing.hosted_rules import parameter_refusal, schema_refusal
from therapygym.web_thread import ThreadedApp

__all__ = ["FakeOpenAIServer", "Fault", "Replier", "Reply", "main", "server_process"]

logger = logging.getLogger(__name__)

Reply: TypeAlias = str | dict[str, Any]
"""A scripted answer; a dict is ``json.dumps``-ed into ``message.content`` (judge JSON)."""

Replier: TypeAlias = Callable[[dict[str, Any]], Reply]
"""Computes a reply from the parsed request body. Runs on the server's event loop: keep it fast."""

# The kernel accept queue must hold a whole burst of concurrent clients: when it overflows
# (aiohttp's default is 128) while the loop is busy, connects are reset or wait for a SYN
# retry (~1 s), which benchmarks would misread as errors or latency spikes.
_BACKLOG = 2048
# On stop(), in-flight requests get this long to finish before their handlers are
# cancelled, so a HANG in progress never holds stop() for hang_s.
_SHUTDOWN_GRACE_S = 1.0
# What MALFORMED sends: a completion cut off mid-object, as a dying proxy would.
_MALFORMED_BODY = '{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"ind'


class Fault(enum.StrEnum):
    """A failure the server can inject instead of (or before) a normal answer.

    A ``str`` enum, so ``fault_counts[Fault.RATE_LIMIT]`` and ``fault_counts["429"]`` agree.
    """

    RATE_LIMIT = "429"  # HTTP 429, OpenAI-style error body, ``Retry-After: 0``
    SERVER_ERROR = "500"  # HTTP 500, OpenAI-style error body
    HANG = "hang"  # sleep ``hang_s`` and then answer normally: past any sane client timeout
    MALFORMED = "malformed"  # HTTP 200, application/json, truncated (invalid) JSON body
    DROP = "drop"  # close the connection without sending any HTTP response
    # HTTP 401 whose message quotes the API key the request carried, as some gateways do:
    # what the client puts in its errors must mask it.
    UNAUTHORIZED = "401"

    @classmethod
    def parse(cls, value: Fault | str) -> Fault:
        """Accept a member, its value (``"429"``, ``"hang"``) or its name (``"rate_limit"``)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            try:
                return cls[str(value).upper()]
            except KeyError:
                choices = ", ".join(f.value for f in cls)
                raise ValueError(f"unknown fault {value!r}; expected one of: {choices}") from None


def _error(
    status: int,
    message: str,
    err_type: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error response in the shape the ``openai`` client parses into ``exc.body``."""
    body = {"error": {"message": message, "type": err_type, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _text_of(content: Any) -> str:
    """Plain text of a message ``content``: a string, or a list of parts (text parts only)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _truncate(text: str, max_words: int | None) -> tuple[str, bool]:
    """Cut ``text`` to ``max_words`` words; the flag tells whether anything was cut.

    Text that fits is returned verbatim (whitespace preserved) so scripted JSON survives.
    """
    if max_words is None:
        return text, False
    words = text.split()
    if len(words) <= max_words:
        return text, False
    return " ".join(words[:max_words]), True


def _request_problem(body: dict[str, Any]) -> tuple[str, str] | None:
    """Why a chat request is invalid, as ``(param, message)``, or None if it is fine."""
    messages = body.get("messages")
    if not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)):
        return "messages", "'messages' must be a non-empty array of message objects."
    if body.get("stream"):
        return "stream", "This fake server does not support streaming; send 'stream': false."
    for param in ("max_completion_tokens", "max_tokens"):
        value = body.get(param)
        if value is not None and (type(value) is not int or value < 1):  # bool is no int here
            return param, f"'{param}' must be a positive integer."
    return None


class FakeOpenAIServer:
    """Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` from a background thread.

    Replies: ``None`` answers ``"You said: <last user message>"``; a sequence is cycled in
    order (it advances only on normal answers, so a retry after an injected fault gets the
    reply the failed attempt would have had); a callable is called with each request body.
    A single ``str``/``dict`` is taken as a one-element sequence.

    Faults: request ``i`` (in arrival order, counting every chat request since start)
    gets ``fault_script[i]``; once the script is exhausted, each request draws one number
    from ``random.Random(seed)`` and gets fault F with probability ``fault_rates[F]``
    (faults are mutually exclusive, so the rates must sum to at most 1).  The fault
    *sequence* is therefore reproducible for a given seed; which concurrent request
    receives which fault depends on arrival order.  Faults are injected after
    ``latency_s`` and before request validation, like a gateway in front of the model.

    ``keep_requests=False`` leaves ``requests`` empty: the command-line server does, since
    no one can read it from another process, and holding every body cost a benchmark of
    11,500 calls 85 MB and about 20 µs of server CPU per call (docs/benchmarks.md).
    """

    def __init__(
        self,
        replies: Replier | Sequence[Reply] | Reply | None = None,
        *,
        latency_s: float = 0.0,
        fault_rates: Mapping[Fault | str, float] | None = None,
        fault_script: Sequence[Fault | str | None] | None = None,
        hang_s: float = 30.0,
        seed: int = 0,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        strict: bool = False,
        keep_requests: bool = True,
    ) -> None:
        if latency_s < 0 or hang_s < 0:
            raise ValueError("latency_s and hang_s must be >= 0")
        if isinstance(replies, (str, dict)):
            replies = [replies]
        if replies is not None and not callable(replies) and len(replies) == 0:
            raise ValueError("replies must not be an empty sequence")
        self._replies = replies
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.model = model
        self.strict = strict
        self._host = host
        self._requested_port = port

        rates = {Fault.parse(f): float(p) for f, p in (fault_rates or {}).items()}
        if any(not 0.0 <= p <= 1.0 for p in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must each be in [0, 1] and sum to <= 1, got {rates}")
        # Enum declaration order, not mapping order, so equal configs draw identically.
        self._fault_rates = [(f, rates[f]) for f in Fault if rates.get(f)]
        self._fault_script = [None if f is None else Fault.parse(f) for f in (fault_script or [])]
        self._rng = random.Random(seed)
        self._next_index = 0  # chat requests admitted since construction (drives fault_script)
        self._next_reply = 0  # normal answers given (drives the replies cycle)

        self.keep_requests = keep_requests
        self.requests: list[dict[str, Any]] = []  # every chat request's body, if kept
        self.fault_counts: collections.Counter[str] = collections.Counter()
        self.key_digests: set[str] = set()  # SHA-256 of each bearer token sent
        self.refusals: list[str] = []  # strict mode: the message of each request refused
        self._stats_lock = threading.Lock()

        self._port: int | None = None
        self._served: ThreadedApp | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when constructed with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("server not started; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to ``openai.AsyncOpenAI``."""
        return f"http://{self._host}:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Bind, start serving on a daemon thread with its own event loop, return when listening.

        The socket is bound here, in the caller's thread, so a bind error (port in use)
        raises directly from ``start()``.
        """
        if self._served is not None:
            raise RuntimeError("server already started")
        sock = socket.create_server((self._host, self._requested_port), backlog=_BACKLOG)
        self._port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        # Anthropic's POST /v1/messages, from the same script (imported here: it builds
        # on this module).
        from therapygym.testing.anthropic_messages import add_messages_route

        add_messages_route(app, self)
        # handler_cancellation: when a client gives up (timeout during HANG) its handler
        # is cancelled instead of sleeping on; access_log=None keeps it quiet and fast.
        served = ThreadedApp(
            app,
            sock,
            name=f"fake-openai-{self._port}",
            runner_options={"handler_cancellation": True, "shutdown_timeout": _SHUTDOWN_GRACE_S},
            site_options={"backlog": _BACKLOG},
        )
        served.start()
        self._served = served
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; in-flight requests get a short grace period."""
        if self._served is not None:
            self._served.stop()
            self._served = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset_stats(self) -> None:
        """Clear ``requests`` and ``fault_counts`` in place.

        The fault script position, the random stream and the replies cycle carry on:
        resetting observations must not change what the server will do next.
        """
        with self._stats_lock:
            self.requests.clear()
            self.fault_counts.clear()
            self.refusals.clear()

    # ------------------------------------------------------------------ handlers

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "therapygym"}
                ],
            }
        )

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "The request body is not valid JSON.", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")

        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        fault = self._admit(body, token)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if fault is Fault.RATE_LIMIT:
            return _error(
                429,
                "Rate limit reached (injected by FakeOpenAIServer).",
                "requests",
                code="rate_limit_exceeded",
                headers={"Retry-After": "0"},
            )
        if fault is Fault.SERVER_ERROR:
            return _error(
                500, "The server had an error (injected by FakeOpenAIServer).", "server_error"
            )
        if fault is Fault.UNAUTHORIZED:
            return _error(
                401,
                f"Incorrect API key provided: {token}. (injected by FakeOpenAIServer)",
                "invalid_request_error",
                code="invalid_api_key",
            )
        if fault is Fault.MALFORMED:
            return web.Response(text=_MALFORMED_BODY, content_type="application/json")
        if fault is Fault.DROP:
            if request.transport is not None:
                request.transport.abort()
            # Nothing can be written any more; aiohttp treats the failed write of this
            # placeholder as a premature client disconnection and stays quiet.
            return web.Response(status=204)
        if fault is Fault.HANG:
            await asyncio.sleep(self.hang_s)

        problem = _request_problem(body)
        if problem is not None:
            self._count("bad_request")
            param, message = problem
            return _error(400, message, "invalid_request_error", param=param)
        if self.strict and (refusal := self.hosted_refusal(body)) is not None:
            return web.json_response(refusal, status=400)
        try:
            reply = self._reply_for(body)
        except Exception as exc:  # a bug in a test's replier: make it visible client-side
            logger.exception("FakeOpenAIServer replier raised")
            self._count("replier_error")
            return _error(500, f"replier raised {exc!r}", "server_error")
        if fault is None:
            self._count("ok")
        return web.json_response(self._completion(body, reply))

    # ------------------------------------------------------------------- helpers

    def _admit(self, body: dict[str, Any], token: str) -> Fault | None:
        """Record the request (and its token's digest) and decide its fault. Synchronous,
        so atomic on the loop."""
        index = self._next_index
        self._next_index += 1
        if index < len(self._fault_script):
            fault = self._fault_script[index]
        else:
            fault = None
            if self._fault_rates:
                draw, cumulative = self._rng.random(), 0.0
                for candidate, rate in self._fault_rates:
                    cumulative += rate
                    if draw < cumulative:
                        fault = candidate
                        break
        with self._stats_lock:
            if self.keep_requests:
                self.requests.append(body)
            if token:
                self.key_digests.add(hashlib.sha256(token.encode()).hexdigest())
            if fault is not None:
                self.fault_counts[fault.value] += 1
        return fault

    def hosted_refusal(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The 400 body a hosted API answers `body` with (strict mode), counted as a bad
        request and its message kept in ``refusals``; None when it would take it."""
        refusal = parameter_refusal(body) or schema_refusal(body.get("response_format"))
        if refusal is None:
            return None
        self._count("bad_request")
        with self._stats_lock:
            self.refusals.append(refusal.message)
        return refusal.body()

    def _count(self, outcome: str) -> None:
        with self._stats_lock:
            self.fault_counts[outcome] += 1

    def _reply_for(self, body: dict[str, Any]) -> str:
        """The reply text before truncation; dict replies become JSON text."""
        replies = self._replies
        if replies is None:
            users = [
                _text_of(m.get("content")) for m in body["messages"] if m.get("role") == "user"
            ]
            reply: Reply = f"You said: {users[-1]}" if users else "You said nothing."
        elif callable(replies):
            reply = replies(body)
        else:
            reply = replies[self._next_reply % len(replies)]
            self._next_reply += 1
        return json.dumps(reply, ensure_ascii=False) if isinstance(reply, dict) else str(reply)

    def _completion(self, body: dict[str, Any], reply: str) -> dict[str, Any]:
        """A ``chat.completion`` object as the official client expects it."""
        max_words = body.get("max_completion_tokens", body.get("max_tokens"))
        content, truncated = _truncate(reply, max_words)
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in body["messages"])
        completion_tokens = len(content.split())
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "length" if truncated else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


# ----------------------------------------------------------------------- command line


@contextmanager
def server_process(command: Sequence[str]) -> Iterator[str]:
    """Run `command`, a server that prints ``READY <base_url>`` once listening (this
    module's ``main``, or a script's own scripted server), as a separate process, so that
    it does not share the measured client's CPU; yield the URL, and stop it on exit."""
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield line.removeprefix("READY ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _fault_rate(text: str) -> tuple[Fault, float]:
    """Parse ``FAULT=RATE`` (e.g. ``429=0.1``, ``hang=0.01``) for ``--fault``."""
    name, sep, rate = text.partition("=")
    try:
        if not sep:
            raise ValueError("missing '='")
        return Fault.parse(name.strip()), float(rate)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected FAULT=RATE, e.g. 429=0.1 ({exc})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, after printing ``READY <base_url>`` (POSIX only)."""
    parser = argparse.ArgumentParser(
        prog="python -m therapygym.testing.openai_server",
        description="Fake OpenAI chat-completions server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--fault",
        type=_fault_rate,
        action="append",
        default=[],
        metavar="FAULT=RATE",
        help="e.g. 429=0.1, 500=0.05, hang=0.01; repeatable",
    )
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse what a hosted API refuses: schemas outside the strict subset, "
        "max_tokens or a temperature sent to a reasoning model",
    )
    parser.add_argument(
        "--reply",
        action="append",
        default=None,
        help="scripted reply, repeatable (cycled); default echoes the user",
    )
    args = parser.parse_args(argv)

    server = FakeOpenAIServer(
        args.reply,
        latency_s=args.latency_ms / 1000.0,
        fault_rates=dict(args.fault),
        hang_s=args.hang_s,
        seed=args.seed,
        model=args.model,
        host=args.host,
        port=args.port,
        strict=args.strict,
        keep_requests=False,
    )
    # Block the signals before the server thread exists (threads inherit the mask), then
    # wait for them synchronously: no handler can interrupt code halfway through.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        with server:
            print(f"READY {server.base_url}", flush=True)
            signal.sigwait(stop_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

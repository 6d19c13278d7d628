"""The one HTTP path for backends that talk to servers (`openai:` and `http:` models).

A `JsonHttpClient` owns one `aiohttp.ClientSession` per model instance, made in (and for)
the running event loop, sends one JSON request and returns the status, body bytes and
headers of a 2xx answer. Everything else is mapped here, once for every backend, to the
model layer's two error classes, with messages that say where and what to check:

- TLS certificate not verified, invalid URL: `PermanentError`;
- connection never made: `TransientError(unreachable=True)`, "cannot reach ... is the
  server running";
- timeout, dropped connection, any other client or socket error: `TransientError`;
- status 408, 409, 429 or 5xx: `TransientError` (retried, honouring Retry-After), as the
  official OpenAI client does;
- a redirect (not followed: a POST would lose its body): `PermanentError` naming the target
  and the setting to change; any other status outside 2xx: `PermanentError`.

Each backend says what to quote from an error body (`error_detail`) and which setting holds
the address (`fix`, `redirect_fix`). Secrets (API keys, header values) are masked in any
text this module puts in a message.

Why aiohttp directly rather than the official `openai` client: with 64 concurrent sessions
on two cores the client's CPU per call set the runner's pace, and the official client's
request path (httpx2 over aiohttp) cost about 735 µs of CPU per call, against about 170 µs
for a bare aiohttp post of the same request and 215 µs for the whole model layer on this
module (docs/benchmarks.md). The chat-completions wire format is small and stable; the
layer needs one POST and a few fields of the answer.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.request import getproxies, proxy_bypass

import aiohttp
from yarl import URL

from therapygym import __version__
from therapygym.errors import ModelSpecError
from therapygym.models.base import PermanentError, TransientError

USER_AGENT = f"therapygym/{__version__}"
EXCERPT_CHARS = 200
# The base class enforces `timeout_s` with asyncio.timeout; this is only a backstop.
SAFETY_TIMEOUT_S = 600.0
MASK = "***"
RETRYABLE_STATUS = frozenset({408, 409, 429})  # besides 5xx: timeout, conflict, rate limit


def display_url(url: str | URL) -> str:
    """The URL without user:password, for identities and messages."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        return "<invalid url>"
    if parsed.user is not None or parsed.password is not None:
        parsed = parsed.with_user(None)
    return str(parsed)


def endpoint_url(label: str, base: str, path: str, example: str) -> URL:
    """`{base}{path}`, parsed once when the model is made: a `base_url` that is no http(s)
    URL with a host is a spec error naming the model and showing `example`."""
    try:
        url = URL(f"{base}{path}")
    except (ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ModelSpecError(
            f"model spec {label}: base_url '{display_url(base)}' is not an http:// or "
            f"https:// URL with a host (e.g. {example})"
        )
    return url


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def env_proxy(url: URL) -> URL | None:
    """The proxy that HTTP_PROXY / HTTPS_PROXY / NO_PROXY name for `url` (a login in the
    proxy URL is sent as Proxy-Authorization by aiohttp), as the official client did."""
    if url.host is None or proxy_bypass(url.host):
        return None
    raw = getproxies().get(url.scheme)
    return URL(raw) if raw else None


@dataclass(frozen=True, slots=True)
class HttpReply:
    """One HTTP answer, read in full."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def retry_after_s(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class JsonHttpClient:
    """Sends JSON requests to one server for one model instance.

    `where` names the server in messages (no credentials); `fix` says what the user should
    check when it cannot be reached (e.g. "base_url"), and `redirect_fix` what to set to
    the final address when the server redirects (e.g. "base_url"); `error_detail` turns an
    error status's body into the text quoted after it (default: an excerpt of the body);
    `headers` are sent with every request, after a JSON Content-Type and a therapygym
    User-Agent unless they set their own; `secrets` are masked in any text this client
    quotes.
    """

    def __init__(
        self,
        where: str,
        *,
        fix: str,
        redirect_fix: str,
        timeout_s: float,
        error_detail: Callable[[bytes], str] | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.where = where
        self.fix = fix
        self.redirect_fix = redirect_fix
        self._error_detail = error_detail or self.excerpt
        self._timeout = aiohttp.ClientTimeout(total=max(SAFETY_TIMEOUT_S, timeout_s))
        given = dict(headers or {})
        names = {key.lower() for key in given}
        defaults = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        self._headers = {**{k: v for k, v in defaults.items() if k.lower() not in names}, **given}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[URL, URL | None] = {}

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The open session, if one was made (for tests and diagnostics)."""
        return self._session

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def excerpt(self, body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
        """The start of a body on one line, secrets masked."""
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        text = self.redact(" ".join(text.split()))
        return text[:limit] + ("…" if len(text) > limit else "")

    def json_body(self, reply: HttpReply) -> Any:
        """A 2xx reply's body parsed as JSON; a body that is not JSON is a transient error
        (a proxy's error page, a cut connection), quoted in part and retried."""
        try:
            return json.loads(reply.body)
        except ValueError as err:
            raise TransientError(
                f"malformed response body from {self.where} ({type(err).__name__}: "
                f"{self.excerpt(reply.body, 80) or 'empty body'})"
            ) from None

    async def _client(self) -> aiohttp.ClientSession:
        """One session per instance, made in (and for) the running loop."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and not session.closed and self._session_loop is loop:
            return session
        old_loop = self._session_loop
        if session is not None and old_loop is not None and old_loop.is_closed():
            # Left behind by an earlier event loop: nothing to wait for any more, but mark
            # it closed so it does not warn when it is collected.
            await session.close()
        self._session = aiohttp.ClientSession(
            # The base class's semaphore limits concurrency; the pool need not.
            connector=aiohttp.TCPConnector(limit=0),
            timeout=self._timeout,
            headers=self._headers,
            # No cookies: every call carries its whole conversation, and one jar shared by
            # all concurrent sessions would only carry state from one to another.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Proxies from the environment are looked up once per URL (`_proxy`), not on
            # every request in a worker thread as trust_env=True would.
            trust_env=False,
        )
        self._session_loop = loop
        return self._session

    def _proxy(self, url: URL) -> URL | None:
        if url not in self._proxies:
            self._proxies[url] = env_proxy(url)
        return self._proxies[url]

    async def request(self, method: str, url: URL, body: Any) -> HttpReply:
        """Send `body` as JSON and read the whole answer; redirects are not followed.

        Returns a 2xx answer; raises `TransientError` or `PermanentError` for any other
        status and for failures before a status arrives.
        """
        reply = await self._send(method, url, body)
        self._check_status(reply)
        return reply

    def _check_status(self, reply: HttpReply) -> None:
        """The one mapping of HTTP statuses to the model layer's errors."""
        status = reply.status
        if status in RETRYABLE_STATUS or status >= 500:
            raise TransientError(
                f"HTTP {status} from {self.where}: {self._error_detail(reply.body)}",
                retry_after_s=reply.retry_after_s,
            )
        if 300 <= status < 400:
            location = reply.headers.get("Location", "")
            target = display_url(location.split("?", 1)[0]) if location else "elsewhere"
            raise PermanentError(
                f"HTTP {status} from {self.where}: redirected to {target}; "
                f"set {self.redirect_fix} to the final address"
            )
        if status >= 400 or status < 200:
            raise PermanentError(
                f"HTTP {status} from {self.where}: {self._error_detail(reply.body)}"
            )

    async def _send(self, method: str, url: URL, body: Any) -> HttpReply:
        # ASCII-escaped: about 40% less CPU than ensure_ascii=False for mostly-ASCII text.
        data = json.dumps(body).encode("ascii")
        proxy = self._proxy(url)
        try:
            session = await self._client()
            async with session.request(
                method,
                url,
                data=data,
                allow_redirects=False,
                proxy=proxy,
            ) as response:
                return HttpReply(response.status, await response.read(), response.headers)
        except aiohttp.ClientConnectorCertificateError:
            raise PermanentError(f"TLS certificate of {self.where} could not be verified") from None
        except aiohttp.ClientConnectorError:
            raise TransientError(
                f"cannot reach {self.where} (connection refused or no route): "
                f"is the server running and is {self.fix} right?",
                unreachable=True,
            ) from None
        except TimeoutError:
            raise TransientError(f"request to {self.where} timed out") from None
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
            raise PermanentError(f"invalid url {self.where}: check {self.fix}") from None
        except (aiohttp.ClientError, OSError) as err:
            detail = self.redact(f"{type(err).__name__}: {err}")[:EXCERPT_CHARS]
            raise TransientError(f"connection to {self.where} dropped ({detail})") from None

    async def aclose(self) -> None:
        session, self._session, self._session_loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

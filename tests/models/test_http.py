"""The shared HTTP path (models/http.py): headers, masking, error mapping, proxies."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from therapygym import __version__
from therapygym.models.base import PermanentError, TransientError
from therapygym.models.http import JsonHttpClient, display_url, env_proxy

SECRET = "tok-0123456789abcdef"


def client(**kwargs: Any) -> JsonHttpClient:
    return JsonHttpClient(
        "http://bot", fix="the url", redirect_fix="the url", timeout_s=5.0, **kwargs
    )


async def serve(handler: Any) -> tuple[web.AppRunner, URL]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, URL(f"http://{host}:{port}/chat")


async def test_default_headers_yield_to_the_callers() -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(status=201, body=b'{"a": 1}', headers={"X-Echo": "yes"})

    runner, url = await serve(handler)
    http = client(headers={"content-type": "application/vnd.bot+json", "X-Key": SECRET})
    try:
        reply = await http.request("PUT", url, {"q": "héllo"})
    finally:
        await http.aclose()
        await runner.cleanup()
    assert (reply.status, reply.body, reply.headers["X-Echo"]) == (201, b'{"a": 1}', "yes")
    assert seen[0]["Content-Type"] == "application/vnd.bot+json"
    assert seen[0]["User-Agent"] == f"therapygym/{__version__}"
    assert seen[0]["X-Key"] == SECRET
    assert http.session is None


def test_secrets_are_masked_before_text_is_cut() -> None:
    http = client(secrets=[SECRET, "tok-0123", "abc"])  # "abc" is too short to mask
    assert http.redact(f"key {SECRET} and tok-0123") == "key *** and ***"
    # A secret straddling the excerpt's end is masked whole, not cut and shown in part.
    body = ("x" * 195 + SECRET).encode()
    assert SECRET[:5] not in http.excerpt(body) and http.excerpt(body).endswith("***")
    assert http.excerpt(b"  two\n  lines ") == "two lines"


async def test_connection_refused_is_unreachable_and_names_the_fix() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = client()
    try:
        with pytest.raises(TransientError) as err:
            await http.request("POST", URL(f"http://127.0.0.1:{port}/chat"), {})
    finally:
        await http.aclose()
    assert err.value.unreachable
    assert err.value.cause == (
        "cannot reach http://bot (connection refused or no route): "
        "is the server running and is the url right?"
    )


async def test_a_dropped_connection_is_transient_and_masked() -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    runner, url = await serve(handler)
    http = client(secrets=[SECRET])
    try:
        with pytest.raises(TransientError) as err:
            await http.request("POST", url, {})
    finally:
        await http.aclose()
        await runner.cleanup()
    assert err.value.cause.startswith("connection to http://bot dropped (")
    assert not err.value.unreachable


async def test_an_unsupported_url_is_permanent() -> None:
    http = client()
    try:
        with pytest.raises(PermanentError, match="invalid url http://bot: check the url"):
            await http.request("POST", URL("ftp://127.0.0.1/chat"), {})
    finally:
        await http.aclose()


def test_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert env_proxy(URL("http://llm.example/v1")) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert str(env_proxy(URL("https://api.example/v1"))) == "http://user:pw@proxy.example:3128"
    assert env_proxy(URL("https://internal.example/v1")) is None
    assert env_proxy(URL("http://api.example/v1")) is None  # no HTTP_PROXY


def test_display_url_drops_credentials() -> None:
    assert display_url("https://me:pw@host.example/v1") == "https://host.example/v1"
    assert display_url("http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"

"""An aiohttp app served from a daemon thread with its own event loop.

The local OpenAI-compatible test server, the viewer and the rating studio all need it:
callers (tests, notebooks, a synchronous CLI) keep their own thread, the app gets a loop
nobody else blocks. The socket is bound by the caller, so a bind error (port in use)
raises in the caller's thread; a failure while the site starts is re-raised by `start()`.
`BackgroundServer` is the viewer's and the studio's shared start/stop around it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

from aiohttp import web


class ThreadedApp:
    """`start()` returns once `app` listens on `sock`; `stop()` shuts it down and joins."""

    def __init__(
        self,
        app: web.Application,
        sock: socket.socket,
        *,
        name: str,
        runner_options: dict[str, Any] | None = None,
        site_options: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.sock = sock
        self.name = name
        self._runner_options = {"access_log": None, **(runner_options or {})}
        self._site_options = site_options or {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready, failure)), name=self.name, daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = self._loop = self._stopping = None

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        runner = web.AppRunner(self.app, **self._runner_options)
        try:
            await runner.setup()
            await web.SockSite(runner, self.sock, **self._site_options).start()
        except BaseException as exc:  # surfaced by start() in the caller's thread
            failure.append(exc)
            self.sock.close()
            await runner.cleanup()
            ready.set()
            return
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()


def bind(host: str, port: int, error: type[Exception]) -> socket.socket:
    """A listening socket on `host:port` (port 0: any free one); a port that is taken or a
    host that is not ours raises `error` with one line naming the fix."""
    try:
        return socket.create_server((host.strip("[]"), port))
    except OSError as err:
        raise error(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pick another --port"
        ) from None


def http_url(host: str, port: int) -> str:
    """The page address for `host:port`, an IPv6 host in brackets."""
    bare = host.strip("[]")
    return f"http://[{bare}]:{port}/" if ":" in bare else f"http://{bare}:{port}/"


class BackgroundServer(ABC):
    """A web app of ours on a background thread (tests, notebooks, screenshots):
    `start()` binds and serves, `url` is its address, `stop()` (or leaving a `with`
    block) shuts it down. Subclasses build the app for the port they were given."""

    name: ClassVar[str]  # the thread's name, before the port
    bind_error: ClassVar[type[Exception]]  # raised when the port cannot be bound

    def __init__(self, host: str, port: int) -> None:
        self.host, self._requested_port = host, port
        self.port: int | None = None
        self._served: ThreadedApp | None = None

    @property
    def url(self) -> str:
        return http_url(self.host, self.port or 0)

    @abstractmethod
    def build(self, port: int) -> tuple[web.Application, dict[str, Any] | None]:
        """The app to serve on `port` and its runner options (None: the defaults)."""

    def release(self) -> None:
        """Free what the server holds besides its socket (a store); after a failed start
        too. The default holds nothing."""

    def start(self) -> Self:
        try:
            sock = bind(self.host, self._requested_port, self.bind_error)
        except BaseException:
            self.release()
            raise
        self.port = sock.getsockname()[1]
        try:
            app, options = self.build(self.port)
        except BaseException:
            sock.close()
            raise
        served = ThreadedApp(app, sock, name=f"{self.name}-{self.port}", runner_options=options)
        served.start()
        self._served = served
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None
        self.release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""An aiohttp app served from a daemon thread with its own event loop.

The local OpenAI-compatible test server and the viewer's in-process server both need it:
callers (tests, notebooks, a synchronous CLI) keep their own thread, the app gets a loop
nobody else blocks. The socket is bound by the caller, so a bind error (port in use)
raises in the caller's thread; a failure while the site starts is re-raised by `start()`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

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

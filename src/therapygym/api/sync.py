"""Run the library's coroutines from synchronous code, including code that is itself
inside a running event loop (a Jupyter cell, an async web handler).

`asyncio.run` refuses to start while a loop is running in the thread, and patching the
loop to be re-entrant (nest_asyncio) changes how every other coroutine in the process is
scheduled. So inside a running loop the coroutine gets a worker thread with a loop of its
own, and the caller's thread waits for it. Ctrl-C (a notebook's interrupt) cancels the
coroutine in its loop, as it does under `asyncio.run`, so the runner says what it saved,
closes its models and lets go before the interrupt reaches the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The result of the coroutine `make()` returns, run to the end from synchronous code.

    `make` is called in the thread that runs the coroutine, so nothing bound to a loop
    (a model's connection pool, a lock) is created on the caller's loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    return _in_worker_thread(make)


def _in_worker_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    started, finished = threading.Event(), threading.Event()
    found: dict[str, Any] = {}

    async def main() -> T:
        found["loop"], found["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await make()

    def work() -> None:
        try:
            found["result"] = asyncio.run(main())
        except BaseException as err:  # handed to the caller's thread, raised there
            found["error"] = err
        finally:
            started.set()
            finished.set()

    # waited for by an event, not `Thread.join`: a join that Ctrl-C interrupts can leave
    # the thread marked as ended while it still runs (Python 3.11), so a second join
    # would return before the cancelled work has let go
    threading.Thread(target=work, name="therapygym-api", daemon=True).start()
    try:
        finished.wait()
    except KeyboardInterrupt:
        started.wait()
        if "task" in found:
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                found["loop"].call_soon_threadsafe(found["task"].cancel)
        finished.wait()
        raise
    if "error" in found:
        raise found["error"]
    result: T = found["result"]
    return result

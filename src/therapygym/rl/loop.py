"""One event loop in a background thread, for trainers that call us synchronously.

TRL calls rollout and reward functions from its (synchronous) training loop. Our models
are async and keep connections and llama.cpp slots bound to the loop that made them, so a
fresh `asyncio.run` per call would break them; every call goes to this one loop instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """`run(coro)` blocks until `coro` finishes on the shared loop and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="therapygym-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the background loop is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def gather(self, coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        """Run `coros` concurrently on the shared loop; their results in order."""

        async def together() -> list[T]:
            return list(await asyncio.gather(*coros))

        return self.run(together())

    def close(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()

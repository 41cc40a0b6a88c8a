"""One persistent event-loop thread that synchronous callers (gepa's ``evaluate``, TRL's ``rollout_func``)
submit coroutines to.

Sandboxes, the reflection LM and the rollout engine are async; their callers are not. ``asyncio.run``
per call would rebuild the loop and every pooled connection each time, and cannot be nested. Create one
:class:`EventLoopThread` at the top of a run and pass it down (no module-level loop: no global state).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, Self, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """A daemon thread running one asyncio loop for the life of a run.

    ``run(coro)`` blocks the calling thread until ``coro`` finishes on the loop and returns its result
    (exceptions propagate). Safe to call from many threads at once. ``close()`` cancels what is still
    pending, stops the loop and joins the thread.
    """

    def __init__(self, name: str = "fst-agent-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a concurrent future (non-blocking)."""
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("EventLoopThread is closed; create a new one")
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Awaitable[T] | Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result from a synchronous caller."""
        if threading.current_thread() is self._thread:
            if asyncio.iscoroutine(coro):
                coro.close()
            # waiting here would block the very loop that has to finish the coroutine
            raise RuntimeError("EventLoopThread.run() called from its own loop thread; await the coroutine instead")
        future = self.submit(coro if asyncio.iscoroutine(coro) else _as_coroutine(coro))
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"coroutine did not finish within {timeout} s") from None

    def close(self, timeout: float = 10.0) -> None:
        """Cancel pending work, stop the loop and join the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable

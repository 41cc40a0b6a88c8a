import asyncio
import threading
import time

import pytest

from fst_agent.aio import EventLoopThread


def test_one_loop_serves_many_synchronous_callers_concurrently():
    seen_loops = set()

    async def work(i):
        seen_loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.2)
        return i * i

    with EventLoopThread() as bridge:
        results = [None] * 8
        start = time.perf_counter()

        def caller(i):
            results[i] = bridge.run(work(i))

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        # the same loop again on a later call: state (pools, clients) survives between calls
        assert bridge.run(work(9)) == 81
    assert results == [i * i for i in range(8)]
    assert len(seen_loops) == 1
    assert elapsed < 1.0, "the eight sleeps overlapped on one loop instead of running one after another"


def test_exceptions_propagate_to_the_caller():
    async def boom():
        raise ValueError("from the loop")

    with EventLoopThread() as bridge:
        with pytest.raises(ValueError, match="from the loop"):
            bridge.run(boom())
        assert bridge.run(asyncio.sleep(0, result="still alive")) == "still alive"


def test_timeout_cancels_the_coroutine():
    cancelled = threading.Event()

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with EventLoopThread() as bridge:
        with pytest.raises(TimeoutError):
            bridge.run(slow(), timeout=0.1)
        assert cancelled.wait(2)


def test_calling_run_from_the_loop_thread_is_refused_not_deadlocked():
    with EventLoopThread() as bridge:

        async def reentrant():
            return bridge.run(asyncio.sleep(0))

        with pytest.raises(RuntimeError, match="own loop thread"):
            bridge.run(reentrant(), timeout=5)


def test_close_is_idempotent_cancels_pending_and_refuses_new_work():
    bridge = EventLoopThread()
    started, cancelled = threading.Event(), threading.Event()

    async def forever():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    running = bridge.submit(forever())
    assert started.wait(2)
    never_started = bridge.submit(forever())
    bridge.close()
    bridge.close()
    assert cancelled.wait(2) and bridge.closed
    assert running.cancelled() and never_started.cancelled()
    assert not bridge._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        bridge.run(asyncio.sleep(0))

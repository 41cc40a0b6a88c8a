"""Sandbox fan-out with back-pressure: a slow sandbox backend slows rollouts down, it never drops or double-counts
an episode.

Eight concurrent math episodes (``rollout.concurrency: 8``) on the real local sandbox, bounded to 2 sandbox sessions
(``rollout.sandbox_sessions: 2``; the default is half of ``sandbox.max_sessions``), once as it is and once behind a
wrapper that adds latency to every run — what a remote Docker host or e2b adds per call. The slow pass takes at least
the latency times the waves the bound forces (the delays queue, they are not skipped), the bound holds, and the trace store holds every episode exactly once,
each scored as the model earned it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fst_agent.policy.chat import ChatFormat
from fst_agent.policy.config import RolloutConfig
from fst_agent.policy.rollout import RolloutEngine
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.traces.store import TraceStore
from fst_agent.types import EpisodeStatus
from tests.conftest import bwrap_available, require
from tests.policy.rollout_helpers import ScriptedGenerator, call_text, chatml_tokenizer, prompt_text

pytestmark = pytest.mark.bwrap

EPISODES, SESSIONS, LATENCY_S = 8, 2, 0.4


class LatencySandbox:
    """A real sandbox behind ``latency_s`` of extra delay per run (a far-away backend); counts open sessions."""

    def __init__(self, inner: Any, latency_s: float) -> None:
        self.inner, self.latency_s = inner, latency_s
        self.name = getattr(inner, "name", "sandbox")
        self.config = getattr(inner, "config", None)
        self.open_now = self.max_open = self.runs = 0

    async def open_session(self) -> Any:
        session = await self.inner.open_session()
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        return _LatencySession(self, session)

    async def close(self) -> None:
        return None  # the shared inner sandbox is closed by the test


class _LatencySession:
    def __init__(self, box: LatencySandbox, inner: Any) -> None:
        self.box, self.inner = box, inner

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        self.box.runs += 1
        await asyncio.sleep(self.box.latency_s)
        return await self.inner.run(*args, **kwargs)

    async def close(self) -> None:
        self.box.open_now -= 1
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_slow_backend_slows_rollouts_and_loses_no_episode(tmp_path):
    require(bwrap_available(), "bubblewrap")
    from fst_math import MathEnvironment
    from fst_math.tasks import offline_tasks

    from fst_agent.sandbox.local import LocalSandbox

    tok = chatml_tokenizer()
    tasks = offline_tasks()[:EPISODES]

    def script(request):  # noqa: ANN001, ANN202 - one python run, then the right answer
        text = prompt_text(tok, request)
        task = next(t for t in tasks if t.prompt in text)
        if "<tool_response>" not in text:
            return call_text("python", {"code": f"print({task.data['answer']!r})"})
        return call_text("submit", {"answer": task.data["answer"]})

    inner = LocalSandbox(SandboxConfig(backend="local", pool_size=2, max_sessions=8))
    seconds: dict[float, float] = {}
    try:
        for latency in (0.0, LATENCY_S):
            box = LatencySandbox(inner, latency)
            with TraceStore(tmp_path / f"latency-{latency}") as store:
                engine = RolloutEngine(MathEnvironment, chat=ChatFormat(tok), generator=ScriptedGenerator(tok, script),
                                       sandbox=box, trace_store=store,
                                       config=RolloutConfig(concurrency=EPISODES, sandbox_sessions=SESSIONS))
                t0 = time.perf_counter()
                trajs = await engine.run_groups(tasks, 1, step=1)
                seconds[latency] = time.perf_counter() - t0
                stored = list(store.iter_trajectories())
            assert box.max_open <= SESSIONS and box.open_now == 0
            assert box.runs >= EPISODES
            assert [t.task_id for t in trajs] == [t.id for t in tasks]
            assert all(t.status is EpisodeStatus.SUBMITTED and t.final_reward == 1.0 for t in trajs)
            assert sorted(t.episode_id for t in stored) == sorted(t.episode_id for t in trajs)
            assert len({t.episode_id for t in stored}) == EPISODES
    finally:
        await inner.close()
    # the bound lets 2 episodes hold sessions at a time: at least 4 waves of delayed runs, one after another
    # (unbounded, the 8 delays would overlap: about one latency in all)
    waves = EPISODES // SESSIONS
    assert seconds[LATENCY_S] >= waves * LATENCY_S and seconds[LATENCY_S] > seconds[0.0] + LATENCY_S, seconds

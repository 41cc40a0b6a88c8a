"""The e2b backend against the real e2b service. Runs only with E2B_API_KEY set (a plain skip
otherwise, CI included: the key is a paid account, not part of the machine)."""

from __future__ import annotations

import os

import pytest

from fst_agent.sandbox.config import SandboxConfig
from fst_agent.types import ExecutionStatus, ResourceLimits

pytestmark = [
    pytest.mark.e2b_live,
    pytest.mark.skipif(not os.environ.get("E2B_API_KEY"), reason="E2B_API_KEY is not set"),
]


async def test_real_program_round_trip():
    from fst_agent.sandbox.e2b import E2BSandbox

    template = os.environ.get("FST_E2B_TEMPLATE")  # e.g. fst-agent-sandbox; default: e2b's base
    async with E2BSandbox(
        SandboxConfig(backend="e2b", e2b_template=template, e2b_lifetime_seconds=120)
    ) as sb:
        async with await sb.open_session() as session:
            await session.write_file("sol.py", "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n")
            r = await session.run(["python3", "sol.py"], stdin="1 2 3\n")
            assert r.status is ExecutionStatus.OK and r.stdout == "6\n", r
            r = await session.run(["python3", "-c", "1/0"])
            assert r.status is ExecutionStatus.RUNTIME_ERROR and "ZeroDivisionError" in r.stderr, r
            r = await session.run(
                ["python3", "-c", "import time; time.sleep(10)"], limits=ResourceLimits(wall_seconds=1)
            )
            assert r.status is ExecutionStatus.TIMEOUT, r
            r = await session.run(
                ["python3", "-c", "x = bytearray(1 << 31)"], limits=ResourceLimits(memory_mb=256)
            )
            assert r.status is ExecutionStatus.MEMORY_LIMIT, r
            r = await session.run(
                [
                    "python3",
                    "-c",
                    "import urllib.request; urllib.request.urlopen('https://example.com', timeout=5)",
                ]
            )
            assert r.status is ExecutionStatus.RUNTIME_ERROR, r  # no internet

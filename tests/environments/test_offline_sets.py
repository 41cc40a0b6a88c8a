"""The offline task sets: well-formed, and every shipped solution judged in the real sandbox — the correct
one passes every test, each wrong one fails at least one."""

from __future__ import annotations

import asyncio

import pytest

from fst_agent.env.data.offline import load_offline_problems
from fst_agent.env.judge import Judge, JudgeConfig, problem_checker
from tests.conftest import bwrap_available, require


@pytest.mark.parametrize("kind", ["apps", "livecodebench"])
def test_offline_sets_are_well_formed(kind):
    problems = load_offline_problems(kind)
    assert 18 <= len(problems) <= 25
    assert len({p.id for p in problems}) == len(problems)
    functional = [p for p in problems if p.kind == "functional"]
    assert 3 <= len(functional) < len(problems), "mostly stdin, some call-based"
    assert any("class Solution" in p.starter_code for p in functional)
    for p in problems:
        assert p.source == f"offline-{kind}"
        assert len(p.solutions) == 1 and len(p.wrong_solutions) >= 2
        assert p.public_tests and not p.public_only, f"{p.id}: needs public and hidden tests"
        assert p.statement.strip() and p.difficulty
    slow = sum(len(p.metadata["too_slow_wrong_solutions"]) for p in problems)
    assert slow >= 2, "some wrong solutions fail only by being too slow"


@pytest.mark.bwrap
@pytest.mark.parametrize("kind, mode", [("apps", "apps"), ("livecodebench", "lcb")])
async def test_every_offline_solution_is_judged_right(kind, mode):
    require(bwrap_available(), "bubblewrap")
    from fst_agent.sandbox.config import SandboxConfig
    from fst_agent.sandbox.local import LocalSandbox

    # correct solutions take milliseconds (a generous limit costs nothing); a wrong one that is too slow
    # runs for minutes, so 1 s is plenty to see it time out
    right = Judge(JudgeConfig(mode=mode, per_test_seconds=5.0))
    wrong = Judge(JudgeConfig(mode=mode, per_test_seconds=1.0))
    problems = load_offline_problems(kind)
    failures: list[str] = []
    sandbox = LocalSandbox(SandboxConfig(pool_size=0))

    async def worker(share: list) -> None:  # two sessions judge half the problems each
        session = await sandbox.open_session()
        try:
            for p in share:
                checker = problem_checker(p, mode)
                report = await right.judge(session, p.solutions[0], p.tests, checker)
                if not report.all_passed:
                    failures.append(f"{p.id}: correct solution {report.counts()} {report.verdicts[0].message}")
                for i, code in enumerate(p.wrong_solutions):
                    report = await wrong.judge(session, code, p.tests, checker)
                    if report.all_passed:
                        failures.append(f"{p.id}: wrong solution {i} passes every test")
                    if report.sandbox_failed:
                        failures.append(f"{p.id}: wrong solution {i}: sandbox error")
                    if i in p.metadata["too_slow_wrong_solutions"] and "timeout" not in report.counts():
                        failures.append(f"{p.id}: wrong solution {i} should time out: {report.counts()}")
        finally:
            await session.close()

    try:
        await asyncio.gather(worker(problems[0::2]), worker(problems[1::2]))
    finally:
        await sandbox.close()
    assert not failures, "\n".join(failures)

"""Agreement with the real data: the judge passes the verified reference solutions and fails programs
derived from them with the right verdict kind (lcb mode, the default)."""

from __future__ import annotations

import asyncio
import re

import pytest

from fst_agent.env.data.problems import CodeProblem
from fst_agent.env.judge import Judge, JudgeConfig, JudgeReport, problem_checker
from fst_agent.types import VerdictKind

pytestmark = pytest.mark.bwrap

CONCURRENCY = 4

# Problems whose first verified solution fails in lcb mode, with the reason. Empty: the 151 problems
# with a verified solution all pass (float-answer problems 0018/0024/2002/2024/2040 pass because
# their first verified solution prints the exact reference digits; multiple-answer problems because
# their first verified solution prints the reference's answer). Keep it that way, or add an entry
# with a documented data issue here — never loosen the comparison globally.
KNOWN_DATA_ISSUES: dict[str, str] = {}


async def _judge_all(
    sandbox, judge: Judge | list[Judge], jobs: list[tuple[CodeProblem, str]]
) -> list[JudgeReport]:  # noqa: ANN001
    sem = asyncio.Semaphore(CONCURRENCY)
    judges = judge if isinstance(judge, list) else [judge] * len(jobs)

    async def one(j: Judge, problem: CodeProblem, code: str) -> JudgeReport:
        async with sem:
            return await j.judge_problem(sandbox, problem, code)

    return await asyncio.gather(*(one(j, p, c) for j, (p, c) in zip(judges, jobs, strict=True)))


def _first_verified(problems: dict[str, CodeProblem]) -> list[tuple[CodeProblem, str]]:
    return [(p, p.solutions[p.verified_solutions[0]]) for p in problems.values() if p.verified_solutions]


async def test_every_first_verified_solution_passes(local_sandbox, apps_problems):
    """lcb mode (the default) — and, from the very same runs compared again, apps mode."""
    jobs = _first_verified(apps_problems)
    assert len(jobs) == 151
    assert sum(len(p.tests) for p, _ in jobs) == 953
    judge = Judge()
    sem = asyncio.Semaphore(CONCURRENCY)

    async def run(problem: CodeProblem, code: str):  # noqa: ANN202
        async with sem:
            session = await local_sandbox.open_session()
            try:
                return await judge.run_tests(session, code, problem.tests)
            finally:
                await session.close()

    runs = await asyncio.gather(*(run(p, c) for p, c in jobs))
    for mode in ("lcb", "apps"):
        failures = {}
        passed = 0
        for (problem, _), harness_run in zip(jobs, runs, strict=True):
            report = judge.report(harness_run, problem.tests, problem_checker(problem, mode), mode)
            assert report.total == len(problem.tests) and report.mode == mode
            assert not report.sandbox_failed, (problem.id, report.verdicts[0].message)
            passed += report.passed
            if not report.all_passed:
                bad = next(v for v in report.verdicts if not v.passed)
                failures[problem.id] = f"test {bad.index}: {bad.kind.value}: {bad.message}"
        unexplained = {k: v for k, v in failures.items() if k not in KNOWN_DATA_ISSUES}
        assert not unexplained, (mode, unexplained)
        if not KNOWN_DATA_ISSUES:
            assert passed == 953, mode


# -- wrong programs derived from the verified ones -----------------------------------------------------

# Capture what the program prints and add 1 to the first integer of it when the program ends.
OFF_BY_ONE = (
    "import sys as _fst_sys, io as _fst_io, atexit as _fst_atexit, re as _fst_re\n"
    "_fst_real = _fst_sys.stdout\n_fst_sys.stdout = _fst_buf = _fst_io.StringIO()\n"
    "def _fst_emit(buf=_fst_buf, real=_fst_real):\n"
    "    real.write(_fst_re.sub(r'-?\\d+', lambda m: str(int(m.group()) + 1), buf.getvalue(), count=1))\n"
    "    real.flush()\n"
    "_fst_atexit.register(_fst_emit)\n"
)
WRONG_VALUE = (
    "\ndef _fst_wrong(r):\n"
    "    if isinstance(r, bool):\n        return not r\n"
    "    if isinstance(r, int):\n        return r + 1\n"
    "    if isinstance(r, str):\n        return r + 'x'\n"
    "    return [r, 0]\n"
)


def _prints_plainly(code: str) -> bool:
    return "stdout" not in code and "os.write" not in code and "print" in code


def _stdin_sample(apps_problems, every: int = 5) -> list[tuple[CodeProblem, str]]:  # noqa: ANN001
    jobs = [(p, c) for p, c in _first_verified(apps_problems) if p.kind == "stdin"]
    return jobs[::every]


async def test_derived_wrong_programs_fail_with_the_right_kind(local_sandbox, apps_problems):
    judge, quick = Judge(), Judge(JudgeConfig(per_test_seconds=1.0))  # quick: for the infinite loops
    cases: list[tuple[str, VerdictKind, CodeProblem, str]] = []
    sample = _stdin_sample(apps_problems)
    for p, code in sample:
        if _prints_plainly(code) and re.search(r"\d", p.tests[0].expected):
            cases.append(("off_by_one", VerdictKind.WRONG_ANSWER, p, OFF_BY_ONE + code))
        cases.append(("wrong_format", VerdictKind.WRONG_ANSWER, p, "print('Answer:')\n" + code))
    for p, code in sample[:8]:
        cases.append(("crash", VerdictKind.RUNTIME_ERROR, p, "_fst = [][1]\n" + code))
    single = [(p, c) for p, c in sample if len(p.tests) == 1][:3]
    for p, code in single:
        cases.append(("infinite_loop", VerdictKind.TIMEOUT, p, "while True:\n    pass\n" + code))
    for p, code in _first_verified(apps_problems):
        if p.kind != "functional":
            continue
        fn = p.fn_name
        renamed = re.sub(rf"def\s+{re.escape(fn)}\s*\(", f"def {fn}_renamed(", code, count=1)
        cases.append(("wrong_function_name", VerdictKind.RUNTIME_ERROR, p, renamed))
        if "class Solution" in code:
            wrong = (
                code
                + WRONG_VALUE
                + (
                    f"_fst_orig = Solution.{fn}\n"
                    f"Solution.{fn} = lambda self, *a: _fst_wrong(_fst_orig(self, *a))\n"
                )
            )
        else:
            wrong = code + WRONG_VALUE + f"_fst_orig = {fn}\n{fn} = lambda *a: _fst_wrong(_fst_orig(*a))\n"
        cases.append(("off_by_one", VerdictKind.WRONG_ANSWER, p, wrong))
    assert len(cases) >= 60
    judges = [quick if label == "infinite_loop" else judge for label, *_ in cases]
    reports = await _judge_all(local_sandbox, judges, [(p, code) for _, _, p, code in cases])
    wrong = []
    for (label, kind, p, _), report in zip(cases, reports, strict=True):
        got = {v.kind for v in report.verdicts}
        if label in ("off_by_one", "wrong_format"):
            ok = not report.all_passed and got <= {VerdictKind.PASS, kind} and kind in got
        else:
            ok = got == {kind}
        if not ok:
            wrong.append((label, p.id, report.counts(), report.verdicts[0].message))
    assert not wrong, wrong
    by_label = {label for label, *_ in cases}
    assert by_label == {"off_by_one", "wrong_format", "crash", "infinite_loop", "wrong_function_name"}


# -- LiveCodeBench ------------------------------------------------------------------------------------

# Our own correct solutions, written for this test from the statements in lcb.jsonl.
LEETCODE = {
    "lcb-leetcode-2727": """
class Solution:
    def countSeniors(self, details: List[str]) -> int:
        return sum(int(d[11:13]) > 60 for d in details)
""",
    "lcb-leetcode-2777": """
class Solution:
    def distinctDifferenceArray(self, nums: List[int]) -> List[int]:
        return [len(set(nums[:i + 1])) - len(set(nums[i + 1:])) for i in range(len(nums))]
""",
    "lcb-leetcode-2728": """
class Solution:
    def matrixSum(self, nums: List[List[int]]) -> int:
        rows = [sorted(r) for r in nums]
        return sum(max(col) for col in zip(*rows))
""",
    "lcb-leetcode-2730": """
class Solution:
    def maximumOr(self, nums: List[int], k: int) -> int:
        n = len(nums)
        pre, suf = [0] * (n + 1), [0] * (n + 1)
        for i in range(n):
            pre[i + 1] = pre[i] | nums[i]
            suf[n - 1 - i] = suf[n - i] | nums[n - 1 - i]
        return max(pre[i] | (nums[i] << k) | suf[i + 1] for i in range(n))
""",
    "lcb-leetcode-2791": """
class Solution:
    def circularGameLosers(self, n: int, k: int) -> List[int]:
        seen, pos, turn = {0}, 0, 1
        while True:
            pos = (pos + turn * k) % n
            if pos in seen:
                break
            seen.add(pos)
            turn += 1
        return [i + 1 for i in range(n) if i not in seen]
""",
    "lcb-leetcode-2792": """
class Solution:
    def doesValidArrayExist(self, derived: List[int]) -> bool:
        return reduce(xor, derived) == 0
""",
}
STDIN = {
    "lcb-atcoder-abc301_a": """
n = int(input())
s = input().strip()
t, a = s.count('T'), s.count('A')
if t != a:
    print('T' if t > a else 'A')
else:
    print('A' if s[-1] == 'T' else 'T')
""",
    "lcb-codeforces-1873_A": """
for _ in range(int(input())):
    s = input().strip()
    print('YES' if sum(x != y for x, y in zip(s, 'abc')) in (0, 2) else 'NO')
""",
}


async def test_livecodebench_functional_and_private_tests(local_sandbox, lcb_problems):
    jobs = [(lcb_problems[pid], code) for pid, code in {**LEETCODE, **STDIN}.items()]
    private = {p.id for p, _ in jobs if not p.public_only}
    assert private == {"lcb-leetcode-2727", "lcb-atcoder-abc301_a", "lcb-codeforces-1873_A"}
    reports = await _judge_all(local_sandbox, Judge(), jobs)
    for (p, _), report in zip(jobs, reports, strict=True):
        assert report.all_passed, (p.id, [v for v in report.verdicts if not v.passed][:1])
        assert report.total == len(p.tests)
    assert sum(r.total for r in reports) >= 14 + 15 + 5
    # and a wrong answer on the hidden tests: "draw -> T" ignores who reached the count first
    wrong = STDIN["lcb-atcoder-abc301_a"].replace("print('A' if s[-1] == 'T' else 'T')", "print('T')")
    report = await Judge().judge_problem(local_sandbox, lcb_problems["lcb-atcoder-abc301_a"], wrong)
    assert not report.all_passed and {v.kind for v in report.verdicts} == {
        VerdictKind.PASS,
        VerdictKind.WRONG_ANSWER,
    }
    assert any(not v.public and v.kind is VerdictKind.WRONG_ANSWER for v in report.verdicts)

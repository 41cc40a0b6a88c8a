"""The harness's behaviour in the local (bubblewrap) sandbox: one run per program, a verdict per test."""

from __future__ import annotations

import pytest

from fst_agent.env.judge import Judge, JudgeConfig
from fst_agent.types import VerdictKind
from tests.judge.verdicts import CE, MLE, OLE, PASS, RE, TLE, WA, call, kinds, stdin

pytestmark = pytest.mark.bwrap


async def test_top_level_return_works(session):
    code = "n = int(input())\nif n == 0:\n    print('zero')\n    return\nprint(n * 2)\n"
    report = await Judge().judge(session, code, [stdin("0\n", "zero\n"), stdin("4\n", "8\n")])
    assert kinds(report) == [PASS, PASS] and report.wrapped is True and report.all_passed


async def test_real_stdin_semantics(session):
    # LiveCodeBench's fake stdin returns the whole input from readlines() even after input() read the
    # first line; a real file does not.
    code = (
        "import sys\nfirst = input()\nrest = sys.stdin.readlines()\nprint(first, len(rest))\n"
        "print(sys.stdin.read() == '', sys.stdin.buffer is not None, sys.stdin.mode)\n"
    )
    report = await Judge().judge(session, code, [stdin("a\nb\nc\n", "a 2\nTrue True r\n")])
    assert kinds(report) == [PASS], report.verdicts[0]
    code = "data = open(0).read().split()\nprint(sum(map(int, data)))\n"
    report = await Judge().judge(session, code, [stdin("1 2\n3\n", "6\n")])
    assert kinds(report) == [PASS]


async def test_apps_2037_passes_with_a_real_stdin(local_sandbox, apps_problems):
    problem = apps_problems["apps-train-2037"]
    code = problem.solutions[problem.verified_solutions[0]]
    assert "input()" in code and "sys.stdin.readlines()" in code
    report = await Judge().judge_problem(local_sandbox, problem, code)
    assert report.all_passed, [v for v in report.verdicts if not v.passed][:1]


async def test_crash_and_hang_do_not_cost_later_tests_their_verdicts(session):
    code = (
        "s = input()\nif s == 'crash':\n    raise ValueError('boom')\nif s == 'hang':\n    while True:\n"
        "        pass\nprint(s.upper())\n"
    )
    tests = [stdin("crash\n", "CRASH\n"), stdin("hang\n", "HANG\n"), stdin("ok\n", "OK\n")]
    report = await Judge(JudgeConfig(per_test_seconds=1)).judge(session, code, tests)
    assert kinds(report) == [RE, TLE, PASS]
    crash, hang, ok = report.verdicts
    assert "ValueError: boom" in crash.message and "ValueError: boom" in crash.stderr_excerpt
    assert 'File "solution.py", line 3' in crash.stderr_excerpt and "raise ValueError" in crash.stderr_excerpt
    assert "timeout" in hang.message and 0.9 <= hang.wall_seconds < 3
    assert ok.got_excerpt == "OK\n" and report.passed == 1 and report.total == 3
    assert report.execution is not None and report.execution.backend == "local"


async def test_compile_error_for_every_test(session):
    report = await Judge().judge(
        session, "print(int(input()) +\n", [stdin("1\n", "1\n"), stdin("2\n", "2\n")]
    )
    assert kinds(report) == [CE, CE]
    assert report.compile_error and report.compile_error.startswith("SyntaxError")
    assert "compile error" in report.verdicts[0].message


async def test_memory_limit(session):
    code = "n = int(input())\nx = bytearray(n * 1024 * 1024)\nprint(len(x) > 0)\n"
    report = await Judge(JudgeConfig(memory_mb=256)).judge(
        session, code, [stdin("1024\n", "True\n"), stdin("8\n", "True\n")]
    )
    assert kinds(report) == [MLE, PASS]


async def test_output_limit(session):
    code = "while True:\n    print('x' * 1000)\n"
    report = await Judge(JudgeConfig(output_limit_mb=1, per_test_seconds=5)).judge(
        session, code, [stdin("", "x\n")]
    )
    assert kinds(report) == [OLE]
    assert report.verdicts[0].wall_seconds < 4


async def test_exit_midway_keeps_the_output(session):
    code = "import sys\nprint(1)\nsys.exit(0)\nprint(2)\n"
    report = await Judge().judge(session, code, [stdin("", "1\n")])
    assert kinds(report) == [PASS]
    code = "print(1)\nexit()\n"
    assert kinds(await Judge().judge(session, code, [stdin("", "1\n")])) == [PASS]


async def test_threads_with_big_stacks_and_deep_recursion(session):
    code = (
        "import sys, threading\nsys.setrecursionlimit(10**6)\nthreading.stack_size(1 << 26)\n"
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "def main():\n    print(depth(int(input())))\nthreading.Thread(target=main).start()\n"
    )
    report = await Judge().judge(session, code, [stdin("100000\n", "100000\n")])
    assert kinds(report) == [PASS], report.verdicts[0]
    code = "def d(n):\n    return 0 if n == 0 else 1 + d(n - 1)\nprint(d(int(input())))\n"  # limit is 50000
    assert kinds(await Judge().judge(session, code, [stdin("20000\n", "20000\n")])) == [PASS]


async def test_wrong_function_name_is_a_runtime_error(session):
    code = "class Solution:\n    def solve_it(self, a: List[int]) -> int:\n        return sum(a)\n"
    report = await Judge().judge(session, code, [call([[1, 2]], 3), call([[4]], 4)])
    assert kinds(report) == [RE, RE]
    assert "solve" in report.verdicts[0].message


async def test_class_solution_fresh_per_test_with_leetcode_prelude(session):
    code = (
        "class Solution:\n    calls = []\n    def __init__(self):\n        self.seen = 0\n"
        "    def solve(self, nums: List[int], k: int) -> List[int]:\n"
        "        Solution.calls.append(k)\n        self.seen += 1\n"
        "        top = heapq.nlargest(k, nums)\n"
        "        return (len(Solution.calls), self.seen, Counter(nums).most_common(1)[0][0], *top)\n"
    )
    tests = [call([[3, 1, 3], 1], [1, 1, 3, 3]), call([[5, 5, 2], 2], [1, 1, 5, 5, 5])]
    report = await Judge().judge(session, code, tests)
    assert kinds(report) == [PASS, PASS], report.verdicts
    assert report.verdicts[1].got_excerpt == "[1, 1, 5, 5, 5]"


async def test_functional_wrong_answer_and_return_types(session):
    code = "def solve(x):\n    return {x}\n"
    report = await Judge().judge(session, code, [call([1], [1])])
    assert kinds(report) == [WA] and "expected [1]" in report.verdicts[0].message
    code = "def solve(x):\n    return {x: (x, x)}\n"
    assert kinds(await Judge().judge(session, code, [call([1], {"1": [1, 1]})])) == [PASS]
    code = "class A:\n    pass\ndef solve(x):\n    return A()\n"
    report = await Judge().judge(session, code, [call([1], 1)])
    assert kinds(report) == [WA] and "A object" in report.verdicts[0].got_excerpt


async def test_a_program_that_kills_the_harness_is_not_a_sandbox_error(session):
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
    report = await Judge().judge(session, code, [stdin("", "1\n"), stdin("", "1\n")])
    assert VerdictKind.SANDBOX_ERROR not in kinds(report)
    assert not report.all_passed


async def test_excerpts_are_capped(session):
    big = "x" * 5000
    report = await Judge(JudgeConfig(excerpt_chars=100)).judge(
        session,
        "import sys\nprint(input())\nsys.stderr.write('e' * 5000)\n",
        [stdin(big + "\n", big[:-1] + "\n")],
    )
    v = report.verdicts[0]
    assert v.kind is WA
    for text in (v.input_excerpt, v.expected_excerpt, v.got_excerpt, v.stderr_excerpt):
        assert len(text) <= 100 and "…" in text
    assert len(v.message) <= 300


async def test_judge_problem_uses_a_fresh_session_and_closes_it(local_sandbox, apps_problems):
    opened = []

    class Counting:
        name = "local"

        async def open_session(self):
            s = await local_sandbox.open_session()
            opened.append(s)
            return s

        async def close(self):
            pass

    problem = apps_problems["apps-train-0001"]
    judge = Judge()
    for _ in range(2):
        report = await judge.judge_problem(Counting(), problem, problem.solutions[0])
        assert report.all_passed
    assert len(opened) == 2 and opened[0] is not opened[1]
    assert all(s.closed for s in opened)


async def test_apps_mode_turns_string_dict_keys_into_ints(session):
    # APPS's run_test converts the string keys of a dict first argument (JSON forces strings) to ints
    code = "def solve(d):\n    return min(d) + 1\n"
    test = call([{"1": "a", "5": "b"}], 2)
    assert kinds(await Judge(JudgeConfig(mode="apps")).judge(session, code, [test])) == [PASS]
    assert kinds(await Judge(JudgeConfig(mode="lcb")).judge(session, code, [test])) == [RE]

"""Batches (Judge.judge_many, judge_jobs) and the per-program child (isolation="program") in the local
(bubblewrap) sandbox: one program's crash, hang, memory hog, processes or files never reach another's
verdicts; a crashing test costs only its own verdict; tests of one program do not share state."""

from __future__ import annotations

import pytest

from fst_agent.env.judge import Judge, JudgeConfig, JudgeItem, SolutionJob, judge_jobs, problem_checker
from fst_agent.types import VerdictKind
from tests.judge.verdicts import CE, MLE, OLE, PASS, RE, TLE, WA, call, kinds, stdin

pytestmark = pytest.mark.bwrap

ECHO = "print(input().upper())\n"


def runs_of(reports) -> set[str]:  # noqa: ANN001
    """The distinct harness runs behind ``reports``."""
    return {r.execution.model_dump_json() for r in reports if r.execution is not None}


ECHO_TESTS = [stdin("a\n", "A\n"), stdin("b\n", "B\n")]


# -- batches: programs do not reach each other ------------------------------------------------------


async def test_a_batch_isolates_crashing_hanging_and_hungry_programs(session):
    judge = Judge(JudgeConfig(per_test_seconds=1, memory_mb=256, output_limit_mb=1))
    items = [
        (ECHO, ECHO_TESTS),
        ("import ctypes\nctypes.string_at(0)\n", ECHO_TESTS),  # segfault
        ("while True:\n    pass\n", ECHO_TESTS),
        ("x = bytearray(2 << 30)\n", ECHO_TESTS),
        ("import os\nos._exit(7)\n", ECHO_TESTS),
        ("while True:\n    print('x' * 4096)\n", ECHO_TESTS),
        ("print(int(input(\n", ECHO_TESTS),
        ("def solve(a):\n    return a * 2\n", [call([2], 4), call([3], 6)]),
        ("def solve(a):\n    return 'x' * (2 << 20)\n", [call([2], 4), call([3], 6)]),
        (ECHO, ECHO_TESTS),
    ]
    reports = await judge.judge_many(session, items)
    assert [kinds(r) for r in reports] == [
        [PASS, PASS],
        [RE, RE],
        [TLE, TLE],
        [MLE, MLE],
        [RE, RE],
        [OLE, OLE],
        [CE, CE],
        [PASS, PASS],
        [OLE, OLE],
        [PASS, PASS],
    ]
    assert "SIGSEGV" in reports[1].verdicts[0].message
    assert "status 7" in reports[4].verdicts[0].message
    # one harness run for the whole batch: every report carries the same execution
    assert len(runs_of(reports)) == 1


async def test_a_program_that_kills_the_harness_does_not_cost_its_neighbours(session):
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
    reports = await Judge().judge_many(
        session, [(ECHO, ECHO_TESTS), (killer, ECHO_TESTS), (ECHO, ECHO_TESTS)]
    )
    assert kinds(reports[0]) == [PASS, PASS] and kinds(reports[2]) == [PASS, PASS]
    assert VerdictKind.SANDBOX_ERROR not in kinds(reports[1]) and not reports[1].all_passed
    # the killer was judged again alone, the program after it in a run of its own
    assert len(runs_of(reports)) == 3


async def test_processes_and_files_a_program_leaves_are_gone_before_the_next(session):
    leaver = (
        "import os, time\n"
        "open('input.txt', 'w').write('planted\\n')\n"
        "open('/tmp/planted', 'w').write('x')\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"  # a daemon: double fork, own session
        "        while True:\n"
        "            open('/tmp/daemon', 'w').write('alive')\n"
        "            time.sleep(0.01)\n"
        "    os._exit(0)\n"
        "time.sleep(0.1)\n"
        "print(input())\n"
    )
    checker = (
        "import os, time\n"
        "time.sleep(0.3)\n"
        "print(os.path.exists('input.txt'), os.path.exists('/tmp/planted'), os.path.exists('/tmp/daemon'))\n"
        "print(input())\n"
    )
    reports = await Judge().judge_many(
        session,
        [(leaver, [stdin("a\n", "a\n")]), (checker, [stdin("b\n", "False False False\nb\n")])],
    )
    assert kinds(reports[0]) == [PASS]
    assert kinds(reports[1]) == [PASS], reports[1].verdicts[0]


async def test_judge_many_keeps_order_checkers_and_empty_programs(session):
    items = [
        JudgeItem("print(float(input()) + 1e-9)\n", [stdin("1\n", "1.0\n")], "float:1e-6"),
        ("print(1)\n", []),
        ("print(float(input()) + 1e-9)\n", [stdin("1\n", "1.0\n")]),
    ]
    reports = await Judge().judge_many(session, items)
    assert [kinds(r) for r in reports] == [[PASS], [], [WA]]
    with pytest.raises(ValueError, match="unknown checker"):
        await Judge().judge_many(session, [("print(1)", ECHO_TESTS, "nope")])


async def test_small_batches_give_the_same_verdicts(session):
    code_ok, code_bad = ECHO, "print(input())\n"
    items = [(code_ok if i % 2 else code_bad, ECHO_TESTS) for i in range(7)]
    one = await Judge(JudgeConfig(batch_tests=1)).judge_many(session, items)
    many = await Judge(JudgeConfig(batch_tests=100)).judge_many(session, items)
    assert [kinds(r) for r in one] == [kinds(r) for r in many]
    assert len(runs_of(one)) == 7 and len(runs_of(many)) == 1


async def test_judge_jobs_in_batches_agrees_with_fresh_sessions(local_sandbox, apps_problems):
    problems = [
        apps_problems[i] for i in ("apps-train-0001", "apps-train-0111", "apps-train-2037", "apps-train-4184")
    ]
    jobs = [SolutionJob(p, i, code) for p in problems for i, code in enumerate(p.solutions[:3])]
    jobs.append(SolutionJob(problems[0], 3, "print(input(\n"))
    judge = Judge()
    batched = [(j, r) async for j, r in judge_jobs(judge, local_sandbox, jobs, concurrency=2)]
    fresh = [(j, r) async for j, r in judge_jobs(judge, local_sandbox, jobs, concurrency=2, batch=False)]
    assert [j for j, _ in batched] == jobs == [j for j, _ in fresh]
    assert [kinds(r) for _, r in batched] == [kinds(r) for _, r in fresh]
    assert kinds(batched[-1][1])[0] is CE


# -- the per-program child: resume after a crash, no state between tests ------------------------------


PROGRAM = JudgeConfig(isolation="program", per_test_seconds=1)


@pytest.mark.parametrize(
    "fail",
    [
        "raise ValueError('boom')",
        "import os; os._exit(3)",
        "import ctypes; ctypes.string_at(0)",
        "while True: pass",
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        "x = bytearray(1 << 31)",
    ],
)
async def test_a_failing_test_costs_only_its_own_verdict(session, fail):
    code = f"s = input()\nif s == 'bad':\n    {fail}\nprint(s.upper())\n"
    tests = [stdin("a\n", "A\n"), stdin("bad\n", "BAD\n"), stdin("c\n", "C\n"), stdin("d\n", "D\n")]
    judge = Judge(PROGRAM.model_copy(update={"memory_mb": 256}))
    run = await judge.run_tests(session, code, tests)
    report = judge.report(run, tests)
    assert kinds(report)[0] is PASS and kinds(report)[2:] == [PASS, PASS]
    assert kinds(report)[1] is not PASS
    forks = [run.outcomes[i]["fork"] for i in range(4)]
    if "raise" in fail:  # an exception leaves the child as it was: the same child runs on
        assert forks == [True, False, False, False]
    else:  # test 2 ended its child: test 3 starts a fresh one, test 4 runs in that one
        assert forks == [True, False, True, False]


async def test_clean_tests_share_one_child_and_traces_get_a_fresh_one(session):
    judge = Judge(PROGRAM)
    clean = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"
    tests = [stdin("1 2\n", "3\n"), stdin("3 4\n", "7\n"), stdin("5\n", "5\n")]
    run = await judge.run_tests(session, clean, tests)
    assert kinds(judge.report(run, tests)) == [PASS, PASS, PASS]
    assert [run.outcomes[i]["fork"] for i in range(3)] == [True, False, False]
    # monkeypatching a loaded module, a thread left running, a changed signal handler: a fresh child
    for trace in (
        "import builtins\nbuiltins.stash = 1\n",
        "import math\nmath.pi = 3\n",
        "import threading, time\nthreading.Thread(target=time.sleep, args=(0.05,), daemon=True).start()\n",
        "import signal\nsignal.signal(signal.SIGUSR1, lambda *a: None)\n",
        "import os\nos.environ['X'] = '1'\n",
    ):
        run = await judge.run_tests(session, trace + clean, tests)
        assert kinds(judge.report(run, tests)) == [PASS, PASS, PASS], trace
        assert [run.outcomes[i]["fork"] for i in range(3)] == [True, True, True], trace
        assert run.outcomes[0].get("dirty"), trace


async def test_no_state_between_tests_of_a_stdin_program(session):
    judge = Judge(PROGRAM)
    code = (
        "import sys, decimal, random\n"
        "seen = []\n"
        "seen.append(input())\n"
        "print(len(seen), decimal.getcontext().prec, sys.getrecursionlimit(), sys.stdin.read() == '')\n"
        "decimal.getcontext().prec = 5\n"
        "sys.setrecursionlimit(1234)\n"
        "import os\nos.chdir('/')\n"
    )
    expected = "1 28 50000 True\n"
    tests = [stdin("a\n", expected), stdin("b\n", expected), stdin("c\n", expected)]
    run = await judge.run_tests(session, code, tests)
    assert kinds(judge.report(run, tests)) == [PASS, PASS, PASS], judge.report(run, tests).verdicts
    assert [run.outcomes[i]["fork"] for i in range(3)] == [True, False, False]  # reset, not replaced
    # a module imported by the test is dropped and imported afresh by the next
    code = "import csv\nprint(getattr(csv, 'marker', False))\ncsv.marker = True\n"
    tests = [stdin("", "False\n")] * 3
    run = await judge.run_tests(session, code, tests)
    assert kinds(judge.report(run, tests)) == [PASS, PASS, PASS]
    assert [run.outcomes[i]["fork"] for i in range(3)] == [True, False, False]


async def test_fresh_solution_and_module_per_functional_test(session):
    judge = Judge(PROGRAM)
    code = (
        "import collections\n"
        "class Solution:\n    calls = []\n"
        "    def solve(self, x: int) -> List[int]:\n"
        "        Solution.calls.append(x)\n"
        "        return [len(Solution.calls), x]\n"
    )
    tests = [call([5], [1, 5]), call([6], [1, 6]), call([7], [1, 7])]
    run = await judge.run_tests(session, code, tests)
    assert kinds(judge.report(run, tests)) == [PASS, PASS, PASS]
    assert [run.outcomes[i]["fork"] for i in range(3)] == [True, False, False]


async def test_buffered_writers_flush_at_teardown_as_at_exit(session):
    code = "import os\nout = open(1, 'w', closefd=False)\nout.write(input() + '\\n')\n"  # never flushed
    tests = [stdin("a\n", "a\n"), stdin("b\n", "b\n")]
    for iso in ("program", "test"):
        report = await Judge(JudgeConfig(isolation=iso)).judge(session, code, tests)
        assert kinds(report) == [PASS, PASS], (iso, report.verdicts)


async def test_strict_isolation_forks_per_test(session):
    judge = Judge(JudgeConfig(isolation="test"))
    tests = [stdin("a\n", "A\n"), stdin("b\n", "B\n")]
    run = await judge.run_tests(session, ECHO, tests)
    assert [run.outcomes[i]["fork"] for i in range(2)] == [True, True]
    reports = await judge.judge_many(session, [(ECHO, tests), (ECHO, tests)])
    assert [kinds(r) for r in reports] == [[PASS, PASS], [PASS, PASS]]


async def test_auto_isolation_is_strict_for_one_program_and_per_program_in_batches():
    judge = Judge()
    assert judge.isolation_for(batch=False) == "test" and judge.isolation_for(batch=True) == "program"
    assert Judge(JudgeConfig(isolation="program")).isolation_for(batch=False) == "program"


async def test_problem_checker_in_batches(session, apps_problems):
    problem = apps_problems["apps-train-4184"]  # call-based, Codewars shape: the codewars checker
    code = problem.solutions[problem.verified_solutions[0]]
    (report,) = await Judge().judge_many(session, [(code, problem.tests, problem_checker(problem))])
    assert report.all_passed


async def test_a_program_that_stops_the_harness_or_kills_the_worker_costs_only_time(session):
    judge = Judge(JudgeConfig(per_test_seconds=1, harness_seconds=2))
    stopper = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nprint(input().upper())\n"
    worker_killer = (
        "import os\n"
        "ppid = int(open(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "os.kill(ppid, 9)\n"  # the harness's parent: the sandbox's worker (its output is lost)
    )
    tests = [stdin("a\n", "A\n")]
    reports = await judge.judge_many(
        session, [(ECHO, tests), (stopper, tests), (ECHO, tests), (worker_killer, tests), (ECHO, tests)]
    )
    assert [kinds(r) for r in reports][::2] == [[PASS]] * 3
    assert kinds(reports[1]) != [PASS] and kinds(reports[3]) != [PASS]


@pytest.mark.parametrize("isolation", ["program", "test"])
async def test_a_daemon_a_test_leaves_is_gone_before_the_next_test(session, isolation):
    code = (
        "import os, time\n"
        "if input() == 'spawn':\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            while True:\n"
        "                open('/tmp/beat', 'w').write('x')\n"
        "                time.sleep(0.01)\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"  # the daemon is nobody's child now but the harness's
        "    time.sleep(0.1)\n"
        "    print('spawned')\n"
        "else:\n"
        "    if os.path.exists('/tmp/beat'):\n"
        "        os.unlink('/tmp/beat')\n"
        "    time.sleep(0.2)\n"
        "    print(os.path.exists('/tmp/beat'))\n"
    )
    tests = [stdin("spawn\n", "spawned\n"), stdin("check\n", "False\n")]
    judge = Judge(JudgeConfig(isolation=isolation))
    run = await judge.run_tests(session, code, tests)
    assert kinds(judge.report(run, tests)) == [PASS, PASS]
    if isolation == "program":
        assert run.outcomes[0].get("dirty") == "processes escaped"

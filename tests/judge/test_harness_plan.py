"""The harness's pure parts (compile plan, value encoding) and the judge without a sandbox."""

from __future__ import annotations

import io
import json
import sys
from decimal import Decimal

import pytest

from fst_agent.env import harness
from fst_agent.env.compare import Opaque
from fst_agent.env.judge import (
    HarnessRun,
    Judge,
    JudgeConfig,
    decode_value,
    harness_source,
    read_harness_stdin,
)
from fst_agent.types import ExecutionResult, ExecutionStatus, ResourceLimits, TestCase, VerdictKind


def _run_wrapped(source: str, stdin: str) -> str:
    code, wrapped, err = harness.plan_program(source, "stdin")
    assert err is None
    g = {"__name__": "__main__"}
    old_in, old_out = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = io.StringIO(stdin), io.StringIO()
    try:
        exec(code, g)
        if wrapped:
            g[harness.WRAPPER_NAME]()
        return sys.stdout.getvalue()
    finally:
        sys.stdin, sys.stdout = old_in, old_out


def test_top_level_return_needs_the_wrapper():
    src = "n = int(input())\nif n < 0:\n    print('neg')\n    return\nprint('pos')\n"
    _, wrapped, _ = harness.plan_program(src, "stdin")
    assert wrapped
    assert _run_wrapped(src, "-1\n") == "neg\n"
    assert _run_wrapped(src, "1\n") == "pos\n"
    code, wrapped, err = harness.plan_program(src, "stdin", wrap="never")
    assert code is None and "return" in err


def test_globals_of_nested_functions_survive_wrapping():
    src = "count = 0\ndef bump():\n    global count\n    count += 1\nbump(); bump()\nprint(count)\n"
    assert _run_wrapped(src, "") == "2\n"


def test_main_guard_runs_and_imports_are_hoisted():
    src = "from math import *\ndef main():\n    print(sqrt(16))\nif __name__ == '__main__':\n    main()\n"
    assert _run_wrapped(src, "") == "4.0\n"


def test_plain_fallback_when_the_wrapper_does_not_compile():
    src = "if True:\n    from math import *\nprint(floor(2.5))\n"  # import * is illegal inside a function
    code, wrapped, err = harness.plan_program(src, "stdin")
    assert code is not None and not wrapped and err is None
    _, wrapped, _ = harness.plan_program("print(1)\n", "stdin", wrap="plain_first")
    assert not wrapped
    _, wrapped, _ = harness.plan_program("print(1)\nreturn\n", "stdin", wrap="plain_first")
    assert wrapped


def test_compile_errors_name_the_line():
    code, _, err = harness.plan_program("x = (\n", "stdin")
    assert code is None and err.startswith("SyntaxError: line 1:")
    code, _, err = harness.plan_program("nonlocal x\n", "stdin")
    assert code is None and "nonlocal" in err
    code, _, err = harness.plan_program("a\x00b", "stdin")
    assert code is None and "null" in err


def test_functional_programs_are_never_wrapped():
    _, wrapped, _ = harness.plan_program("def f():\n    return 1\n", "functional")
    assert not wrapped


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        10**40,
        0.5,
        "s",
        [1, [2]],
        (1, (2, 3)),
        frozenset({1, 2}),
        {1: "a", "b": (2,)},
        float("inf"),
        Decimal("0.1"),
    ],
)
def test_values_survive_the_trip(value):
    tagged = json.loads(json.dumps(harness.encode_value(value)))
    back = decode_value(tagged)
    assert back == value and type(back) is type(value) or isinstance(value, set)


def test_unencodable_values_become_opaque():
    back = decode_value(json.loads(json.dumps(harness.encode_value(object()))))
    assert isinstance(back, Opaque) and "object" in repr(back)
    nan = decode_value(harness.encode_value(float("nan")))
    assert nan != nan


def test_harness_source_is_stdlib_only():
    src = harness_source()
    for line in src.splitlines():
        if line.startswith(("import ", "from ")):
            assert "fst_agent" not in line and "pydantic" not in line, line


# -- the judge's bookkeeping with a fake session ----------------------------------------------------


class FakeSession:
    def __init__(self, result: ExecutionResult) -> None:
        self.result = result
        self.files: dict[str, str | bytes] = {}
        self.stdin: bytes | None = None

    async def write_file(self, path, content, *, executable=False):  # noqa: ANN001
        self.files[path] = content

    async def run(self, argv, *, stdin=None, limits=None, env=None):  # noqa: ANN001
        self.stdin = stdin
        self.limits = limits
        return self.result

    async def close(self):
        pass


TESTS = [
    TestCase(kind="stdin", input="1\n", expected="1\n"),
    TestCase(kind="stdin", input="2\n", expected="2\n"),
]


async def test_sandbox_error_becomes_sandbox_error_verdicts_never_wrong_answers():
    result = ExecutionResult(status=ExecutionStatus.SANDBOX_ERROR, backend="fake", error="daemon gone")
    session = FakeSession(result)
    report = await Judge().judge(session, "print(input())", TESTS)
    assert [v.kind for v in report.verdicts] == [VerdictKind.SANDBOX_ERROR] * 2
    assert report.sandbox_failed and report.passed == 0 and "daemon gone" in report.verdicts[0].message
    spec = read_harness_stdin(session.stdin)
    assert "expected" not in json.dumps(spec["tests"])  # expected outputs never enter the sandbox
    assert all(k in spec["tests"][0] for k in ("kind", "input"))


def _harness_output(nonce: str, lines: list[dict]) -> str:
    return "".join(f"{nonce} {json.dumps(obj)}\n" for obj in lines)


async def test_tests_the_harness_never_reported():
    judge = Judge()
    ok = {"status": "ok", "stdout": "1\n", "stderr": "", "wall": 0.01, "index": 0}
    # the harness was killed while test 1 ran (runtime_error run): the program did it, not the sandbox
    killed = ExecutionResult(
        status=ExecutionStatus.RUNTIME_ERROR,
        signal=9,
        backend="fake",
        stdout=_harness_output("N", [{"event": "start", "wrapped": True}, ok]),
    )
    report = judge.report(HarnessRun.parse(killed, "N"), TESTS)
    assert [v.kind for v in report.verdicts] == [VerdictKind.PASS, VerdictKind.RUNTIME_ERROR]
    assert "harness ended" in report.verdicts[1].message
    # the harness itself crashed (its own traceback): an infrastructure failure
    crashed = killed.model_copy(
        update={
            "signal": None,
            "exit_code": 1,
            "stderr": 'Traceback (most recent call last):\n  File ".fst_judge/harness.py"',
        }
    )
    report = judge.report(HarnessRun.parse(crashed, "N"), TESTS)
    assert report.verdicts[1].kind is VerdictKind.SANDBOX_ERROR
    # lines without the run's nonce are ignored (a program cannot forge verdicts by printing them)
    forged = ExecutionResult(
        status=ExecutionStatus.OK,
        backend="fake",
        stdout=_harness_output("X", [ok]) + _harness_output("N", [{"event": "start"}]),
    )
    report = judge.report(HarnessRun.parse(forged, "N"), TESTS)
    assert [v.kind for v in report.verdicts] == [VerdictKind.SANDBOX_ERROR] * 2


async def test_limits_of_the_run_cover_every_test():
    session = FakeSession(ExecutionResult(status=ExecutionStatus.OK, backend="fake"))
    cfg = JudgeConfig(per_test_seconds=2, memory_mb=512)
    await Judge(cfg).judge(session, "print(1)", TESTS * 5)
    limits: ResourceLimits = session.limits
    assert limits.wall_seconds >= 10 * 2
    assert limits.memory_mb > 512
    assert ".fst_judge/harness.py" in session.files


async def test_mixed_kinds_and_empty_tests():
    judge = Judge()
    session = FakeSession(ExecutionResult(status=ExecutionStatus.OK, backend="fake"))
    report = await judge.judge(session, "x", [])
    assert report.total == 0 and not report.all_passed and report.pass_rate == 0.0
    mixed = [TESTS[0], TestCase(kind="functional", input=[1], expected=1, fn_name="f")]
    with pytest.raises(ValueError, match="one kind"):
        await judge.judge(session, "x", mixed)
    with pytest.raises(ValueError, match="unknown checker"):
        await judge.judge(session, "x", TESTS, checker="nope")


def test_report_round_trips_through_json():
    from fst_agent.env.judge import JudgeReport
    from fst_agent.types import TestVerdict

    report = JudgeReport(verdicts=[TestVerdict(index=0, kind=VerdictKind.PASS)], passed=1, total=1)
    dumped = json.loads(report.model_dump_json())
    assert dumped["all_passed"] is True and dumped["pass_rate"] == 1.0
    assert JudgeReport.model_validate(dumped) == report
    with pytest.raises(ValueError, match="count"):
        JudgeReport(verdicts=[TestVerdict(index=0, kind=VerdictKind.PASS)], passed=0, total=1)

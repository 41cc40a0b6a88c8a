"""Short names for the judge tests: verdict kinds, test-case builders, a report's kinds."""

from __future__ import annotations

from fst_agent.types import TestCase, VerdictKind

PASS, WA, RE, TLE, MLE, OLE, CE = (
    VerdictKind.PASS,
    VerdictKind.WRONG_ANSWER,
    VerdictKind.RUNTIME_ERROR,
    VerdictKind.TIMEOUT,
    VerdictKind.MEMORY_LIMIT,
    VerdictKind.OUTPUT_LIMIT,
    VerdictKind.COMPILE_ERROR,
)


def stdin(inp: str, out: str) -> TestCase:
    return TestCase(kind="stdin", input=inp, expected=out)


def call(args: list, out, fn: str = "solve") -> TestCase:  # noqa: ANN001
    return TestCase(kind="functional", input=args, expected=out, fn_name=fn)


def kinds(report) -> list[VerdictKind]:  # noqa: ANN001
    return [v.kind for v in report.verdicts]

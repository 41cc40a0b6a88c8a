"""The judge: every test of one program, in one sandbox run, compared on the host.

    judge = Judge(JudgeConfig(mode="lcb"))
    report = await judge.judge(session, code, problem.tests)           # an open session
    report = await judge.judge_problem(sandbox, problem, code)          # a fresh session, closed after

One call writes :mod:`fst_agent.env.harness` into the session and runs it once (``python3 -I``) with the
program and the tests' *inputs* on standard input; the harness forks one child per test (its own
deadline, memory cap and process group) and reports raw outcomes as JSON lines. Expected outputs
never enter the sandbox: comparison happens here, by :mod:`fst_agent.env.compare` (the mode's rule, the
problem's named checker, or a callable). Every test gets a verdict, whatever the others did.

Verdicts follow :func:`fst_agent.types.verdict_kind_for`. An infrastructure failure (the backend's
``sandbox_error``, or the harness failing on its own) gives ``sandbox_error`` verdicts, never wrong
answers. If the harness process itself is killed or stalled while a test runs (only the program
under test can do that: same uid), the tests it did not report get the kind of how the run ended
(``runtime_error``, ``timeout``, ...), so killing the judge never masks a reward.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from fst_agent.env.compare import Checker, Comparison, Mode, Opaque, compare, json_semantics, resolve_checker
from fst_agent.env.data.problems import CodeProblem, RowError
from fst_agent.sandbox.protocol import Sandbox, SandboxSession
from fst_agent.types import (
    ExecutionResult,
    ExecutionStatus,
    ResourceLimits,
    TestCase,
    TestVerdict,
    VerdictKind,
    verdict_kind_for,
)

HARNESS_PATH = ".fst_judge/harness.py"
_MiB = 1024 * 1024
_MAX_RUN_OUTPUT = 64 * _MiB  # ResourceLimits.output_bytes' ceiling
_EXACT_RULES = frozenset({"", "exact", "equal", "stripped", "stripped_lines"})


class JudgeConfig(BaseModel):
    """How the judge runs and compares programs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field(
        "lcb",
        description="Comparison rule: 'lcb' (LiveCodeBench: stripped lines, exact Decimals, exact values) "
        "or 'apps' (APPS's harness, including its lenient token-set and rounding fallbacks).",
    )
    per_test_seconds: float = Field(
        6.0,
        gt=0,
        le=600,
        description="Wall-clock limit of each test; the test's processes are killed past it "
        "(LiveCodeBench uses 6 s, APPS 4 s).",
    )
    memory_mb: int = Field(
        1024,
        ge=64,
        le=65536,
        description="Address-space cap (RLIMIT_AS) of each test's process, MiB. Virtual "
        "memory: leave room for the interpreter (~40 MiB) and thread stacks.",
    )
    excerpt_chars: int = Field(
        400,
        ge=16,
        le=100_000,
        description="Characters kept of input, expected output, output and stderr in each verdict.",
    )
    output_limit_mb: int = Field(
        16,
        ge=1,
        le=1024,
        description="A test whose stdout or stderr exceeds this many MiB is killed (output_limit).",
    )
    wrap: Literal["wrap_first", "plain_first", "never"] = Field(
        "wrap_first",
        description="Standard-input programs: 'wrap_first' runs them wrapped in a function as both reference "
        "harnesses do (top-level return works) and falls back to the plain program when the wrapped one "
        "does not compile; 'plain_first' wraps only programs that do not compile as they are; 'never'.",
    )
    pids: int = Field(64, ge=4, le=4096, description="Most processes/threads the whole run may hold at once.")
    harness_seconds: float = Field(
        15.0,
        gt=0,
        le=600,
        description="Wall-clock allowance of the run beyond the tests' own limits "
        "(interpreter start, imports, forks).",
    )
    python: str = Field("python3", description="Interpreter inside the sandbox that runs the harness.")


class JudgeReport(BaseModel):
    """Verdicts on every test of one program, and the run that produced them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdicts: list[TestVerdict] = Field(..., description="One verdict per test, in test order.")
    passed: int = Field(..., ge=0, description="Tests whose verdict is pass.")
    total: int = Field(..., ge=0, description="Tests judged (== len(verdicts)).")
    mode: Mode = "lcb"
    compile_error: str | None = Field(
        None,
        description="The compiler's message when the program did not compile (every verdict is then "
        "compile_error); None otherwise.",
    )
    wrapped: bool | None = Field(
        None, description="Whether the program ran wrapped in a function; None when it never ran."
    )
    execution: ExecutionResult | None = Field(
        None, description="The harness run (stdout cut to an excerpt); None when there was nothing to run."
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        # a dumped report carries its computed fields; reading it back must not trip extra="forbid"
        if isinstance(data, dict) and ("pass_rate" in data or "all_passed" in data):
            data = {k: v for k, v in data.items() if k not in ("pass_rate", "all_passed")}
        return data

    @model_validator(mode="after")
    def _counts_agree(self) -> JudgeReport:
        if self.total != len(self.verdicts) or self.passed != sum(v.passed for v in self.verdicts):
            raise ValueError("passed/total must count the verdicts")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def sandbox_failed(self) -> bool:
        """True when any verdict is sandbox_error: the reward should be masked, not scored."""
        return any(v.kind is VerdictKind.SANDBOX_ERROR for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        """How many verdicts of each kind."""
        out: dict[str, int] = {}
        for v in self.verdicts:
            out[v.kind.value] = out.get(v.kind.value, 0) + 1
        return out


@cache
def harness_source() -> str:
    """The harness script's text (read once; it is written into each session)."""
    return resources.files("fst_agent.env").joinpath("harness.py").read_text(encoding="utf-8")


def decode_value(tagged: Any) -> Any:
    """The inverse of the harness's ``encode_value``: tuples, frozensets, dicts with any keys,
    non-finite floats, Decimals/Fractions; an unencodable object becomes an :class:`Opaque`."""
    if isinstance(tagged, list):
        return [decode_value(v) for v in tagged]
    if not isinstance(tagged, dict):
        return tagged
    if "t" in tagged:
        return tuple(decode_value(v) for v in tagged["t"])
    if "s" in tagged:
        return frozenset(_hashable(decode_value(v)) for v in tagged["s"])
    if "d" in tagged:
        return {_hashable(decode_value(k)): decode_value(v) for k, v in tagged["d"]}
    if "f" in tagged:
        return float(tagged["f"])
    if "n" in tagged:
        kind, text = tagged["n"]
        try:
            return Decimal(text) if kind == "decimal" else Fraction(text)
        except (ValueError, ArithmeticError):
            return Opaque(text)
    return Opaque(str(tagged.get("r", tagged)))


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


@dataclass(frozen=True)
class HarnessRun:
    """One harness run, parsed: the run itself, the harness's events (``start``, ``compile_error``,
    ``end``) and the raw outcome of each test it reported (status, stdout, stderr, value, wall, ...)."""

    execution: ExecutionResult | None
    events: Mapping[str, Mapping[str, Any]]
    outcomes: Mapping[int, Mapping[str, Any]]

    @classmethod
    def parse(cls, result: ExecutionResult, nonce: str) -> HarnessRun:
        """Read the harness's lines (those that start with the run's nonce) from ``result.stdout``."""
        prefix = nonce + " "
        events: dict[str, dict[str, Any]] = {}
        outcomes: dict[int, dict[str, Any]] = {}
        for line in result.stdout.splitlines():
            if not line.startswith(prefix):
                continue
            try:
                obj = json.loads(line[len(prefix) :])
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if "event" in obj:
                events[str(obj["event"])] = obj
            elif isinstance(obj.get("index"), int):
                outcomes[obj["index"]] = obj
        return cls(result, MappingProxyType(events), MappingProxyType(outcomes))


def excerpt(text: str, limit: int, *, tail: bool = False) -> str:
    """At most ``limit`` characters of ``text``, marking a cut (tracebacks keep their end: ``tail``)."""
    if len(text) <= limit:
        return text
    if tail:
        return "…" + text[-(limit - 1) :]
    return text[: limit - 1] + "…"


def _show_value(value: Any) -> str:
    try:
        return json.dumps(json_semantics(value), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


class Judge:
    """Judges programs against tests in a sandbox. Stateless: share one across concurrent calls."""

    def __init__(self, config: JudgeConfig | None = None) -> None:
        self.config = config or JudgeConfig()

    # -- public API --------------------------------------------------------------------------------

    async def judge(
        self,
        session: SandboxSession,
        code: str,
        tests: Sequence[TestCase],
        checker: str | Checker | None = None,
    ) -> JudgeReport:
        """Run ``code`` on every test in ``session`` (one harness run) and compare each outcome with
        ``checker`` (a built-in name, ``float:TOL``, a callable, or None for the mode's rule)."""
        check = resolve_checker(checker, self.config.mode)  # a bad checker name fails before running
        run = await self.run_tests(session, code, tests)
        return self.report(run, tests, check)

    async def run_tests(self, session: SandboxSession, code: str, tests: Sequence[TestCase]) -> HarnessRun:
        """The execution half of :meth:`judge`: one harness run, raw per-test outcomes, no comparison.
        :meth:`report` turns it into verdicts (as often as wanted, e.g. under both modes)."""
        cfg = self.config
        tests = list(tests)
        if not tests:
            return HarnessRun(execution=None, events={}, outcomes={})
        kinds = {t.kind for t in tests}
        if len(kinds) > 1:
            raise ValueError("one judge call takes tests of one kind (stdin or functional), not both")
        nonce = secrets.token_hex(16)
        spec, limits = self._spec_and_limits(code, tests, nonce)
        await session.write_file(HARNESS_PATH, harness_source())
        result = await session.run(
            [cfg.python, "-I", HARNESS_PATH],
            stdin=json.dumps(spec, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            limits=limits,
        )
        return HarnessRun.parse(result, nonce)

    async def judge_problem(
        self,
        sandbox: Sandbox,
        problem: CodeProblem,
        code: str,
        tests: Sequence[TestCase] | None = None,
    ) -> JudgeReport:
        """Judge ``code`` on ``tests`` (default: all of the problem's tests) in a fresh session of
        ``sandbox``, closed afterwards, with the problem's checker (:func:`problem_checker`)."""
        session = await sandbox.open_session()
        try:
            return await self.judge(
                session,
                code,
                problem.tests if tests is None else tests,
                problem_checker(problem, self.config.mode),
            )
        finally:
            await session.close()

    # -- the run -----------------------------------------------------------------------------------

    def _spec_and_limits(
        self, code: str, tests: list[TestCase], nonce: str
    ) -> tuple[dict[str, Any], ResourceLimits]:
        cfg = self.config
        output_limit = cfg.output_limit_mb * _MiB
        stderr_cap = max(4 * cfg.excerpt_chars, 4096)
        spec_tests = []
        budget = 64 * 1024
        biggest_input = 0
        for t in tests:
            if t.kind == "stdin":
                expected_len = len(t.expected.encode("utf-8", "surrogatepass"))
                cap = min(output_limit, 2 * expected_len + 64 * 1024)
                biggest_input = max(biggest_input, len(t.input.encode("utf-8", "surrogatepass")))
                value_room = 0
            else:
                expected_len = len(json.dumps(t.expected))
                cap = max(4 * cfg.excerpt_chars, 4096)
                value_room = 2 * expected_len + 64 * 1024
            budget += 2 * (cap + stderr_cap + value_room) + 4096
            spec_tests.append({"kind": t.kind, "input": t.input, "fn_name": t.fn_name, "stdout_cap": cap})
        spec = {
            "nonce": nonce,
            "code": code,
            "tests": spec_tests,
            "per_test_seconds": cfg.per_test_seconds,
            "memory_mb": cfg.memory_mb,
            "stdout_cap": 64 * 1024,
            "stderr_cap": stderr_cap,
            "output_limit_bytes": output_limit,
            "apps_dict_keys": cfg.mode == "apps",
            "wrap": cfg.wrap,
        }
        wall = min(3600.0, len(tests) * (cfg.per_test_seconds + 0.5) + cfg.harness_seconds)
        limits = ResourceLimits(
            wall_seconds=wall,
            memory_mb=min(65536, cfg.memory_mb + 256),
            pids=cfg.pids,
            file_size_mb=min(4096, max(16, math.ceil(biggest_input / _MiB) + 1)),
            output_bytes=min(_MAX_RUN_OUTPUT, max(256 * 1024, budget)),
        )
        return spec, limits

    def report(
        self,
        run: HarnessRun,
        tests: Sequence[TestCase],
        checker: str | Checker | None = None,
        mode: Mode | None = None,
    ) -> JudgeReport:
        """Verdicts for ``tests`` from a harness run, compared by ``checker`` (None: the rule of ``mode``,
        default the configured mode)."""
        cfg = self.config
        mode = mode or cfg.mode
        check = resolve_checker(checker, mode)
        tests = list(tests)
        if run.execution is None:
            return JudgeReport(verdicts=[], passed=0, total=0, mode=mode)
        result, events, per_test = run.execution, run.events, run.outcomes
        stored = result.model_copy(
            update={
                "stdout": excerpt(result.stdout, cfg.excerpt_chars),
                "stdout_truncated": result.stdout_truncated or len(result.stdout) > cfg.excerpt_chars,
            }
        )
        compile_error = events.get("compile_error", {}).get("error")
        wrapped = events["start"].get("wrapped") if "start" in events else None
        missing_kind, missing_message = self._missing_outcome(result, events)
        verdicts: list[TestVerdict] = []
        for i, test in enumerate(tests):
            if result.status is ExecutionStatus.SANDBOX_ERROR:
                verdicts.append(
                    self._verdict(i, test, VerdictKind.SANDBOX_ERROR, f"sandbox error: {result.error}")
                )
            elif compile_error is not None:
                kind = verdict_kind_for(ExecutionStatus.OK, output_matches=None, compiled=False)
                verdicts.append(self._verdict(i, test, kind, f"compile error: {compile_error}"))
            elif i in per_test:
                verdicts.append(self._judged(i, test, per_test[i], check))
            else:
                verdicts.append(self._verdict(i, test, missing_kind, missing_message))
        passed = sum(v.passed for v in verdicts)
        return JudgeReport(
            verdicts=verdicts,
            passed=passed,
            total=len(verdicts),
            mode=mode,
            compile_error=compile_error,
            wrapped=wrapped,
            execution=stored,
        )

    @staticmethod
    def _missing_outcome(result: ExecutionResult, events: Mapping[str, Any]) -> tuple[VerdictKind, str]:
        """The verdict of a test the harness never reported."""
        if result.status is ExecutionStatus.SANDBOX_ERROR:
            return VerdictKind.SANDBOX_ERROR, f"sandbox error: {result.error}"
        harness_bug = "Traceback" in result.stderr and HARNESS_PATH in result.stderr
        if (
            result.status in (ExecutionStatus.OK, ExecutionStatus.OUTPUT_LIMIT)
            or harness_bug
            or "start" not in events
        ):
            why = excerpt(
                result.stderr.strip() or result.error or f"status {result.status.value}", 300, tail=True
            )
            return VerdictKind.SANDBOX_ERROR, f"the judge's harness failed: {why}"
        # the harness was killed or stalled mid-test: only the program under test can do that
        kind = verdict_kind_for(result.status, output_matches=None)
        return kind, f"not reported: the judge's harness ended while tests ran ({result.status.value})"

    def _judged(self, index: int, test: TestCase, raw: Mapping[str, Any], check: Checker) -> TestVerdict:
        try:
            status = ExecutionStatus(raw.get("status", "runtime_error"))
        except ValueError:
            status = ExecutionStatus.SANDBOX_ERROR
        stdout = raw.get("stdout", "")
        got_text = stdout
        comparison: Comparison | None = None
        if test.kind == "functional" and "value" in raw:
            got_value = decode_value(raw["value"])
            got_text = _show_value(got_value)
        if status is ExecutionStatus.OK:
            if test.kind == "stdin":
                if raw.get("stdout_truncated"):
                    comparison = Comparison(
                        False,
                        f"output has {raw.get('stdout_bytes')} bytes, far more than the "
                        f"expected {len(test.expected)}",
                        "too_long",
                    )
                else:
                    comparison = compare(test, stdout, check)
            elif "value" in raw:
                comparison = compare(test, got_value, check)
            else:
                comparison = Comparison(
                    False, "the function returned nothing the harness could read", "no_value"
                )
        kind = verdict_kind_for(status, output_matches=comparison.matched if comparison else None)
        if comparison is not None:
            if comparison.matched:
                message = "" if comparison.rule in _EXACT_RULES else f"matched by rule '{comparison.rule}'"
            else:
                message = comparison.message
        else:
            message = f"{status.value}: {raw.get('error') or ''}".rstrip(": ")
        return self._verdict(
            index,
            test,
            kind,
            message,
            got=got_text,
            stderr=raw.get("stderr", ""),
            wall=float(raw.get("wall") or 0.0),
        )

    def _verdict(
        self,
        index: int,
        test: TestCase,
        kind: VerdictKind,
        message: str,
        *,
        got: str = "",
        stderr: str = "",
        wall: float = 0.0,
    ) -> TestVerdict:
        n = self.config.excerpt_chars
        if test.kind == "stdin":
            inp, exp = str(test.input), str(test.expected)
        else:
            inp = "\n".join(json.dumps(a, ensure_ascii=False) for a in test.input)
            exp = json.dumps(test.expected, ensure_ascii=False)
        return TestVerdict(
            index=index,
            kind=kind,
            public=test.public,
            input_excerpt=excerpt(inp, n),
            expected_excerpt=excerpt(exp, n),
            got_excerpt=excerpt(got, n),
            stderr_excerpt=excerpt(stderr, n, tail=True),
            message=excerpt(" ".join(message.split()), 300),
            wall_seconds=max(0.0, wall),
        )


def problem_checker(problem: CodeProblem, mode: Mode = "lcb") -> str | None:
    """The checker a problem is judged with: its own ``checker`` when set; else, in lcb mode, for an
    APPS call-based problem in the Codewars shape (a module-level function, not ``class Solution``),
    ``codewars`` — APPS stores those outputs one level deeper (``[false]`` for ``false``), a storage
    convention of the data set, not a leniency; else None (the mode's rule)."""
    if problem.checker:
        return problem.checker
    if (
        mode == "lcb"
        and problem.source == "apps"
        and problem.kind == "functional"
        and "class Solution" not in problem.starter_code
    ):
        return "codewars"
    return None


# --------------------------------------------------------------------------------------------------
# batches: what `fst-agent judge` runs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolutionJob:
    """One program to judge against one problem. ``solution_index`` counts the problem's programs in
    file order (its reference solutions, or the rows of a solutions file with its id)."""

    problem: CodeProblem
    solution_index: int
    code: str


def reference_jobs(problems: Sequence[CodeProblem], max_per_problem: int | None = None) -> list[SolutionJob]:
    """Each problem's own reference solutions (at most ``max_per_problem`` each)."""
    jobs = []
    for p in problems:
        for i, code in enumerate(p.solutions[:max_per_problem]):
            jobs.append(SolutionJob(p, i, code))
    return jobs


def read_solutions_jsonl(
    path: str | Path, problems: Sequence[CodeProblem]
) -> tuple[list[SolutionJob], list[RowError]]:
    """Rows ``{"id": problem id, "code": str}`` (several per id allowed) as jobs, in file order; a
    malformed row (not JSON, no string ``id``/``code``, unknown id) becomes a :class:`RowError` naming
    its line, and the rest are still read."""
    by_id = {p.id: p for p in problems}
    counts: dict[str, int] = {}
    jobs: list[SolutionJob] = []
    errors: list[RowError] = []
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                errors.append(RowError(str(path), lineno, f"not JSON: {exc}"))
                continue
            if not isinstance(row, dict):
                errors.append(
                    RowError(str(path), lineno, f"expected a JSON object, got {type(row).__name__}")
                )
                continue
            pid, code = row.get("id"), row.get("code")
            if not isinstance(pid, str):
                errors.append(RowError(str(path), lineno, "missing string field `id`"))
            elif not isinstance(code, str):
                errors.append(RowError(str(path), lineno, "missing string field `code`"))
            elif pid not in by_id:
                errors.append(RowError(str(path), lineno, f"unknown problem id {pid!r}"))
            else:
                jobs.append(SolutionJob(by_id[pid], counts.get(pid, 0), code))
                counts[pid] = counts.get(pid, 0) + 1
    return jobs, errors


async def judge_jobs(
    judge: Judge, sandbox: Sandbox, jobs: Sequence[SolutionJob], concurrency: int = 4
) -> AsyncIterator[tuple[SolutionJob, JudgeReport]]:
    """Judge ``jobs`` with at most ``concurrency`` fresh sessions at once; yields ``(job, report)`` in
    the order of ``jobs`` as soon as each and all before it are done."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    sem = asyncio.Semaphore(concurrency)

    async def one(job: SolutionJob) -> JudgeReport:
        async with sem:
            return await judge.judge_problem(sandbox, job.problem, job.code)

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        for job, task in zip(jobs, tasks, strict=True):
            yield job, await task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

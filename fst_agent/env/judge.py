"""The judge: every test of one program (or of many), in one sandbox run, compared on the host.

    judge = Judge(JudgeConfig(mode="lcb"))
    report = await judge.judge(session, code, problem.tests)           # an open session
    report = await judge.judge_problem(sandbox, problem, code)          # a fresh session, closed after
    reports = await judge.judge_many(session, [(code, tests, checker), ...])   # a batch, one run

One call writes :mod:`fst_agent.env.harness` into the session and runs it once (``python3 -I -c``
:data:`HARNESS_BOOTSTRAP`: the harness compiled here arrives on standard input and is loaded with marshal
when the sandbox's bytecode is ours, else the written script is compiled) with the program(s) and the
tests' *inputs* on standard input; the harness runs each program's tests in forked
children — one child per test (``isolation="test"``, what a single program gets by default), or one
child per program that runs its tests one after another and is replaced by a fresh one after any test
that crashes, hangs or leaves a trace (``isolation="program"``, what batches get by default) — each
test with its own deadline, memory cap and output limit, and reports raw outcomes as JSON lines.
Expected outputs never enter the sandbox: comparison happens here, by :mod:`fst_agent.env.compare`
(the mode's rule, the problem's named checker, or a callable). Every test gets a verdict, whatever the
others did; in a batch, every program gets its verdicts whatever the other programs did
(:meth:`Judge.judge_many`).

Verdicts follow :func:`fst_agent.types.verdict_kind_for`. An infrastructure failure (the backend's
``sandbox_error``, or the harness failing on its own) gives ``sandbox_error`` verdicts, never wrong
answers. If the harness process itself is killed or stalled while a test runs (only the program
under test can do that: same uid), the tests it did not report get the kind of how the run ended
(``runtime_error``, ``timeout``, ...), so killing the judge never masks a reward.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import marshal
import math
import secrets
from collections import deque
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
_RUN_EVENTS = frozenset({"batch", "harness", "end"})
_MIN_GUIDED = 48  # judge_jobs: fewest tests in a batch while more jobs are left (a run's set-up ~ 15 tests)
_BATCH_OUTPUT = 32 * _MiB  # a batch's budget of harness output (a run's output is capped at 64 MiB)


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
    isolation: Literal["auto", "program", "test"] = Field(
        "auto",
        description="How tests are forked. 'test': a fresh child per test (strict: nothing a test does to "
        "its process can reach the next test; ~1.5-2 ms more per test). 'program': one child runs a "
        "program's tests one after another (re-executed in a fresh module namespace per test, the process "
        "state checked and reset between tests) and is replaced by a fresh child after any test that "
        "crashes, is killed, overruns a limit or leaves a trace a fresh process would not have; a program "
        "that deliberately introspects the harness can make its tests share one process (e.g. pool their "
        "time), which 'test' rules out. 'auto': 'program' for batches (judge_many, judge_jobs: bulk "
        "judging), 'test' for single programs (judge, judge_problem: what rewards an RL policy).",
    )
    batch_tests: int = Field(
        192,
        ge=1,
        le=4096,
        description="judge_many: most tests in one harness run (programs are never split; a program "
        "with more tests runs alone). Bounds a run's worst-case wall time and output.",
    )


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


# The command line of every harness run. The harness's code comes first on standard input, compiled
# here (the sandbox's interpreter loads it with marshal when its bytecode magic is ours; compiling the
# 50 kB script costs ~10 ms per run); otherwise the bootstrap compiles the script written into the
# session. Then the spec (JSON) follows on standard input.
HARNESS_BOOTSTRAP = (
    "import marshal, os, sys\n"
    "def _load():\n"
    "    b = sys.stdin.buffer\n"
    "    blob = b.read(int.from_bytes(b.read(4), 'big'))\n"
    "    m = sys.modules['_frozen_importlib_external'].MAGIC_NUMBER\n"
    "    if blob[:len(m)] == m:\n"
    "        return marshal.loads(blob[len(m):])\n"
    f"    with open({HARNESS_PATH!r}, 'rb') as f:\n"
    f"        return compile(f.read(), {HARNESS_PATH!r}, 'exec', dont_inherit=True)\n"
    "_code = _load()\n"
    f"__file__ = os.path.abspath({HARNESS_PATH!r})\n"
    "del _load\n"
    "exec(_code)\n"
)


@cache
def harness_code() -> bytes:
    """The harness compiled by this interpreter, prefixed by its bytecode magic number."""
    code = compile(harness_source(), HARNESS_PATH, "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + marshal.dumps(code)


def harness_stdin(spec: Mapping[str, Any]) -> bytes:
    """What a harness run reads on standard input: the compiled harness (length-prefixed), then the
    spec as JSON."""
    code = harness_code()
    body = json.dumps(spec, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return len(code).to_bytes(4, "big") + code + body


def read_harness_stdin(data: bytes) -> dict[str, Any]:
    """The spec in a harness run's standard input (for tests and tools)."""
    n = int.from_bytes(data[:4], "big")
    return json.loads(data[4 + n :])


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

    @property
    def finished(self) -> bool:
        """Whether the harness finished this program (in a batch: reported its ``program_end``)."""
        return "program_end" in self.events

    @classmethod
    def parse(cls, result: ExecutionResult, nonce: str) -> HarnessRun:
        """Read the harness's lines (those that start with the run's nonce) from ``result.stdout``."""
        return cls.parse_batch(result, nonce, 1)[0]

    @classmethod
    def parse_batch(cls, result: ExecutionResult, nonce: str, n: int) -> list[HarnessRun]:
        """One :class:`HarnessRun` per program of a batch run (lines name their program: ``p``, 0 when
        absent). Events of the run as a whole (``batch``, ``end``) are in every program's events."""
        prefix = nonce + " "
        run_events: dict[str, dict[str, Any]] = {}
        events: list[dict[str, dict[str, Any]]] = [{} for _ in range(n)]
        outcomes: list[dict[int, dict[str, Any]]] = [{} for _ in range(n)]
        for line in result.stdout.splitlines():
            if not line.startswith(prefix):
                continue
            try:
                obj = json.loads(line[len(prefix) :])
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            p = obj.get("p", 0)
            if not isinstance(p, int) or not 0 <= p < n:
                continue
            if "event" in obj:
                name = str(obj["event"])
                if name in _RUN_EVENTS:
                    run_events[name] = obj
                else:
                    events[p][name] = obj
            elif isinstance(obj.get("index"), int):
                outcomes[p][obj["index"]] = obj
        return [
            cls(result, MappingProxyType({**run_events, **ev}), MappingProxyType(out))
            for ev, out in zip(events, outcomes, strict=True)
        ]


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
        tests = list(tests)
        if not tests:
            return HarnessRun(execution=None, events={}, outcomes={})
        kinds = {t.kind for t in tests}
        if len(kinds) > 1:
            raise ValueError("one judge call takes tests of one kind (stdin or functional), not both")
        nonce = secrets.token_hex(16)
        spec, limits = self._spec_and_limits([(code, tests)], nonce)
        result = await self._run_harness(session, spec, limits)
        return HarnessRun.parse(result, nonce)

    async def _run_harness(
        self, session: SandboxSession, spec: dict[str, Any], limits: ResourceLimits
    ) -> ExecutionResult:
        await session.write_file(HARNESS_PATH, harness_source())  # every run: a program may have changed it
        return await session.run(
            [self.config.python, "-I", "-c", HARNESS_BOOTSTRAP], stdin=harness_stdin(spec), limits=limits
        )

    async def judge_many(
        self,
        session: SandboxSession,
        items: Sequence[JudgeItem | tuple[str, Sequence[TestCase]] | tuple[str, Sequence[TestCase], Any]],
    ) -> list[JudgeReport]:
        """Judge several programs in ``session`` with as few harness runs as possible (batches of up to
        ``batch_tests`` tests): ``items`` are ``(code, tests)`` or ``(code, tests, checker)``. One report
        per item, in order, each as :meth:`judge` would give it (its ``execution`` is the batch's run).

        Every program keeps its own children, limits and deadlines; between programs the harness kills
        what the program left running and removes the files it created, so one program's crash, hang,
        memory hog or files never reach another's verdicts. A program that ends the harness itself
        (kills or stops it) ends its batch: the program that was running is then judged again alone
        (and gets what :meth:`judge` would give it), the ones after it again in a new batch. The
        session should be dedicated to judging (files that programs create in it are removed)."""
        norm = [self._item(it) for it in items]
        checks = [resolve_checker(item.checker, self.config.mode) for item in norm]  # bad names fail now
        runs = await self.run_many(session, [(item.code, item.tests) for item in norm])
        return [
            self.report(run, item.tests, check) for run, item, check in zip(runs, norm, checks, strict=True)
        ]

    @staticmethod
    def _item(item: Any) -> JudgeItem:
        if isinstance(item, JudgeItem):
            return item
        code, tests, *rest = item
        if len(rest) > 1:
            raise ValueError("a judge item is (code, tests) or (code, tests, checker)")
        return JudgeItem(code, list(tests), rest[0] if rest else None)

    async def run_many(
        self, session: SandboxSession, programs: Sequence[tuple[str, Sequence[TestCase]]]
    ) -> list[HarnessRun]:
        """The execution half of :meth:`judge_many`: one :class:`HarnessRun` per program, no comparison
        (:meth:`report` turns each into verdicts)."""
        progs = [(code, list(tests)) for code, tests in programs]
        for _code, tests in progs:
            if len({t.kind for t in tests}) > 1:
                raise ValueError("one program's tests are of one kind (stdin or functional), not both")
        out: list[HarnessRun | None] = [None] * len(progs)
        for j, (_code, tests) in enumerate(progs):
            if not tests:
                out[j] = HarnessRun(execution=None, events={}, outcomes={})
        pending = deque(self.plan_batches([tests for _code, tests in progs]))
        baseline: Mapping[str, Any] | None = None
        while pending:
            batch = [j for j in pending.popleft() if out[j] is None]
            if not batch:
                continue
            nonce = secrets.token_hex(16)
            spec, limits = self._spec_and_limits(
                [progs[j] for j in batch], nonce, batch=True, baseline=baseline
            )
            result = await self._run_harness(session, spec, limits)
            runs = HarnessRun.parse_batch(result, nonce, len(batch))
            if baseline is None and "batch" in runs[0].events:
                baseline = runs[0].events["batch"].get("baseline") or None
            unfinished = []
            for j, run in zip(batch, runs, strict=True):
                if run.finished or len(batch) == 1 or result.status is ExecutionStatus.SANDBOX_ERROR:
                    out[j] = run  # alone, or an infrastructure failure: what judge() would give it
                else:
                    unfinished.append(j)
            if unfinished:
                # the harness ended while a program ran: that program (the first unfinished) again
                # alone, the ones after it again together
                if len(unfinished) > 1:
                    pending.appendleft(unfinished[1:])
                pending.appendleft(unfinished[:1])
        return [run for run in out if run is not None]

    def plan_batches(
        self, programs: Sequence[Sequence[TestCase] | int], target: int | None = None
    ) -> list[list[int]]:
        """Group programs (their tests, or just how many) into harness runs, in order: at most ``target``
        (default ``batch_tests``) tests, an output budget of at most ``_BATCH_OUTPUT`` bytes and a
        worst-case wall time within a run's hour per run (a program is never split: one bigger than that
        runs alone); programs without tests are left out."""
        limit = self.config.batch_tests if target is None else target
        cap_wall = 3600.0 - self.config.harness_seconds
        per_test = self.config.per_test_seconds + 0.5
        batches: list[list[int]] = []
        current: list[int] = []
        n = budget = 0
        for j, prog in enumerate(programs):
            count, cost = (prog, 0) if isinstance(prog, int) else self._batch_cost(prog)
            if count <= 0:
                continue
            if current and (
                n + count > limit or (n + count) * per_test > cap_wall or budget + cost > _BATCH_OUTPUT
            ):
                batches.append(current)
                current, n, budget = [], 0, 0
            current.append(j)
            n += count
            budget += cost
        if current:
            batches.append(current)
        return batches

    def _batch_cost(self, tests: Sequence[TestCase]) -> tuple[int, int]:
        """(tests, bytes of harness output budgeted) of one program."""
        return len(tests), self._program_spec("", list(tests))[1] if tests else 0

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

    def _program_spec(self, code: str, tests: list[TestCase]) -> tuple[dict[str, Any], int, int, float]:
        """A program's entry in the spec, with its share of the run's output budget, its biggest input
        (bytes) and its share of the run's wall time."""
        cfg = self.config
        output_limit = cfg.output_limit_mb * _MiB
        stderr_cap = self._stderr_cap()
        spec_tests = []
        budget = 4096
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
        wall = len(tests) * (cfg.per_test_seconds + 0.5)
        return {"code": code, "tests": spec_tests}, budget, biggest_input, wall

    def isolation_for(self, batch: bool) -> Literal["program", "test"]:
        """The isolation a run uses: the configured one, or for 'auto' 'program' in batches and 'test'
        for a single program."""
        iso = self.config.isolation
        if iso == "auto":
            return "program" if batch else "test"
        return iso

    def _stderr_cap(self) -> int:
        return max(4 * self.config.excerpt_chars, 4096)

    def _spec_and_limits(
        self,
        programs: Sequence[tuple[str, list[TestCase]]],
        nonce: str,
        *,
        batch: bool = False,
        baseline: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], ResourceLimits]:
        """The harness's spec and the run's limits. One program without ``batch``: the single-program
        spec (``code``, ``tests``); otherwise ``programs``, with cleaning between programs."""
        cfg = self.config
        entries = []
        budget = 60 * 1024
        biggest_input = 0
        wall = cfg.harness_seconds
        for code, tests in programs:
            entry, b, big, w = self._program_spec(code, tests)
            entries.append(entry)
            budget += b
            biggest_input = max(biggest_input, big)
            wall += w
        spec: dict[str, Any] = {"nonce": nonce}
        if batch:
            spec["programs"] = entries
            spec["clean"] = True
            if baseline:
                spec["baseline"] = dict(baseline)
        else:
            (entry,) = entries
            spec.update(entry)
        spec.update(
            {
                "per_test_seconds": cfg.per_test_seconds,
                "memory_mb": cfg.memory_mb,
                "stdout_cap": 64 * 1024,
                "stderr_cap": self._stderr_cap(),
                "output_limit_bytes": cfg.output_limit_mb * _MiB,
                "apps_dict_keys": cfg.mode == "apps",
                "wrap": cfg.wrap,
                "isolation": self.isolation_for(batch),
            }
        )
        limits = ResourceLimits(
            wall_seconds=min(3600.0, wall),
            memory_mb=min(65536, cfg.memory_mb + 256),
            pids=cfg.pids,
            # a test's stdout and stderr are files (memfds) capped by RLIMIT_FSIZE at the output limit
            file_size_mb=min(4096, max(16, cfg.output_limit_mb + 1, math.ceil(biggest_input / _MiB) + 1)),
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


@dataclass(frozen=True)
class JudgeItem:
    """One program for :meth:`Judge.judge_many`: its code, its tests and their checker (a built-in
    name, ``float:TOL``, a callable, or None for the mode's rule)."""

    code: str
    tests: Sequence[TestCase]
    checker: str | Checker | None = None


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
    judge: Judge,
    sandbox: Sandbox,
    jobs: Sequence[SolutionJob],
    concurrency: int = 4,
    *,
    batch: bool = True,
) -> AsyncIterator[tuple[SolutionJob, JudgeReport]]:
    """Judge ``jobs`` on ``concurrency`` sandbox sessions at once; yields ``(job, report)`` in the order
    of ``jobs`` as soon as each and all before it are done.

    ``batch`` (default): each of the ``concurrency`` workers keeps one session and judges batches of
    programs in it with :meth:`Judge.judge_many` (one harness run per batch, each program isolated
    from the others; a session whose batch had a sandbox error is replaced). Without ``batch``: a
    fresh session per program (:meth:`Judge.judge_problem`, what an outcome reward does)."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if not batch:
        sem = asyncio.Semaphore(concurrency)

        async def one(job: SolutionJob) -> JudgeReport:
            async with sem:
                return await judge.judge_problem(sandbox, job.problem, job.code)

        tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    else:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[JudgeReport]] = [loop.create_future() for _ in jobs]
        for job, fut in zip(jobs, futures, strict=True):
            if not job.problem.tests:
                fut.set_result(JudgeReport(verdicts=[], passed=0, total=0, mode=judge.config.mode))
        counts = [len(job.problem.tests) for job in jobs]
        todo = deque(j for j, n in enumerate(counts) if n)
        left = sum(counts)

        def next_group() -> list[int]:
            """The next jobs in order: about a ``concurrency``-th of the tests left (guided scheduling:
            the last batches are the smallest, so the workers finish together), within ``batch_tests``
            tests and the output budget of a run, and no fewer than ``_MIN_GUIDED`` tests while jobs
            are left (a harness run costs ~30 ms of set-up)."""
            nonlocal left
            target = max(_MIN_GUIDED, min(judge.config.batch_tests, math.ceil(left / concurrency)))
            first = judge.plan_batches([jobs[j].problem.tests for j in list(todo)[: target + 1]], target)[0]
            group = [todo.popleft() for _ in first]
            left -= sum(counts[j] for j in group)
            return group

        async def worker() -> None:
            session: SandboxSession | None = None
            try:
                while todo:
                    group = next_group()
                    if session is None:
                        session = await sandbox.open_session()
                    items = [
                        JudgeItem(
                            jobs[j].code,
                            jobs[j].problem.tests,
                            problem_checker(jobs[j].problem, judge.config.mode),
                        )
                        for j in group
                    ]
                    try:
                        reports = await judge.judge_many(session, items)
                    except BaseException as exc:
                        for j in group:
                            if not futures[j].done():
                                futures[j].set_exception(exc)
                        raise
                    for j, report in zip(group, reports, strict=True):
                        futures[j].set_result(report)
                    if any(r.sandbox_failed for r in reports):
                        await session.close()
                        session = None
            finally:
                if session is not None:
                    await session.close()

        workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, max(1, len(todo))))]
        tasks = [*futures, *workers]

        def _failed(task: asyncio.Future[None]) -> None:
            # a worker that died leaves its queue to the others; if none is left, fail what remains
            if task.cancelled() or task.exception() is None:
                return
            if all(w.done() for w in workers):
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(RuntimeError(f"judging failed: {task.exception()!r}"))

        for w in workers:
            w.add_done_callback(_failed)
    try:
        for job, task in zip(jobs, tasks, strict=False):
            yield job, await task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""The shared base of ``apps`` and ``livecodebench``: a short :class:`ToolEnvironment` subclass, written the
way a user would write one.

An episode: the model reads the statement, runs programs (``run_code``), checks them against the public
tests (``run_tests``) and ends with ``submit``. The outcome reward is the submitted program's result on
the **hidden** tests, judged in a **fresh** sandbox session — never the agent's own, so nothing the agent
wrote there (a fake expected-output file, a ``sitecustomize.py``, a module shadowing the standard
library) can change it.

Rewards (all configurable, see :class:`CodeEnvConfig`):

* turn rewards — ``run_ok_reward`` the first time a distinct program runs without error (``run_code``
  exit 0; ``run_tests`` no public test crashed, timed out or failed to compile);
  ``improvement_reward × (new best public pass rate − previous best)`` when ``run_tests`` raises the
  best public pass rate of the episode; ``repeat_reward`` (instead of anything else) for a call identical
  to an earlier one, answered from the earlier result without running again; ``invalid_call_reward``
  for an unknown tool or invalid arguments;
* final reward — ``pass_rate``: hidden tests passed / hidden tests, or ``all_pass``: 1.0 when every hidden
  test passes, else 0.0; 0.0 when the episode ended without a submission;
* a ``sandbox_error`` anywhere (a tool's run, or the final judging) ends the episode with status
  ``sandbox_error`` and the final reward ``None`` (masked), never 0.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal

import structlog
from pydantic import Field

from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.data.hub import canonical_split, normalize_choices, select_split
from fst_agent.env.data.offline import load_offline_problems
from fst_agent.env.data.problems import CodeProblem
from fst_agent.env.judge import Judge, JudgeConfig, JudgeReport, problem_checker
from fst_agent.env.tools import ToolError, ToolOutput, tool
from fst_agent.env.views import ResultBlock
from fst_agent.sandbox.common import sandbox_error
from fst_agent.sandbox.protocol import SandboxSession, SandboxUnavailable
from fst_agent.sandbox.retry import InfrastructureError
from fst_agent.types import (
    EpisodeStatus,
    ExecutionResult,
    ExecutionStatus,
    Message,
    ResourceLimits,
    Task,
    TestVerdict,
    ToolCall,
    ToolResult,
    VerdictKind,
)
from fst_code_envs.viewer import render_tool_result

log = structlog.get_logger("fst_code_envs")

_CRASHES = {
    VerdictKind.COMPILE_ERROR,
    VerdictKind.RUNTIME_ERROR,
    VerdictKind.TIMEOUT,
    VerdictKind.MEMORY_LIMIT,
    VerdictKind.OUTPUT_LIMIT,
    VerdictKind.SANDBOX_ERROR,
}
_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)```\s*$", re.S)
# LeetCode starter code uses List, Optional, ... without importing them; the judges prepend the imports,
# and run_code does the same for call-based problems so that the model's runs match its tests.
_CALL_PRELUDE = "from typing import *\nexec(compile(open('solution.py').read(), 'solution.py', 'exec'))"


class CodeEnvConfig(EnvConfig):
    """Settings shared by the ``apps`` and ``livecodebench`` environments (plus :class:`EnvConfig`'s
    ``max_turns``, ``max_tokens`` — enforced by the rollout engine — ``invalid_call_reward`` and
    ``no_tool_call_reward``)."""

    dataset: str | None = Field(
        None,
        description="None: the offline set written by fst-agent (proves the plumbing, not skill). Else a hub "
        "dataset id, read through huggingface_hub, or a local raw-format .jsonl/.parquet file or directory; "
        "one that cannot be loaded is an error.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of `dataset`.")
    difficulties: list[str] | None = Field(None, description="Keep only problems of these difficulties; None: all.")
    limit: int | None = Field(None, ge=1, description="Read at most this many problems (before the split).")
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of problems held out as `validation` (hash of id and seed)."
    )
    split_seed: int = Field(0, description="Seed of the deterministic train/validation split.")
    judge_mode: Literal["apps", "lcb"] = Field(
        "lcb", description="Output comparison: the APPS harness's lenient rules or LiveCodeBench's exact ones."
    )
    per_test_seconds: float = Field(6.0, gt=0, le=120, description="Wall-clock limit of one test (run_tests, final).")
    run_seconds: float = Field(10.0, gt=0, le=120, description="Wall-clock limit of one run_code call.")
    memory_mb: int = Field(1024, ge=64, le=16384, description="Memory cap (address space) of every program run, MiB.")
    final_reward_kind: Literal["pass_rate", "all_pass"] = Field(
        "pass_rate",
        description="Outcome reward of a submission on the hidden tests: `pass_rate` = passed / total; "
        "`all_pass` = 1.0 if every hidden test passes, else 0.0.",
    )
    run_ok_reward: float = Field(
        0.05, ge=0, le=1,
        description="Turn reward the first time a distinct program runs without error (run_code exit 0; "
        "run_tests: no public test crashed, timed out or failed to compile).",
    )
    improvement_reward: float = Field(
        0.2, ge=0, le=1,
        description="Turn reward per unit of improvement of the episode's best public pass rate (run_tests): "
        "improvement_reward × (new best − previous best).",
    )
    repeat_reward: float = Field(
        0.0, le=0,
        description="Turn reward of a call identical to an earlier one (same tool, same arguments); it is "
        "answered from the earlier result, not run again, and earns nothing else.",
    )
    output_chars: int = Field(1500, ge=100, le=100_000, description="Characters of stdout/stderr shown per run.")
    max_verdicts_shown: int = Field(5, ge=1, le=100, description="Failing public tests detailed per run_tests call.")
    max_code_chars: int = Field(50_000, ge=100, description="Longest program a tool accepts.")


def strip_fence(code: str) -> str:
    """A program wrapped in a Markdown code fence, unwrapped (models often send one)."""
    match = _FENCE.match(code)
    return match.group(1) if match else code


def _excerpt(text: str, limit: int) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def _tail(text: str, limit: int) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= limit else f"[{len(text) - limit} characters cut] …" + text[-limit:]


class CodeEnvironment(ToolEnvironment):
    """Programming problems with a Python sandbox: run code, run the public tests, submit."""

    config_class: ClassVar[type[EnvConfig]] = CodeEnvConfig
    config: CodeEnvConfig
    seed_context: ClassVar[str] = (
        "You are an expert Python programmer. Read the problem, write a Python 3 solution, check it with "
        "run_tests (and run_code for your own inputs), fix what fails, then call submit with the final program."
    )
    #: Name of the offline set used when no dataset is named (``apps`` or ``livecodebench``).
    offline_set: ClassVar[str] = "apps"
    #: Whether the dataset has its own test split that ``load_tasks("test")`` reads whole (APPS does).
    has_test_split: ClassVar[bool] = False

    def __init__(self, config: EnvConfig | dict[str, Any] | None = None, *, sandbox: Any = None) -> None:
        super().__init__(config, sandbox=sandbox)
        self.problem: CodeProblem | None = None
        self.submitted: str | None = None
        self.final_report: JudgeReport | None = None
        self.best_public_pass_rate = 0.0
        self._ran_ok: set[str] = set()
        self._answers: dict[str, ToolResult] = {}
        self._final: float | None = None
        self._final_done = False

    # ---------------------------------------------------------------------------------------------
    # Tasks
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def load_problems(cls, config: CodeEnvConfig, split: str) -> list[CodeProblem]:
        """Every problem of the configured source (subclasses read their dataset here)."""
        raise NotImplementedError

    @classmethod
    def load_tasks(cls, split: str = "train", config: EnvConfig | None = None) -> list[Task]:
        """``train`` / ``validation`` (also ``val``, ``eval``): a deterministic split of the source by a hash of
        each problem's id and ``split_seed``; ``test``: the dataset's own test split where it has one (APPS),
        else the same as ``validation``; ``all``: everything."""
        if isinstance(config, cls.config_class):
            cfg = config
        elif isinstance(config, EnvConfig):
            cfg = cls.config_class.model_validate(config.model_dump())
        else:
            cfg = cls.config_class.model_validate(config or {})
        problems = cls.load_problems(cfg, split)  # type: ignore[arg-type]
        if split != "test" or not cls.has_test_split or cfg.dataset is None:
            which = "validation" if split == "test" else canonical_split(split)
            problems = select_split(problems, which, seed=cfg.split_seed, validation_fraction=cfg.validation_fraction)
        if not problems:
            log.warning("code_env.no_tasks", env=cls.name, split=split, dataset=cfg.dataset or "offline")
        return [p.to_task(cls.name, split=split) for p in problems]

    @classmethod
    def offline_problems(cls, cfg: CodeEnvConfig, difficulties: tuple[str, ...]) -> list[CodeProblem]:
        """The offline set written by fst-agent (logged as such), filtered by ``cfg.difficulties``."""
        problems = load_offline_problems(cls.offline_set)  # type: ignore[arg-type]
        wanted = normalize_choices(cfg.difficulties, difficulties, f"{cls.name} difficulty")
        if wanted is not None:
            problems = [p for p in problems if (p.difficulty or "").lower() in wanted]
        log.warning(
            "code_env.offline_set",
            env=cls.name,
            problems=len(problems),
            note=f"no dataset named: using the offline {cls.offline_set} set written by fst-agent; it proves the "
            "plumbing, not skill (name one with dataset=...)",
        )
        return problems

    # ---------------------------------------------------------------------------------------------
    # Episode
    # ---------------------------------------------------------------------------------------------

    async def reset(self, task: Task) -> list[Message]:
        self.problem = CodeProblem.from_task(task)
        self.submitted, self.final_report, self._final, self._final_done = None, None, None, False
        self.best_public_pass_rate = 0.0
        self._ran_ok.clear()
        self._answers.clear()
        return await super().reset(task)

    async def opening(self, task: Task) -> list[Message]:
        return [Message(role="user", content=self.prompt_for(self._problem()))]

    def prompt_for(self, problem: CodeProblem) -> str:
        """Statement, starter code, how input and output work, and the tools."""
        parts = [problem.statement.strip()]
        if problem.starter_code.strip():
            parts.append(f"Starter code:\n```python\n{problem.starter_code.rstrip()}\n```")
        if problem.kind == "functional":
            where = (
                f"the method `{problem.fn_name}` of `class Solution` (a fresh instance per test)"
                if "class Solution" in problem.starter_code
                else f"the function `{problem.fn_name}`"
            )
            parts.append(
                f"Use Call-Based format: write {where}. Each test calls it with the test's arguments and compares "
                "its return value with the expected one. Do not read input or print the answer."
            )
        else:
            parts.append(
                "Use Standard Input format: your program reads the input from standard input and prints the answer "
                "to standard output, exactly in the format asked."
            )
        n_public = len(problem.public_tests)
        parts.append(
            "Tools:\n"
            "- run_code(code, stdin): run a Python 3 program with the given standard input; see its output.\n"
            f"- run_tests(code): run the program on the {n_public} public example test{'s' if n_public != 1 else ''} "
            "and see expected vs. got.\n"
            "- submit(code): submit the final program; hidden tests decide the reward. This ends the episode.\n"
            f"You have at most {self.config.max_turns} turns."
        )
        return "\n\n".join(parts)

    def _problem(self) -> CodeProblem:
        if self.problem is None:
            raise RuntimeError(f"environment {self.name!r}: call reset(task) before using its tools")
        return self.problem

    def judge(self) -> Judge:
        return Judge(
            JudgeConfig(
                mode=self.config.judge_mode,
                per_test_seconds=self.config.per_test_seconds,
                memory_mb=self.config.memory_mb,
            )
        )

    def _check_code(self, code: str) -> str:
        code = strip_fence(code)
        if not code.strip():
            raise ToolError("`code` is empty: pass the whole Python program")
        if len(code) > self.config.max_code_chars:
            raise ToolError(f"`code` has {len(code)} characters; at most {self.config.max_code_chars} are accepted")
        return code

    async def _session_or_error(self) -> SandboxSession | ExecutionResult:
        try:
            return _GuardedSession(await self.session())
        except SandboxUnavailable as exc:
            return sandbox_error(getattr(self.sandbox, "name", "?"), str(exc))

    async def step(self, call: ToolCall) -> ToolResult:
        """Identical repeated calls are answered from the earlier result (``repeat_reward``, nothing run)."""
        key = json.dumps([call.name, call.arguments], sort_keys=True, default=str)
        earlier = self._answers.get(key)
        if earlier is not None and not self.done and call.parse_error is None:
            return ToolResult(
                call_id=call.id,
                name=call.name,
                content=f"(Same call as before; not run again.)\n{earlier.content}",
                verdicts=earlier.verdicts,
                reward=self.config.repeat_reward,
                metadata={"repeat_of": earlier.call_id},
            )
        result = await super().step(call)
        if result.error is None and not result.done:
            self._answers[key] = result
        return result

    # ---------------------------------------------------------------------------------------------
    # Tools
    # ---------------------------------------------------------------------------------------------

    @tool
    async def run_code(self, code: str, stdin: str = "") -> ToolOutput:
        """Run a Python 3 program in the sandbox with the given standard input and return its output.

        Args:
            code: The whole program.
            stdin: What the program reads from standard input.
        """
        code = self._check_code(code)
        problem = self._problem()
        session = await self._session_or_error()
        if isinstance(session, ExecutionResult):
            return ToolOutput(content=f"status: sandbox_error\n{session.error}", execution=session)
        limits = ResourceLimits(wall_seconds=self.config.run_seconds, memory_mb=self.config.memory_mb)
        functional = problem.kind == "functional"
        argv = ["python3", "-c", _CALL_PRELUDE] if functional else ["python3", "main.py"]
        try:
            await session.write_file("solution.py" if functional else "main.py", code)
            result = await session.run(argv, stdin=stdin, limits=limits)
        except InfrastructureError as exc:
            result = sandbox_error(getattr(self.sandbox, "name", "?"), str(exc), limits)
        reward = 0.0
        if result.status is ExecutionStatus.OK and code not in self._ran_ok:
            self._ran_ok.add(code)
            reward = self.config.run_ok_reward
        return ToolOutput(content=self.describe_run(result), reward=reward, execution=result)

    @tool
    async def run_tests(self, code: str) -> ToolOutput:
        """Run the program on the problem's public example tests and report each verdict, expected vs. got.

        Args:
            code: The whole program (for call-based problems: the function or class Solution).
        """
        code = self._check_code(code)
        problem = self._problem()
        session = await self._session_or_error()
        if isinstance(session, ExecutionResult):
            return ToolOutput(content=f"status: sandbox_error\n{session.error}", execution=session)
        try:
            report = await self.judge().judge(
                session, code, problem.public_tests, checker=problem_checker(problem, self.config.judge_mode)
            )
        except InfrastructureError as exc:
            failure = sandbox_error(getattr(self.sandbox, "name", "?"), str(exc))
            return ToolOutput(content=f"status: sandbox_error\n{failure.error}", execution=failure)
        failure = _sandbox_failure(report)
        if failure is not None:
            return ToolOutput(content=f"status: sandbox_error\n{failure.error}", execution=failure,
                              verdicts=list(report.verdicts))
        reward = 0.0
        if not any(v.kind in _CRASHES for v in report.verdicts) and code not in self._ran_ok:
            self._ran_ok.add(code)
            reward += self.config.run_ok_reward
        if report.pass_rate > self.best_public_pass_rate:
            reward += self.config.improvement_reward * (report.pass_rate - self.best_public_pass_rate)
            self.best_public_pass_rate = report.pass_rate
        return ToolOutput(
            content=self.describe_report(report),
            reward=reward,
            verdicts=list(report.verdicts),
            metadata={"public_pass_rate": report.pass_rate, "passed": report.passed, "total": report.total},
        )

    @tool
    async def submit(self, code: str) -> ToolOutput:
        """Submit the final program. Hidden tests decide the reward; this ends the episode.

        Args:
            code: The whole program (for call-based problems: the function or class Solution).
        """
        self.submitted = self._check_code(code)
        return ToolOutput(content="Submitted. The hidden tests will decide the reward.", done=True)

    # ---------------------------------------------------------------------------------------------
    # Outcome
    # ---------------------------------------------------------------------------------------------

    async def final_reward(self) -> float | None:
        """The submission's result on the hidden tests, judged in a fresh sandbox session (cached)."""
        if self._final_done:
            return self._final
        self._final_done = True
        if self.status is EpisodeStatus.SANDBOX_ERROR:
            return None
        if self.submitted is None:
            self._final = 0.0
            return 0.0
        problem = self._problem()
        try:
            report = await self.judge().judge_problem(self.sandbox, problem, self.submitted, tests=problem.hidden_tests)
        except (SandboxUnavailable, InfrastructureError) as exc:
            log.warning("code_env.final_sandbox_error", env=self.name, task=problem.id, error=str(exc))
            self.status = EpisodeStatus.SANDBOX_ERROR
            return None
        self.final_report = report
        if _sandbox_failure(report) is not None:
            log.warning("code_env.final_sandbox_error", env=self.name, task=problem.id)
            self.status = EpisodeStatus.SANDBOX_ERROR
            return None
        if self.config.final_reward_kind == "all_pass":
            self._final = 1.0 if report.all_passed else 0.0
        else:
            self._final = report.pass_rate
        return self._final

    # ---------------------------------------------------------------------------------------------
    # What the model sees
    # ---------------------------------------------------------------------------------------------

    def describe_run(self, result: ExecutionResult) -> str:
        n = self.config.output_chars
        head = f"status: {result.status.value}"
        if result.exit_code is not None:
            head += f" (exit code {result.exit_code}, {result.wall_seconds:.2f} s)"
        elif result.status is ExecutionStatus.TIMEOUT:
            head += f" (killed after {result.limits.wall_seconds:g} s)"
        parts = [head]
        if result.stdout:
            cut = " (cut by the sandbox)" if result.stdout_truncated else ""
            parts.append(f"stdout{cut}:\n{_excerpt(result.stdout, n)}")
        else:
            parts.append("stdout: (empty)")
        if result.stderr:
            parts.append(f"stderr:\n{_tail(result.stderr, n)}")
        if result.error:
            parts.append(f"error: {result.error}")
        return "\n".join(parts)

    def describe_report(self, report: JudgeReport) -> str:
        n = max(80, self.config.output_chars // 5)
        lines = [f"public tests: {report.passed}/{report.total} passed"]
        if report.compile_error:
            lines.append(f"compile error (no test ran): {_tail(str(report.compile_error), self.config.output_chars)}")
            return "\n".join(lines)
        shown = 0
        for number, verdict in enumerate(report.verdicts):
            kind = verdict.kind.value
            if verdict.passed:
                lines.append(f"test {number}: pass")
                continue
            if shown >= self.config.max_verdicts_shown:
                lines.append(f"test {number}: {kind}")
                continue
            shown += 1
            message = verdict.message.removeprefix(f"{kind}:").strip()
            lines.append(f"test {number}: {kind}" + (f": {message}" if message else ""))
            if verdict.input_excerpt:
                lines.append(f"  input: {_excerpt(verdict.input_excerpt, n)!r}")
            lines.append(f"  expected: {_excerpt(verdict.expected_excerpt, n)!r}")
            if verdict.got_excerpt or verdict.kind is VerdictKind.WRONG_ANSWER:
                lines.append(f"  got: {_excerpt(verdict.got_excerpt, n)!r}")
            if verdict.stderr_excerpt:
                lines.append(f"  stderr: {_tail(verdict.stderr_excerpt, n)}")
        return "\n".join(lines)

    # ---------------------------------------------------------------------------------------------
    # What a person sees in the run viewer
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def render_tool_result(cls, call: ToolCall | None, result: ToolResult) -> list[ResultBlock] | None:
        """How ``fst-agent view`` shows this environment's tool results (see :mod:`fst_code_envs.viewer`)."""
        return render_tool_result(call, result)


class _GuardedSession:
    """The agent's session, whose files the agent's own programs may have tampered with (a read-only
    directory, a file where the judge writes its harness): a refused write is the model's doing and
    comes back to it as a tool error, never as a crash or a sandbox error."""

    def __init__(self, inner: SandboxSession) -> None:
        self._inner = inner

    async def write_file(self, path: str, content: str | bytes, *, executable: bool = False) -> None:
        try:
            await self._inner.write_file(path, content, executable=executable)
        except (ValueError, PermissionError) as exc:
            raise ToolError(
                f"cannot write {path!r} in your sandbox session ({exc}); a program you ran changed its files "
                "or permissions"
            ) from None

    async def run(self, argv: Any, **kwargs: Any) -> ExecutionResult:
        return await self._inner.run(argv, **kwargs)

    async def close(self) -> None:
        await self._inner.close()


def _sandbox_failure(report: JudgeReport) -> ExecutionResult | None:
    """An ExecutionResult for the infrastructure failing during judging, or None."""
    execution = getattr(report, "execution", None)
    if isinstance(execution, ExecutionResult) and execution.status is ExecutionStatus.SANDBOX_ERROR:
        return execution
    bad: list[TestVerdict] = [v for v in report.verdicts if v.kind is VerdictKind.SANDBOX_ERROR]
    if bad:
        return sandbox_error("judge", bad[0].message or "the sandbox failed while judging")
    return None

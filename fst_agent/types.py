"""The shared contracts: every room speaks these pydantic models and nothing else.

Data flows one way: task → environment → policy turn → tool call → sandbox → ExecutionResult →
environment (turn reward, next observation) → … → Trajectory → trace store → {slow, fast}.

Models are frozen where they are facts (an ExecutionResult never changes after the run) and carry
``schema_version`` where they are persisted (Trajectory), so stores can migrate old rows.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TRAJECTORY_SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Mutable(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------------


class ExecutionStatus(enum.StrEnum):
    """How one program run ended.

    ``sandbox_error`` is the infrastructure failing (daemon gone, container died, API 5xx): never the
    model's fault. Its episode is retried or its reward masked, never scored 0.
    """

    OK = "ok"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    SANDBOX_ERROR = "sandbox_error"


class ResourceLimits(_Frozen):
    """Bounds for one run inside a sandbox. Network is always off; it is not a limit one can raise."""

    wall_seconds: float = Field(10.0, gt=0, le=3600, description="Wall-clock limit; the run is killed past it.")
    cpu_seconds: float | None = Field(
        None, gt=0, le=3600, description="CPU-time limit (RLIMIT_CPU); None means wall_seconds rounded up."
    )
    memory_mb: int = Field(512, ge=16, le=65536, description="Address-space / cgroup memory cap in MiB.")
    pids: int = Field(64, ge=1, le=4096, description="Most processes and threads the run may hold at once.")
    file_size_mb: int = Field(16, ge=1, le=4096, description="Largest file the run may write (RLIMIT_FSIZE), MiB.")
    output_bytes: int = Field(
        64 * 1024, ge=256, le=64 * 1024 * 1024, description="Bytes kept of stdout and of stderr each; more is cut."
    )
    open_files: int = Field(256, ge=16, le=65536, description="Most open file descriptors (RLIMIT_NOFILE).")

    @property
    def effective_cpu_seconds(self) -> int:
        import math

        return math.ceil(self.cpu_seconds if self.cpu_seconds is not None else self.wall_seconds)


class ExecutionResult(_Frozen):
    """What one run in a sandbox did. Produced by every backend with the same meaning."""

    status: ExecutionStatus
    exit_code: int | None = Field(None, description="Process exit status; None when killed by a signal or never run.")
    signal: int | None = Field(None, description="Signal number that ended the process, if any.")
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_seconds: float = Field(0.0, ge=0)
    cpu_seconds: float | None = Field(None, ge=0, description="User+system CPU of the run, where the backend knows it.")
    peak_memory_bytes: int | None = Field(None, ge=0, description="Peak resident memory, where the backend knows it.")
    backend: str = Field(..., description="Name of the backend that ran it: local, docker, e2b, ...")
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    error: str | None = Field(None, description="Infrastructure detail for sandbox_error; None otherwise.")

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.OK

    @model_validator(mode="after")
    def _sandbox_error_says_why(self) -> ExecutionResult:
        if self.status is ExecutionStatus.SANDBOX_ERROR and not self.error:
            raise ValueError("an ExecutionResult with status sandbox_error must say why in `error`")
        return self


# --------------------------------------------------------------------------------------------------
# Tests and verdicts
# --------------------------------------------------------------------------------------------------


class TestCase(_Frozen):
    """One test of a programming task.

    ``stdin`` tests feed ``input`` (a string) to the program and compare its whole stdout with
    ``expected``. ``functional`` tests call ``fn_name(*input)`` (``input`` is the argument list; for a
    LeetCode ``class Solution`` the method of a fresh instance) and compare the return value with
    ``expected`` (any JSON value).
    """

    __test__ = False  # not a pytest class

    kind: Literal["stdin", "functional"]
    input: str | list[Any]
    expected: Any
    fn_name: str | None = None
    public: bool = False
    name: str | None = None

    @model_validator(mode="after")
    def _shape_matches_kind(self) -> TestCase:
        if self.kind == "stdin":
            if not isinstance(self.input, str):
                raise ValueError("a stdin test needs `input` to be the whole stdin as a string")
            if not isinstance(self.expected, str):
                raise ValueError("a stdin test needs `expected` to be the whole expected stdout as a string")
        else:
            if not isinstance(self.input, list):
                raise ValueError("a functional test needs `input` to be the list of call arguments")
            if not self.fn_name:
                raise ValueError("a functional test needs `fn_name`")
        return self


class VerdictKind(enum.StrEnum):
    """The outcome of one test. See :func:`verdict_kind_for` for the mapping from ExecutionStatus."""

    PASS = "pass"
    WRONG_ANSWER = "wrong_answer"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    COMPILE_ERROR = "compile_error"
    SANDBOX_ERROR = "sandbox_error"


_VERDICT_FOR_STATUS: dict[ExecutionStatus, VerdictKind] = {
    ExecutionStatus.RUNTIME_ERROR: VerdictKind.RUNTIME_ERROR,
    ExecutionStatus.TIMEOUT: VerdictKind.TIMEOUT,
    ExecutionStatus.MEMORY_LIMIT: VerdictKind.MEMORY_LIMIT,
    ExecutionStatus.OUTPUT_LIMIT: VerdictKind.OUTPUT_LIMIT,
    ExecutionStatus.SANDBOX_ERROR: VerdictKind.SANDBOX_ERROR,
}


def verdict_kind_for(status: ExecutionStatus, *, output_matches: bool | None, compiled: bool = True) -> VerdictKind:
    """Map how a run ended onto a test verdict. The one written-down mapping:

    ==================  =======================================================
    ExecutionStatus     VerdictKind
    ==================  =======================================================
    sandbox_error       sandbox_error (always: infrastructure outranks the code)
    (code not compiled) compile_error (``compiled=False``: SyntaxError & co.)
    ok                  pass if ``output_matches`` else wrong_answer
    runtime_error       runtime_error
    timeout             timeout
    memory_limit        memory_limit
    output_limit        output_limit
    ==================  =======================================================
    """
    if status is ExecutionStatus.SANDBOX_ERROR:
        return VerdictKind.SANDBOX_ERROR
    if not compiled:
        return VerdictKind.COMPILE_ERROR
    if status is ExecutionStatus.OK:
        if output_matches is None:
            raise ValueError("an ok run needs output_matches to become a verdict")
        return VerdictKind.PASS if output_matches else VerdictKind.WRONG_ANSWER
    return _VERDICT_FOR_STATUS[status]


class TestVerdict(_Frozen):
    """The verdict on one test, with enough of the run for a reader (or the reflection LM) to see why."""

    __test__ = False

    index: int = Field(..., ge=0, description="Position of the test in the task's test list.")
    kind: VerdictKind
    public: bool = False
    input_excerpt: str = ""
    expected_excerpt: str = ""
    got_excerpt: str = Field("", description="The program's stdout (stdin tests) or repr of its return value.")
    stderr_excerpt: str = ""
    message: str = Field("", description="One line on why, e.g. 'line 2: expected 5, got 4'.")
    wall_seconds: float = Field(0.0, ge=0)

    @property
    def passed(self) -> bool:
        return self.kind is VerdictKind.PASS


# --------------------------------------------------------------------------------------------------
# Conversation, tools, episodes
# --------------------------------------------------------------------------------------------------


class ToolCall(_Frozen):
    """A tool call the model made. ``parse_error`` is set when the text looked like a call but was not one;
    the environment then answers with an error message instead of running anything."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw: str | None = Field(None, description="The model's text of the call, as generated.")
    parse_error: str | None = None


class ToolResult(_Frozen):
    """What a tool call produced: ``content`` is exactly what the model sees next."""

    call_id: str
    name: str
    content: str
    error: str | None = Field(None, description="Set when the call failed (bad arguments, unknown tool, ...).")
    execution: ExecutionResult | None = None
    verdicts: list[TestVerdict] = Field(default_factory=list)
    reward: float = Field(0.0, description="Turn-level reward the environment gave for this call.")
    done: bool = Field(False, description="True when this call ended the episode (e.g. submit).")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def sandbox_failed(self) -> bool:
        return self.execution is not None and self.execution.status is ExecutionStatus.SANDBOX_ERROR


class Message(_Frozen):
    """One chat message in the OpenAI / transformers chat-template shape."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_chat(self) -> dict[str, Any]:
        """The dict a chat template expects (tool calls as ``{"type": "function", "function": {...}}``)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class Task(_Frozen):
    """One problem an environment can pose. ``data`` holds what the environment needs (tests, answer,
    database, ...); the learner never looks inside it."""

    id: str
    env: str = Field(..., description="Name of the environment the task belongs to.")
    prompt: str = Field(..., description="The statement shown to the model.")
    data: dict[str, Any] = Field(default_factory=dict)
    split: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Context(_Frozen):
    """A fast-weight context: the system prompt a rollout runs under."""

    id: str
    text: str
    parent_id: str | None = None


class EpisodeStatus(enum.StrEnum):
    """Why an episode ended. Only ``sandbox_error`` and ``env_error`` mask the reward."""

    SUBMITTED = "submitted"
    TURN_LIMIT = "turn_limit"
    TOKEN_LIMIT = "token_limit"
    NO_TOOL_CALL = "no_tool_call"
    SANDBOX_ERROR = "sandbox_error"
    ENV_ERROR = "env_error"

    @property
    def masks_reward(self) -> bool:
        return self in (EpisodeStatus.SANDBOX_ERROR, EpisodeStatus.ENV_ERROR)


class Turn(_Mutable):
    """One assistant turn: what the model wrote, the calls it made, what came back, and the turn reward."""

    index: int = Field(..., ge=0)
    assistant_text: str = Field("", description="The whole assistant message, thoughts included.")
    thoughts: str | None = Field(None, description="Reasoning text separated from the answer, where the format has it.")
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    reward: float = 0.0
    prompt_token_count: int | None = None
    completion_token_ids: list[int] | None = None
    completion_logprobs: list[float] | None = None
    observation_token_ids: list[int] | None = Field(
        None, description="Tokens of the tool/environment messages that followed, masked out of the loss."
    )
    generation_seconds: float = Field(0.0, ge=0)
    tool_seconds: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _logprobs_align(self) -> Turn:
        if self.completion_logprobs is not None and self.completion_token_ids is not None:
            if len(self.completion_logprobs) != len(self.completion_token_ids):
                raise ValueError(
                    f"turn {self.index}: {len(self.completion_logprobs)} logprobs for "
                    f"{len(self.completion_token_ids)} completion tokens"
                )
        return self


class Trajectory(_Mutable):
    """A whole episode: the unit the trace store persists and both learners consume."""

    schema_version: int = TRAJECTORY_SCHEMA_VERSION
    episode_id: str
    task_id: str
    env: str
    context_id: str
    context_text: str
    messages: list[Message] = Field(default_factory=list, description="The opening messages the env gave at reset.")
    turns: list[Turn] = Field(default_factory=list)
    final_reward: float | None = Field(None, description="Outcome reward from the hidden tests; None if masked.")
    status: EpisodeStatus | None = None
    policy_version: int | str | None = None
    step: int | None = Field(None, description="RL step the episode was generated for.")
    group_id: str | None = Field(None, description="Episodes of one problem in one step share a group.")
    started_at: float | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > TRAJECTORY_SCHEMA_VERSION:
            raise ValueError(
                f"trajectory schema version {v} is newer than this fst-agent understands "
                f"({TRAJECTORY_SCHEMA_VERSION}); upgrade fst-agent to read it"
            )
        return v

    @property
    def turn_rewards(self) -> list[float]:
        return [t.reward for t in self.turns]

    @property
    def reward_masked(self) -> bool:
        return self.status is not None and self.status.masks_reward

    @property
    def tool_call_count(self) -> int:
        return sum(len(t.tool_calls) for t in self.turns)
